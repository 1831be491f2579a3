"""Staff API over real TLS: login, the authorisation matrix from policy, watchlist
four-eyes, two-person alert review, hardening (problems, limits, headers), ops."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from service.alerts import create_alert
from tests.service.conftest import STAFF, problem

ROLES = ["officer", "supervisor", "oversight", "legal", "admin"]
USER_FOR_ROLE = {
    "officer": "officer1",
    "supervisor": "supervisor1",
    "oversight": "oversight1",
    "legal": "legal1",
    "admin": "admin",
}
ACCESS_DATA = Path(__file__).parents[2] / "policy" / "bundle" / "params" / "access" / "data.json"

# (method, path, action, body): every staff route with the access action it names.
ROUTES = [
    ("GET", "/api/v1/accounts", "admin.accounts", None),
    (
        "POST",
        "/api/v1/accounts",
        "admin.accounts",
        {"username": "matrix-user", "password": "x" * 12, "role": "nope"},
    ),
    ("GET", "/api/v1/gates", "admin.gates", None),
    ("POST", "/api/v1/gates/no-such-gate/approve", "admin.gates", None),
    ("POST", "/api/v1/gates/no-such-gate/revoke", "admin.gates", None),
    ("GET", "/api/v1/watchlist", "watchlist.read", None),
    ("GET", "/api/v1/watchlist/no-such-entry", "watchlist.read", None),
    ("POST", "/api/v1/watchlist/no-such-entry/revoke", "watchlist.revoke", {"reason": "test"}),
    ("GET", "/api/v1/alerts", "alert.read", None),
    ("GET", "/api/v1/alerts/no-such-alert", "alert.read", None),
    ("GET", "/api/v1/audit/entries", "audit.read", None),
    ("GET", "/api/v1/audit/log-key", "audit.read", None),
    ("GET", "/api/v1/audit/proofs/consistency?old=0", "audit.proof", None),
    ("GET", "/api/v1/statistics", "stats.read", None),
]
# Routes whose policy input carries resource facts (legal basis) are checked separately.
RESOURCE_ROUTES = [
    ("POST", "/api/v1/watchlist", "watchlist.enrol"),
    ("POST", "/api/v1/watchlist/x/renew", "watchlist.renew"),
]


def _roles_for(action: str) -> set[str]:
    data = json.loads(ACCESS_DATA.read_text())
    return set(data["actions"][action]["roles"])


def _future(days: int = 30) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).isoformat()


def test_login_and_token_failures(service):
    with service.staff() as client:
        bad = client.post("/api/v1/auth/token", json={"username": "admin", "password": "wrong"})
        assert bad.status_code == 401 and problem(bad)["code"] == "login-failed"
        unknown = client.post("/api/v1/auth/token", json={"username": "ghost", "password": "x"})
        assert problem(unknown)["code"] == "login-failed"
        assert client.get("/api/v1/alerts").status_code == 401
        forged = service.token("officer1")[:-4] + "AAAA"
        resp = client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {forged}"})
        assert resp.status_code == 401 and problem(resp)["code"] == "token-invalid"
    # an expired token: issued an hour ago by the same issuer
    now = service.ctx.now() - dt.timedelta(hours=1)
    from service.accounts import Principal

    old, _ = service.ctx.tokens.issue(Principal("officer1", "officer"), now)
    with service.staff() as client:
        resp = client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {old}"})
        assert resp.status_code == 401 and problem(resp)["code"] == "token-expired"


@pytest.mark.parametrize("role", ROLES)
def test_authorisation_matrix_follows_policy(service, role):
    """Every role against every route: 403 exactly when the access policy says deny."""
    with service.staff(USER_FOR_ROLE[role]) as client:
        for method, path, action, body in ROUTES:
            resp = client.request(method, path, json=body)
            allowed = role in _roles_for(action)
            if allowed:
                assert resp.status_code not in (401, 403, 500), (role, path, resp.text)
            else:
                assert resp.status_code == 403, (role, path, resp.status_code)
                assert problem(resp)["code"] == "forbidden"
        for method, path, action in RESOURCE_ROUTES:
            payload: dict[str, object] = {"legal_basis": "hk-cap60", "expires_at": _future()}
            if action == "watchlist.enrol":
                payload |= {
                    "subject_ref": "subj-matrix",
                    "template": [0.1] * 128,
                    "category": "parallel_trading",
                }
            resp = client.request(method, path, json=payload)
            allowed = role in _roles_for(action)
            assert (resp.status_code == 403) == (not allowed), (role, path, resp.text)
    denied = [
        e
        for e in service.audit_entries(types=["access.denied"])
        if e.header.actor.startswith(f"{role}:")
    ]
    expected_denials = sum(role not in _roles_for(a) for _, _, a, _ in ROUTES) + sum(
        role not in _roles_for(a) for _, _, a in RESOURCE_ROUTES
    )
    assert len(denied) >= expected_denials  # every denial is audited


def test_watchlist_four_eyes_and_lifecycle(service):
    template = [float((i * 7) % 13) - 6.0 for i in range(128)]
    with service.staff("officer1") as officer:
        created = officer.post(
            "/api/v1/watchlist",
            json={
                "subject_ref": "subj-four-eyes",
                "template": template,
                "legal_basis": "hk-cap60",
                "category": "parallel_trading",
                "expires_at": _future(),
            },
        )
        assert created.status_code == 201, created.text
        entry = created.json()
        assert entry["status"] == "pending" and "template" not in entry
    with service.staff("supervisor1") as sup:
        # a supervisor who enrolled cannot approve their own entry
        own = sup.post(
            "/api/v1/watchlist",
            json={
                "subject_ref": "subj-own",
                "template": template,
                "legal_basis": "hk-cap60",
                "category": "parallel_trading",
                "expires_at": _future(),
            },
        ).json()
        refused = sup.post(f"/api/v1/watchlist/{own['id']}/approve")
        assert refused.status_code == 403
        ok = sup.post(f"/api/v1/watchlist/{entry['id']}/approve")
        assert ok.status_code == 200 and ok.json()["status"] == "active"
        again = sup.post(f"/api/v1/watchlist/{entry['id']}/approve")
        assert again.status_code == 409 and problem(again)["code"] == "entry-not-pending"
        renewed = sup.post(
            f"/api/v1/watchlist/{entry['id']}/renew",
            json={"legal_basis": "hk-cap109", "expires_at": _future(60)},
        )
        assert renewed.status_code == 200 and renewed.json()["legal_basis"] == "hk-cap109"
        revoked = sup.post(f"/api/v1/watchlist/{own['id']}/revoke", json={"reason": "test"})
        assert revoked.json()["status"] == "revoked"
    types = [e.header.type for e in service.audit_entries()]
    for kind in ("watchlist.enrol", "watchlist.approve", "watchlist.renew", "watchlist.revoke"):
        assert kind in types


def _open_alert(service) -> str:
    now = service.ctx.now()
    with service.ctx.transaction() as conn:
        return create_alert(
            conn,
            gate_id="gate-x",
            query_id="q-test",
            entry_ids=["e-1"],
            reason="test",
            severity="medium",
            decision_id="d-test",
            bundle_digest="b-test",
            gallery_version="g-test",
            now=now,
        )


def test_two_person_rule(service):
    alert_id = _open_alert(service)
    review = {"verdict": "confirm", "reason": "faces agree"}
    with service.staff("officer1") as o1, service.staff("officer2") as o2:
        first = o1.post(f"/api/v1/alerts/{alert_id}/reviews", json=review)
        assert first.status_code == 200 and first.json()["status"] == "open"
        twice = o1.post(f"/api/v1/alerts/{alert_id}/reviews", json=review)
        assert twice.status_code in (403, 409)  # policy refuses a second review by the same person
        assert o1.get(f"/api/v1/alerts/{alert_id}").json()["status"] == "open"
        second = o2.post(f"/api/v1/alerts/{alert_id}/reviews", json=review)
        assert second.status_code == 200 and second.json()["status"] == "actionable"
        assert {r["reviewer"] for r in second.json()["reviews"]} == {"officer1", "officer2"}
    dismissed = _open_alert(service)
    with service.staff("supervisor1") as sup:
        resp = sup.post(
            f"/api/v1/alerts/{dismissed}/reviews",
            json={"verdict": "dismiss", "reason": "different person"},
        )
        assert resp.json()["status"] == "dismissed"
        closed = sup.post(f"/api/v1/alerts/{alert_id}/reviews", json=review)
        assert closed.status_code == 409 and problem(closed)["code"] == "alert-closed"
    reviews = service.audit_entries(types=["alert.review"])
    assert len([e for e in reviews if f"alert:{alert_id}" in e.header.subjects]) == 2


def test_hardening_problem_responses_limits_and_headers(service):
    with service.staff("officer1") as client:
        malformed = client.post(
            "/api/v1/watchlist", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 422 and problem(malformed)["code"] == "validation-failed"
        huge = client.post(
            "/api/v1/watchlist",
            content=b"x" * (300 * 1024),
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413 and problem(huge)["code"] == "payload-too-large"
        nan = client.post(
            "/api/v1/watchlist",
            json={
                "subject_ref": "s",
                "template": [0.0] * 128,
                "legal_basis": "hk-cap60",
                "category": "parallel_trading",
                "expires_at": _future(),
            },
        )
        assert nan.status_code == 400 and problem(nan)["code"] == "malformed-request"
        missing = client.get("/api/v1/nowhere")
        assert missing.status_code == 404 and problem(missing)["code"] == "not-found"
        headers = client.get("/api/v1/alerts").headers
        for name in (
            "strict-transport-security",
            "x-content-type-options",
            "content-security-policy",
            "x-frame-options",
            "x-request-id",
        ):
            assert name in headers
        assert headers["cache-control"] == "no-store"


def test_ops_endpoints(service):
    with service.staff() as client:
        assert client.get("/healthz").json()["status"] == "ok"
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
    metrics = service.metrics().text
    for name in (
        "veilmatch_http_request_seconds",
        "veilmatch_match_queue_depth",
        "veilmatch_audit_append_seconds",
        "veilmatch_he_score_seconds",
    ):
        assert name in metrics


def test_staff_accounts_exist(service):
    with service.staff("admin") as client:
        names = {a["username"] for a in client.get("/api/v1/accounts").json()}
    assert set(STAFF) <= names

"""The console over real HTTPS without a browser: sessions and cookies, the page
authorisation matrix from the access policy, CSRF and Origin checks, headers, and the
review and watchlist forms (four-eyes, two-person rule), all audited."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from service.accounts import Principal
from service.alerts import create_alert
from service.console.session import COOKIE, CSRF_COOKIE
from service.tables import login_throttle
from tests.console.conftest import browser_client, csrf, login_token, post_login, sign_in
from tests.service.conftest import STAFF, STAFF_PASSWORD

#: Console pages and every access action each one needs.
PAGES = {
    "/console/": ["console.home"],
    "/console/alerts": ["console.alerts", "alert.read"],
    "/console/alerts/rows": ["console.alerts", "alert.read"],
    "/console/watchlist": ["console.watchlist", "watchlist.read"],
    "/console/audit": ["console.audit", "audit.read", "audit.proof"],
    "/console/audit/checkpoints": ["console.audit", "audit.read"],
    "/console/audit/policies": ["console.audit", "audit.read"],
    "/console/stats": ["console.stats", "stats.read"],
    "/console/policies": ["console.policies", "policy.read"],
    "/console/policies/history": ["console.policies", "policy.read"],
}
USERS = {"officer1", "supervisor1", "oversight1", "legal1", "admin2"}


@pytest.fixture(scope="module")
def service(console_service):
    return console_service[0]


@pytest.fixture(scope="module")
def access(console_service) -> dict[str, Any]:
    data = console_service[1].bundle_dir / "params" / "access" / "data.json"
    return dict(json.loads(data.read_text()))


def _denials(service, actor: str) -> list[Any]:
    return [e for e in service.audit_entries(types=["access.denied"]) if e.header.actor == actor]


def _open_alert(service) -> str:
    with service.ctx.transaction() as conn:
        return create_alert(
            conn,
            gate_id="gate-x",
            query_id="q-console",
            entry_ids=["e-missing"],
            reason="test",
            severity="medium",
            decision_id="d-console",
            bundle_digest="b-console",
            gallery_version="g-console",
            now=service.ctx.now(),
        )


def test_sign_in_sets_hardened_cookies_and_refusals_are_audited(service):
    with browser_client(service) as client:
        refused = post_login(client, username="officer1", password="wrong password")
        assert refused.status_code == 401 and "Invalid username or password" in refused.text
        assert COOKIE not in client.cookies
    assert "login-failed" in service.denied_codes()

    client = sign_in(service, "officer1")
    with browser_client(service) as fresh:
        token = login_token(fresh)
        response = fresh.post(
            "/console/login",
            data={"username": "officer1", "password": "staff-password-for-tests", "csrf": token},
        )
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 2
    for header in cookies:
        lowered = header.lower()
        assert header.startswith("__Host-") and "secure" in lowered and "httponly" in lowered
        assert "samesite=strict" in lowered and "path=/" in lowered and "domain" not in lowered
        # relative lifetime: an absolute Expires from the service clock would be dropped
        # by a browser whose clock runs ahead of it (regression: time-of-day test failures)
        assert "max-age=900" in lowered and "expires=" not in lowered
    # every authenticated page renews the session cookie (sliding expiry)
    page = client.get("/console/alerts")
    assert page.status_code == 200
    assert any(h.startswith(COOKIE + "=") for h in page.headers.get_list("set-cookie"))
    client.close()


def test_without_a_valid_session_pages_redirect_to_sign_in(service):
    with browser_client(service) as client:
        bare = client.get("/console/audit?type=admin")
        assert bare.status_code == 303
        assert bare.headers["location"] == "/console/login?next=%2Fconsole%2Faudit%3Ftype%3Dadmin"
        client.cookies.set(COOKIE, "vmt1.forged.token", domain="127.0.0.1")
        forged = client.get("/console/alerts")
        assert forged.status_code == 303 and "reason=invalid" in forged.headers["location"]
        old, _ = service.ctx.tokens.issue(
            Principal("officer1", "officer"), service.ctx.now() - dt.timedelta(hours=1)
        )
        client.cookies.set(COOKIE, old, domain="127.0.0.1")
        expired = client.get("/console/alerts")
        assert "reason=expired" in expired.headers["location"]
    codes = service.denied_codes()
    assert "token-invalid" in codes and "token-expired" in codes


def test_sign_in_only_follows_console_paths(service):
    for target, expected in [
        ("/console/stats", "/console/stats"),
        ("https://evil.example/console/", "/console/"),
        ("//evil.example/console/", "/console/"),
        ("/console/..//evil.example", "/console/"),
    ]:
        with browser_client(service) as client:
            response = post_login(
                client, username="oversight1", password="staff-password-for-tests", next=target
            )
            assert response.headers["location"] == expected, target


@pytest.mark.parametrize("user", sorted(USERS))
def test_page_access_follows_the_access_policy(service, access, user):
    role = STAFF[user]
    client = sign_in(service, user)
    for path, actions in PAGES.items():
        allowed = all(role in access["actions"][a]["roles"] for a in actions)
        response = client.get(path)
        assert response.status_code == (200 if allowed else 403), (user, path)
        assert response.headers["content-type"].startswith("text/html")
        if not allowed:
            assert f"Your role ({role}) may not do this" in response.text
    denied = {e.payload["action"] for e in _denials(service, f"{role}:{user}")}
    refused = {
        next(a for a in actions if role not in access["actions"][a]["roles"])
        for actions in PAGES.values()
        if not all(role in access["actions"][a]["roles"] for a in actions)
    }
    assert refused <= denied  # every refusal is in the audit log, with its action
    client.close()


def test_legal_pages_show_the_active_profile_and_its_obligations(service):
    client = sign_in(service, "legal1")
    page = client.get("/console/policies")
    assert page.status_code == 200
    assert '<code id="active-profile">eu</code>' in page.text
    assert 'data-id="dpia"' in page.text and "GDPR Art. 35(3)" in page.text
    assert "Legal obligations under this profile with face information of" in page.text
    assert "**" not in page.text.split('<article class="doc">')[0]  # rendered, not raw
    history = client.get("/console/policies/history")
    assert '<code id="active-profile">eu</code>' in history.text
    client.close()


def test_headers_and_static_files(service):
    client = sign_in(service, "oversight1")
    for path in ("/console/audit", "/console/static/console.js", "/console/login"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
    assert client.get("/console/static/console.css").headers["content-type"].startswith("text/css")
    for bad in ("web.py", "..%2Fweb.py", "templates%2Fbase.html"):
        assert client.get(f"/console/static/{bad}").status_code == 404
    client.close()


def test_sign_in_from_another_origin_is_refused(service):
    """Login CSRF (issue 18): another site's page posting its own credentials must not
    sign the victim's browser in."""
    with browser_client(service) as client:
        token = login_token(client)
        foreign = client.post(
            "/console/login",
            data={"username": "officer1", "password": STAFF_PASSWORD, "csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403 and "came from another site" in foreign.text
        assert COOKIE not in client.cookies
        null = client.post(
            "/console/login",
            data={"username": "officer1", "password": STAFF_PASSWORD, "csrf": token},
            headers={"Origin": "null"},
        )
        assert null.status_code == 403 and COOKIE not in client.cookies


def test_sign_in_needs_the_forms_csrf_value(service):
    credentials = {"username": "officer1", "password": STAFF_PASSWORD}
    with browser_client(service) as bare:  # never opened the form: no cookie, no field
        missing = bare.post("/console/login", data=credentials)
        assert missing.status_code == 403 and COOKIE not in bare.cookies
    with browser_client(service) as client:
        login_token(client)
        no_field = client.post("/console/login", data=credentials)
        wrong = client.post("/console/login", data={**credentials, "csrf": "0" * 64})
        for response in (no_field, wrong):
            assert response.status_code == 403 and COOKIE not in client.cookies
        # the refusal page is a fresh form that works
        token = login_token(client)
        same = client.post(
            "/console/login",
            data={**credentials, "csrf": token},
            headers={"Origin": service.staff_url},
        )
        assert same.status_code == 303 and client.cookies.get(COOKIE)
        assert client.cookies.get(CSRF_COOKIE) != token  # a fresh value for the session
    with browser_client(service) as client:  # no Origin header (not a browser) + the value
        ok = post_login(client, **credentials)
        assert ok.status_code == 303 and client.cookies.get(COOKIE)
    assert "csrf-failed" in service.denied_codes()


def test_repeated_failed_sign_ins_lock_the_console_login(service):
    with service.ctx.transaction() as conn:
        conn.execute(login_throttle.delete())
    try:
        with browser_client(service) as client:
            limit = service.settings.login_account_failures
            for i in range(limit):
                post_login(client, username="legal1", password=f"wrong-{i}")
            locked = post_login(client, username="legal1", password=STAFF_PASSWORD)
            assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
            assert int(locked.headers["retry-after"]) > 0 and COOKIE not in client.cookies
    finally:
        with service.ctx.transaction() as conn:
            conn.execute(login_throttle.delete())


def test_forms_need_the_csrf_value_and_this_origin(service):
    alert_id = _open_alert(service)
    client = sign_in(service, "officer1")
    review = {"verdict": "confirm", "reason": "match"}
    path = f"/console/alerts/{alert_id}/review"
    missing = client.post(path, data=review)
    wrong = client.post(path, data={**review, "csrf": "0" * 64})
    cross = client.post(
        path, data={**review, "csrf": csrf(client)}, headers={"Origin": "https://evil.example"}
    )
    null = client.post(path, data={**review, "csrf": csrf(client)}, headers={"Origin": "null"})
    for response in (missing, wrong, cross, null):
        assert response.status_code == 403 and "csrf-failed" in response.text
    with service.staff("officer1") as api:
        assert api.get(f"/api/v1/alerts/{alert_id}").json()["reviews"] == []
    same = client.post(
        path, data={**review, "csrf": csrf(client)}, headers={"Origin": service.staff_url}
    )
    assert same.status_code == 303
    logout = client.post("/console/logout", data={"csrf": csrf(client)})
    assert logout.status_code == 303 and COOKIE not in client.cookies
    assert client.get("/console/alerts").status_code == 303
    client.close()


def test_review_forms_enforce_the_two_person_rule(service):
    alert_id = _open_alert(service)
    path = f"/console/alerts/{alert_id}/review"
    officer1, officer2 = sign_in(service, "officer1"), sign_in(service, "officer2")
    first = officer1.post(
        path, data={"verdict": "confirm", "reason": "same", "csrf": csrf(officer1)}
    )
    assert first.headers["location"] == f"/console/alerts/{alert_id}?done=confirm"
    page = officer1.get(first.headers["location"]).text
    assert "Your confirmation was recorded" in page
    assert "The second confirmation must come from a different person" in page
    assert "Record review" not in page  # no form for someone who already reviewed
    again = officer1.post(
        path, data={"verdict": "confirm", "reason": "again", "csrf": csrf(officer1)}
    )
    assert again.status_code in (403, 409) and "Record review" not in again.text
    second = officer2.post(
        path, data={"verdict": "confirm", "reason": "agree", "csrf": csrf(officer2)}
    )
    assert second.status_code == 303
    done = officer2.get(f"/console/alerts/{alert_id}").text
    assert "actionable" in done and "Confirmed by 2 different people" in done
    assert "no longer exists" in done  # the matched entry id is unknown here: said so
    late = sign_in(service, "supervisor1")
    closed = late.post(path, data={"verdict": "dismiss", "reason": "late", "csrf": csrf(late)})
    assert closed.status_code == 409 and "alert is actionable" in closed.text
    reviews = [
        e
        for e in service.audit_entries(types=["alert.review"])
        if f"alert:{alert_id}" in e.header.subjects
    ]
    assert [e.header.actor for e in reviews] == ["officer:officer1", "officer:officer2"]
    for client in (officer1, officer2, late):
        client.close()


def test_watchlist_forms_four_eyes_renew_and_revoke(service):
    template = [float((i * 5) % 11) - 5.0 for i in range(128)]
    record = {"image": "enrol.jpg", "faces": [{"template": template}]}  # gate embed --json
    expires = (dt.date.today() + dt.timedelta(days=60)).isoformat()
    sup1, sup2 = sign_in(service, "supervisor1"), sign_in(service, "supervisor2")
    form = {
        "subject_ref": "case-console-1",
        "category": "parallel_trading",
        "legal_basis": "hk-cap60",
        "expires_on": expires,
    }
    files = {"template_file": ("t.json", json.dumps(record).encode(), "application/json")}
    created = sup1.post("/console/watchlist", data={**form, "csrf": csrf(sup1)}, files=files)
    assert created.status_code == 303, created.text
    with service.staff("supervisor1") as api:
        entry = next(
            e for e in api.get("/api/v1/watchlist").json() if e["subject_ref"] == "case-console-1"
        )
    assert entry["status"] == "pending" and entry["created_by"] == "supervisor1"
    listing = sup1.get("/console/watchlist").text
    assert f"/console/watchlist/{entry['id']}/approve" not in listing  # not for the enroller
    own = sup1.post(f"/console/watchlist/{entry['id']}/approve", data={"csrf": csrf(sup1)})
    assert own.status_code == 403
    assert f"/console/watchlist/{entry['id']}/approve" in sup2.get("/console/watchlist").text
    approved = sup2.post(f"/console/watchlist/{entry['id']}/approve", data={"csrf": csrf(sup2)})
    assert approved.headers["location"] == "/console/watchlist?done=approve"
    later = (dt.date.today() + dt.timedelta(days=200)).isoformat()
    renewed = sup2.post(
        f"/console/watchlist/{entry['id']}/renew",
        data={"legal_basis": "hk-cap109", "expires_on": later, "csrf": csrf(sup2)},
    )
    assert renewed.status_code == 303
    revoked = sup1.post(
        f"/console/watchlist/{entry['id']}/revoke",
        data={"reason": "case closed", "csrf": csrf(sup1)},
    )
    assert revoked.status_code == 303
    with service.staff("supervisor1") as api:
        final = api.get(f"/api/v1/watchlist/{entry['id']}").json()
    assert final["status"] == "revoked" and final["legal_basis"] == "hk-cap109"
    assert final["expires_at"].startswith(later)

    bad = sup1.post(
        "/console/watchlist",
        data={**form, "csrf": csrf(sup1)},
        files={"template_file": ("t.json", b"not json", "application/json")},
    )
    assert bad.status_code == 400 and "not JSON" in bad.text
    nothing = sup1.post("/console/watchlist", data={**form, "csrf": csrf(sup1)})
    assert nothing.status_code == 400 and "template file or at least one photo" in nothing.text
    types = [e.header.type for e in service.audit_entries()]
    for kind in ("watchlist.enrol", "watchlist.approve", "watchlist.renew", "watchlist.revoke"):
        assert kind in types
    sup1.close()
    sup2.close()


def test_audit_page_reports_server_verification(service):
    service.ctx.audit.flush()
    client = sign_in(service, "oversight1")
    page = client.get("/console/audit").text
    assert "verified by the server" in page
    assert page.count("included in checkpoint") >= 5
    assert "FAILED" not in page
    bad = client.get("/console/audit?type=not.a.type")
    assert bad.status_code == 400 and "unknown event type" in bad.text
    reversed_period = client.get("/console/audit?since=2025-03-02T00:00&until=2025-03-01T00:00")
    assert reversed_period.status_code == 400
    client.close()

"""Provenance and refusals across the routes, walked from the apps themselves.

- Every state-changing route of the staff and gate apps (every non-GET route, found by
  enumerating the apps, so a new route cannot be forgotten) is either exercised here and
  shown to write an audit entry carrying the decision id and bundle digest of the policy
  decision that allowed it, or listed as changing no audited state, with the reason.
- Policy before lookup: a role that may not perform an action gets the same answer for
  an existing id and a missing one, on every staff route with an id in its path.
- A gate refusal before authentication records the certificate presented, not the gate
  the request claims.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.routing import iter_route_contexts

from crypto.signing import RequestSigner, SigningKey
from gate.client import GateClient, SealGateCrypto
from gate.errors import GateError
from gate.pipeline import FacePipeline
from gate.samples import face_crops
from service.alerts import create_alert
from service.app import create_app, create_gate_app
from service.gates import key_id_for
from tests.console.conftest import csrf, sign_in
from tests.service.conftest import RunningService

ACCESS_DATA = Path(__file__).parents[2] / "policy" / "bundle" / "params" / "access" / "data.json"

#: Every state-changing route and the audit event type its change is recorded as.
AUDITED: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/accounts"): "admin",
    ("POST", "/api/v1/gates/{gate_id}/approve"): "gate.register",
    ("POST", "/api/v1/gates/{gate_id}/revoke"): "admin",
    ("POST", "/api/v1/watchlist"): "watchlist.enrol",
    ("POST", "/api/v1/watchlist/photos"): "watchlist.enrol",
    ("POST", "/api/v1/watchlist/{entry_id}/approve"): "watchlist.approve",
    ("POST", "/api/v1/watchlist/{entry_id}/renew"): "watchlist.renew",
    ("POST", "/api/v1/watchlist/{entry_id}/revoke"): "watchlist.revoke",
    ("POST", "/api/v1/alerts/{alert_id}/reviews"): "alert.review",
    ("POST", "/console/alerts/{alert_id}/review"): "alert.review",
    ("POST", "/console/watchlist"): "watchlist.enrol",
    ("POST", "/console/watchlist/{entry_id}/approve"): "watchlist.approve",
    ("POST", "/console/watchlist/{entry_id}/renew"): "watchlist.renew",
    ("POST", "/console/watchlist/{entry_id}/revoke"): "watchlist.revoke",
    ("POST", "/gate/v1/register"): "gate.register",
    ("POST", "/gate/v1/keys/rotate"): "gate.key_rotate",
    ("POST", "/gate/v1/match"): "match.query",
    ("POST", "/gate/v1/reveal"): "match.decision",
}
#: Non-GET routes that change no audited record, and why.
NOT_STATE_CHANGES = {
    ("POST", "/api/v1/auth/token"): "issues a short-lived token; no record changes",
    ("POST", "/console/login"): "starts a browser session; no record changes",
    ("POST", "/console/logout"): "ends a browser session; no record changes",
    ("POST", "/gate/v1/heartbeat"): "liveness: spends its nonce, notes last contact",
}


def _non_get_routes(service: RunningService) -> set[tuple[str, str]]:
    apps = (create_app(service.settings, ctx=service.ctx), create_gate_app(service.ctx))
    found = set()
    for app in apps:
        for route in iter_route_contexts(app.routes):  # included routers, flattened
            for method in route.methods or ():
                if method not in ("GET", "HEAD"):
                    found.add((method, str(route.path)))
    assert found, "no routes found: has FastAPI's route listing changed?"
    return found


def test_every_non_get_route_is_classified(service):
    """A new state-changing route fails here until it is audited (and walked below)."""
    routes = _non_get_routes(service)
    assert routes == set(AUDITED) | set(NOT_STATE_CHANGES)
    assert not set(AUDITED) & set(NOT_STATE_CHANGES)


# --- the walk ------------------------------------------------------------------------------


class Walk:
    """Runs one route at a time and checks the audit entries it appended."""

    def __init__(self, service: RunningService) -> None:
        self.service = service
        self.walked: set[tuple[str, str]] = set()

    def _size(self) -> int:
        return len(self.service.audit_entries())

    def step(self, route: tuple[str, str], call: Callable[[], Any]) -> Any:
        """Call ``route`` through ``call``; its entries must all carry provenance."""
        before = self._size()
        result = call()
        new = self.service.audit_entries()[before:]
        kinds = [e.header.type for e in new]
        assert AUDITED[route] in kinds, (route, kinds)
        for entry in new:
            assert not entry.header.type.startswith("access."), (route, entry.payload)
            assert entry.header.decision_id, (route, entry.header.type)
            assert entry.header.policy_digest == self.service.ctx.policy.bundle_digest, route
        self.walked.add(route)
        return result


def _future(days: int = 60) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).isoformat()


def _template(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    vector = rng.normal(size=128)
    return [float(v) for v in vector / np.linalg.norm(vector)]


def _enrol_json(template: list[float], subject: str) -> dict[str, Any]:
    return {
        "subject_ref": subject,
        "template": template,
        "legal_basis": "hk-cap60",
        "category": "parallel_trading",
        "expires_at": _future(),
    }


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()
    return data


def _gate_client(service: RunningService, gate_id: str) -> GateClient:
    cert, key = service.pki.gate_certs[gate_id]
    return GateClient(
        service.gate_url,
        gate_id=gate_id,
        cert=cert,
        key=key,
        ca=service.pki.ca_cert,
        signing_key=SigningKey.generate(),
        he=SealGateCrypto.generate(),
        clock=service.gate_time,
    )


def _photo(service: RunningService) -> Iterator[str]:
    pipeline = FacePipeline.from_settings(service.settings)
    for crop in face_crops(pipeline):
        try:
            pipeline.embed_one(crop.image)
        except GateError:  # a quality refusal: try the next face
            continue
        ok, jpeg = cv2.imencode(".jpg", crop.image)
        assert ok
        yield base64.b64encode(jpeg.tobytes()).decode()


def _open_alert(service: RunningService, name: str) -> str:
    with service.ctx.transaction() as conn:
        return create_alert(
            conn,
            gate_id="gate-x",
            query_id=f"q-{name}",
            entry_ids=["e-1"],
            reason="test",
            severity="medium",
            decision_id="d-test",
            bundle_digest="b-test",
            gallery_version="g-test",
            now=service.ctx.now(),
        )


def _walk_staff(walk: Walk, service: RunningService) -> str:
    """Accounts and the watchlist through the API; returns an active entry's id."""
    with service.staff("admin") as admin:
        walk.step(
            ("POST", "/api/v1/accounts"),
            lambda: _ok(
                admin.post(
                    "/api/v1/accounts",
                    json={"username": "walker", "password": "w" * 12, "role": "officer"},
                ),
                201,
            ),
        )
    template = _template(1)
    with service.staff("officer1") as officer:
        entry = walk.step(
            ("POST", "/api/v1/watchlist"),
            lambda: _ok(officer.post("/api/v1/watchlist", json=_enrol_json(template, "w-1")), 201),
        )
        photo = next(_photo(service))
        body = {**_enrol_json(template, "w-2"), "photos": [photo]}
        del body["template"]
        other = walk.step(
            ("POST", "/api/v1/watchlist/photos"),
            lambda: _ok(officer.post("/api/v1/watchlist/photos", json=body), 201),
        )
    with service.staff("supervisor1") as sup:
        path = f"/api/v1/watchlist/{entry['id']}"
        walk.step(
            ("POST", "/api/v1/watchlist/{entry_id}/approve"),
            lambda: _ok(sup.post(f"{path}/approve")),
        )
        walk.step(
            ("POST", "/api/v1/watchlist/{entry_id}/renew"),
            lambda: _ok(
                sup.post(
                    f"{path}/renew", json={"legal_basis": "hk-cap109", "expires_at": _future()}
                )
            ),
        )
        walk.step(
            ("POST", "/api/v1/watchlist/{entry_id}/revoke"),
            lambda: _ok(sup.post(f"/api/v1/watchlist/{other['id']}/revoke", json={"reason": "x"})),
        )
        alert_id = _open_alert(service, "walk-api")
        walk.step(
            ("POST", "/api/v1/alerts/{alert_id}/reviews"),
            lambda: _ok(
                sup.post(
                    f"/api/v1/alerts/{alert_id}/reviews",
                    json={"verdict": "confirm", "reason": "same face"},
                )
            ),
        )
    return str(entry["id"])


def _walk_console(walk: Walk, service: RunningService) -> None:
    """The console's forms, which change state through the API's own functions."""
    sup1, sup2 = sign_in(service, "supervisor1"), sign_in(service, "supervisor2")
    record = json.dumps({"template": _template(2)}).encode()
    form = {
        "subject_ref": "w-console",
        "category": "parallel_trading",
        "legal_basis": "hk-cap60",
        "expires_on": (dt.date.today() + dt.timedelta(days=60)).isoformat(),
        "csrf": csrf(sup1),
    }
    files = {"template_file": ("t.json", record, "application/json")}
    done = walk.step(
        ("POST", "/console/watchlist"),
        lambda: sup1.post("/console/watchlist", data=form, files=files),
    )
    assert done.status_code == 303, done.text
    with service.staff("supervisor1") as api:
        entries = api.get("/api/v1/watchlist").json()
    entry_id = next(e["id"] for e in entries if e["subject_ref"] == "w-console")
    path = f"/console/watchlist/{entry_id}"
    steps: list[tuple[tuple[str, str], Callable[[], Any]]] = [
        (
            ("POST", "/console/watchlist/{entry_id}/approve"),
            lambda: sup2.post(f"{path}/approve", data={"csrf": csrf(sup2)}),
        ),
        (
            ("POST", "/console/watchlist/{entry_id}/renew"),
            lambda: sup2.post(
                f"{path}/renew",
                data={
                    "legal_basis": "hk-cap109",
                    "expires_on": form["expires_on"],
                    "csrf": csrf(sup2),
                },
            ),
        ),
        (
            ("POST", "/console/watchlist/{entry_id}/revoke"),
            lambda: sup1.post(f"{path}/revoke", data={"reason": "closed", "csrf": csrf(sup1)}),
        ),
    ]
    alert_id = _open_alert(service, "walk-console")
    steps.append(
        (
            ("POST", "/console/alerts/{alert_id}/review"),
            lambda: sup1.post(
                f"/console/alerts/{alert_id}/review",
                data={"verdict": "dismiss", "reason": "other face", "csrf": csrf(sup1)},
            ),
        )
    )
    for route, call in steps:
        response = walk.step(route, call)
        assert response.status_code == 303, (route, response.text)
    sup1.close()
    sup2.close()


def _walk_gate(walk: Walk, service: RunningService, template: list[float]) -> None:
    """A gate's life: registration, approval, a search, key rotation, revocation."""
    client = _gate_client(service, "gate-a")
    walk.step(("POST", "/gate/v1/register"), lambda: client.register(site="lo-wu"))
    with service.staff("admin") as admin:
        walk.step(
            ("POST", "/api/v1/gates/{gate_id}/approve"),
            lambda: _ok(admin.post("/api/v1/gates/gate-a/approve")),
        )
    probe = client.encrypt(np.asarray(template, dtype=np.float32))
    query_id, result = walk.step(
        ("POST", "/gate/v1/match"), lambda: client.match(probe.probe, request_id="walk-match-1")
    )
    positions = client.he.reveal(result)
    revealed = walk.step(
        ("POST", "/gate/v1/reveal"),
        lambda: client._post(
            "/gate/v1/reveal",
            {"request_id": "walk-reveal-1", "query_id": query_id, "positions": positions},
        ),
    )
    assert revealed["outcome"] == "secondary"  # the approved entry's own template
    walk.step(
        ("POST", "/gate/v1/keys/rotate"),
        lambda: client.rotate(SigningKey.generate(), SealGateCrypto.generate()),
    )
    client.close()
    with service.staff("admin") as admin:
        walk.step(
            ("POST", "/api/v1/gates/{gate_id}/revoke"),
            lambda: _ok(admin.post("/api/v1/gates/gate-a/revoke")),
        )


def test_every_state_change_records_its_decision(service):
    """Walks every route of :data:`AUDITED`: each writes entries that all carry the id
    and bundle digest of the decision that allowed them (and no refusal)."""
    walk = Walk(service)
    entry_id = _walk_staff(walk, service)
    with service.staff("supervisor1") as sup:
        template = sup.get(f"/api/v1/watchlist/{entry_id}").json()
    assert template["status"] == "active"
    _walk_console(walk, service)
    _walk_gate(walk, service, _template(1))
    assert walk.walked == set(AUDITED)


# --- policy before lookup -------------------------------------------------------------------


def _roles_for(action: str) -> set[str]:
    return set(json.loads(ACCESS_DATA.read_text())["actions"][action]["roles"])


USER_FOR_ROLE = {
    "officer": "officer1",
    "supervisor": "supervisor1",
    "oversight": "oversight1",
    "legal": "legal1",
    "admin": "admin",
}
#: Staff routes with an id in the path: the action they name and a valid body.
ID_ROUTES: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("GET", "/api/v1/watchlist/{entry_id}"): ("watchlist.read", None),
    ("POST", "/api/v1/watchlist/{entry_id}/approve"): ("watchlist.approve", None),
    ("POST", "/api/v1/watchlist/{entry_id}/renew"): (
        "watchlist.renew",
        {"legal_basis": "hk-cap60", "expires_at": _future()},
    ),
    ("POST", "/api/v1/watchlist/{entry_id}/revoke"): ("watchlist.revoke", {"reason": "x"}),
    ("GET", "/api/v1/alerts/{alert_id}"): ("alert.read", None),
    ("POST", "/api/v1/alerts/{alert_id}/reviews"): (
        "alert.review",
        {"verdict": "confirm", "reason": "x"},
    ),
    ("POST", "/api/v1/gates/{gate_id}/approve"): ("admin.gates", None),
    ("POST", "/api/v1/gates/{gate_id}/revoke"): ("admin.gates", None),
    ("GET", "/api/v1/audit/tiles/{path}"): ("audit.read", None),
}


def _id_routes(service: RunningService) -> set[tuple[str, str]]:
    app = create_app(service.settings, ctx=service.ctx)
    found = set()
    for route in iter_route_contexts(app.routes):
        path = str(route.path)
        if path.startswith("/api/") and "{" in path:
            for method in route.methods or ():
                found.add((method, path.replace(":path}", "}")))
    return found


def test_forbidden_roles_cannot_tell_existing_ids_from_missing_ones(service):
    assert _id_routes(service) == set(ID_ROUTES)  # a new route with an id is listed here
    with service.staff("officer1") as officer:
        entry = _ok(officer.post("/api/v1/watchlist", json=_enrol_json(_template(3), "pbl")), 201)
    existing = {
        "entry_id": entry["id"],
        "alert_id": _open_alert(service, "pbl"),
        "gate_id": "gate-b",
        "path": "checkpoint",
    }
    pending = _gate_client(service, "gate-b")
    pending.register(site="pbl")
    pending.close()
    checked = 0
    for (method, template), (action, body) in ID_ROUTES.items():
        name = template[template.index("{") + 1 : template.index("}")]
        for role, user in USER_FOR_ROLE.items():
            if role in _roles_for(action):
                continue
            answers = []
            with service.staff(user) as client:
                for value in (existing[name], "no-such-id"):
                    path = template.replace("{" + name + "}", value)
                    response = client.request(method, path, json=body)
                    answer = response.json()
                    answer.pop("request_id", None)
                    answers.append((response.status_code, answer))
            assert answers[0] == answers[1], (method, template, role, answers)
            assert answers[0][0] == 403, (method, template, role, answers)
            checked += 1
    assert checked >= 20


# --- certificate identity in refusals -------------------------------------------------------


def _cert_sha256(service: RunningService, gate_id: str) -> str:
    cert_path, _ = service.pki.gate_certs[gate_id]
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def test_a_certificate_mismatch_is_recorded_against_the_certificate_presented(service):
    """gate-b's certificate speaking for gate-c: the refusal names gate-b, not gate-c."""
    key = SigningKey.generate()
    signer = RequestSigner(key, "gate-c", key_id_for(key.public_bytes()))
    before = len(service.audit_entries(types=["access.denied"]))
    with service.gate_http("gate-b") as http:
        headers = signer.sign("POST", "/gate/v1/heartbeat", b"{}", now=service.gate_time())
        refused = http.post("/gate/v1/heartbeat", content=b"{}", headers=headers)
        assert refused.json()["code"] == "certificate-mismatch"
        body = json.dumps(
            {
                "gate_id": "gate-c",
                "site": "elsewhere",
                "signing_public_key": base64.b64encode(key.public_bytes()).decode(),
                "he_public_bundle": base64.b64encode(b"not checked before the cert").decode(),
            }
        ).encode()
        headers = signer.sign("POST", "/gate/v1/register", body, now=service.gate_time())
        registered = http.post("/gate/v1/register", content=body, headers=headers)
        assert registered.json()["code"] == "certificate-mismatch"
    denials = service.audit_entries(types=["access.denied"])[before:]
    assert len(denials) == 2
    for entry in denials:
        assert entry.header.actor == "system"
        assert entry.header.subjects == ("gate:gate-b",)
        assert entry.payload["cert_sha256"] == _cert_sha256(service, "gate-b")
        assert entry.payload["claimed_gate"] == "gate-c"
        assert entry.payload["code"] == "certificate-mismatch"

"""Gate authentication over real mutual TLS: registration and approval, key rotation,
and every refusal (replay, stale, wrong signature, unknown/revoked gate, expired key,
wrong certificate), each refused with its code and audited."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from functools import cache

import httpx
import pytest
import sqlalchemy as sa

from crypto.he.keys import GateKeyBundle
from crypto.he.params import get_parameter_set
from crypto.signing import RequestSigner, SigningKey
from gate.client import GateClient, ServiceRefusedError
from service.gates import key_id_for
from service.tables import gate_keys


@cache
def _public_bundle() -> bytes:
    return GateKeyBundle.generate(get_parameter_set("ckks-v2")).public().to_bytes()


class PublicOnly:
    """Enough HE for registration tests: the public bundle."""

    def public_bundle(self) -> bytes:
        return _public_bundle()

    single_ciphertext = True

    def encrypt(self, template, seed=None):  # pragma: no cover - not used here
        raise NotImplementedError

    def reveal(self, masked_result):  # pragma: no cover - not used here
        raise NotImplementedError


def _client(service, gate_id, signing_key=None, rogue=False) -> GateClient:
    pki = service.rogue_pki if rogue else service.pki
    cert, key = pki.gate_certs[gate_id]
    return GateClient(
        service.gate_url,
        gate_id=gate_id,
        cert=cert,
        key=key,
        ca=service.pki.ca_cert,
        signing_key=signing_key or SigningKey.generate(),
        he=PublicOnly(),
        clock=service.gate_time,
    )


def _register_and_approve(service, gate_id, signing_key) -> GateClient:
    client = _client(service, gate_id, signing_key)
    pending = client.register(site="lo-wu")
    assert pending["status"] == "pending"
    with pytest.raises(ServiceRefusedError) as refused:
        client.heartbeat()
    assert refused.value.code == "gate-pending"
    with service.staff("admin") as admin:
        assert admin.post(f"/api/v1/gates/{gate_id}/approve").status_code == 200
    assert client.heartbeat()["gate_id"] == gate_id
    return client


def _signed_post(service, gate_id, key, path, body=b"{}", now=None, key_id=None, rogue=False):
    signer = RequestSigner(key, gate_id, key_id or key_id_for(key.public_bytes()))
    headers = signer.sign("POST", path, body, now=now or service.gate_time())
    with service.gate_http(gate_id, rogue=rogue) as http:
        return http.post(path, content=body, headers=headers), headers


def _denied_codes(service) -> list[str]:
    return [e.payload["code"] for e in service.audit_entries(types=["access.denied"]) if e.payload]


def test_register_approve_heartbeat_and_refusals(service):
    key = SigningKey.generate()
    _register_and_approve(service, "gate-a", key)

    # replay: the very same signed request twice
    body = b"{}"
    signer = RequestSigner(key, "gate-a", key_id_for(key.public_bytes()))
    headers = signer.sign("POST", "/gate/v1/heartbeat", body, now=service.gate_time())
    with service.gate_http("gate-a") as http:
        assert http.post("/gate/v1/heartbeat", content=body, headers=headers).status_code == 200
        replay = http.post("/gate/v1/heartbeat", content=body, headers=headers)
    assert replay.status_code == 401 and replay.json()["code"] == "request-replayed"

    stale, _ = _signed_post(
        service, "gate-a", key, "/gate/v1/heartbeat", now=service.gate_time() - 600
    )
    assert stale.status_code == 401 and stale.json()["code"] == "request-stale"

    forged, _ = _signed_post(
        service,
        "gate-a",
        SigningKey.generate(),
        "/gate/v1/heartbeat",
        key_id=key_id_for(key.public_bytes()),
    )
    assert forged.status_code == 401 and forged.json()["code"] == "signature-invalid"

    # body swapped after signing
    headers = signer.sign("POST", "/gate/v1/heartbeat", b"{}", now=service.gate_time())
    with service.gate_http("gate-a") as http:
        swapped = http.post("/gate/v1/heartbeat", content=b'{"x":1}', headers=headers)
    assert swapped.json()["code"] == "signature-invalid"

    unknown, _ = _signed_post(service, "gate-b", SigningKey.generate(), "/gate/v1/heartbeat")
    assert unknown.status_code == 401 and unknown.json()["code"] == "gate-unknown"

    # a valid certificate of another gate cannot speak for gate-a
    signer_b = RequestSigner(key, "gate-a", key_id_for(key.public_bytes()))
    headers = signer_b.sign("POST", "/gate/v1/heartbeat", b"{}", now=service.gate_time())
    with service.gate_http("gate-b") as http:
        mismatch = http.post("/gate/v1/heartbeat", content=b"{}", headers=headers)
    assert mismatch.json()["code"] == "certificate-mismatch"

    codes = _denied_codes(service)
    for code in (
        "gate-pending",
        "request-replayed",
        "request-stale",
        "signature-invalid",
        "gate-unknown",
        "certificate-mismatch",
    ):
        assert code in codes, code


def test_wrong_certificate_is_refused_in_the_handshake(service):
    key = SigningKey.generate()
    with pytest.raises(httpx.HTTPError):  # certificate from another CA
        _signed_post(service, "gate-a", key, "/gate/v1/heartbeat", rogue=True)
    context = ssl.create_default_context(cafile=str(service.pki.ca_cert))
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=context) as http:  # no cert
        http.post(service.gate_url + "/gate/v1/heartbeat", content=b"{}")


def test_revoked_gate_and_expired_key(service):
    key_c = SigningKey.generate()
    _register_and_approve(service, "gate-c", key_c)
    with service.staff("admin") as admin:
        assert admin.post("/api/v1/gates/gate-c/revoke").status_code == 200
    revoked, _ = _signed_post(service, "gate-c", key_c, "/gate/v1/heartbeat")
    assert revoked.status_code == 401 and revoked.json()["code"] == "gate-revoked"

    key_d = SigningKey.generate()
    _register_and_approve(service, "gate-d", key_d)
    past = service.ctx.now() - dt.timedelta(seconds=1)
    with service.ctx.transaction() as conn:
        conn.execute(
            gate_keys.update().where(gate_keys.c.gate_id == "gate-d").values(expires_at=past)
        )
    expired, _ = _signed_post(service, "gate-d", key_d, "/gate/v1/heartbeat")
    assert expired.status_code == 401 and expired.json()["code"] == "key-expired"
    codes = _denied_codes(service)
    assert "gate-revoked" in codes and "key-expired" in codes


def test_key_rotation_retires_the_old_key(service):
    old = SigningKey.generate()
    client = _register_and_approve(service, "gate-e", old)
    new = SigningKey.generate()
    rotated = client.rotate(new, PublicOnly())
    assert rotated["key_id"] == key_id_for(new.public_bytes())
    assert client.heartbeat()["key_id"] == rotated["key_id"]
    stale_key, _ = _signed_post(service, "gate-e", old, "/gate/v1/heartbeat")
    assert stale_key.json()["code"] == "key-retired"
    with service.ctx.engine.connect() as conn:
        states = dict(
            conn.execute(
                sa.select(gate_keys.c.id, gate_keys.c.status).where(gate_keys.c.gate_id == "gate-e")
            ).all()
        )
    assert sorted(states.values()) == ["active", "retired"]
    assert "gate.key_rotate" in [e.header.type for e in service.audit_entries()]


def test_malformed_gate_bodies_are_4xx(service):
    key = SigningKey.generate()
    for body in (
        b"{not json",
        b'{"request_id": "x"}',
        json.dumps({"request_id": "abcdefgh1234", "probe": "!!notbase64!!"}).encode(),
    ):
        resp, _ = _signed_post(service, "gate-a", key, "/gate/v1/match", body=body)
        assert 400 <= resp.status_code < 500
        assert resp.headers["content-type"].startswith("application/problem+json")

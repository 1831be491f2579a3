"""The binary match wire (``service.wire``, version 1) and the two-transaction match path.

Pure round trips between the gate's framing (``gate.client``) and the service's, then
through the real service over mutual TLS: a binary match is idempotent on retry and
reveals like the JSON form; every malformed frame is a 4xx problem with a stable code;
a request is spent (replay refused) whether its work succeeded or failed.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from gate.client import (
    MATCH_REQUEST_TYPE,
    ServiceRefusedError,
    _frame,
    _unframe,
)
from gate.errors import GateError
from service import wire
from service.errors import MalformedRequestError, PayloadTooLargeError
from tests.service.conftest import problem


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return vector / np.linalg.norm(vector)


# --- pure framing ---------------------------------------------------------------------


def test_gate_frames_parse_in_the_service_and_back():
    meta = json.dumps({"request_id": "abcdefgh1234"}).encode()
    payload = bytes(range(256)) * 9
    parsed = wire.parse_frame(
        _frame(wire.MATCH_REQUEST_MAGIC, meta, payload),
        wire.MATCH_REQUEST_MAGIC,
        max_payload=len(payload),
    )
    assert parsed == wire.Frame(meta, payload)
    answer = json.dumps({"query_id": "q-1", "expires_at": "x", "gallery_version": "v"}).encode()
    head, body = _unframe(b"VMRS", wire.encode_frame(wire.MATCH_RESPONSE_MAGIC, answer, payload))
    assert head["query_id"] == "q-1" and body == payload
    assert wire.MATCH_REQUEST_TYPE == MATCH_REQUEST_TYPE


@pytest.mark.parametrize(
    ("mutation", "code"),
    [
        ("truncated-header", "malformed-frame"),
        ("wrong-magic", "malformed-frame"),
        ("version-2", "unsupported-wire-version"),
        ("meta-longer-than-body", "malformed-frame"),
        ("meta-over-limit", "malformed-frame"),
    ],
)
def test_malformed_frames_raise_typed_errors(mutation, code):
    good = _frame(b"VMRQ", b'{"request_id":"abcdefgh1234"}', b"probe")
    data = {
        "truncated-header": good[:5],
        "wrong-magic": b"VMRS" + good[4:],
        "version-2": good[:4] + b"\x02" + good[5:],
        "meta-longer-than-body": good[:5] + struct.pack(">H", 900) + good[7:],
        "meta-over-limit": good[:5] + struct.pack(">H", 1025) + good[7:] + b"x" * 2000,
    }[mutation]
    with pytest.raises(MalformedRequestError) as err:
        wire.parse_frame(data, wire.MATCH_REQUEST_MAGIC, max_payload=1 << 20)
    assert err.value.code == code


def test_oversized_payload_is_413():
    with pytest.raises(PayloadTooLargeError):
        wire.parse_frame(_frame(b"VMRQ", b"{}", b"x" * 101), b"VMRQ", max_payload=100)


def test_gate_refuses_malformed_response_frames():
    for data in (b"", b"VMRS\x01\x00", b"VMRQ\x01\x00\x02{}", b"VMRS\x01\x00\x02[]"):
        with pytest.raises(GateError):
            _unframe(b"VMRS", data)


# --- through the service ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gate(service):
    client = service.approved_gate("gate-a", site="lo-wu")
    yield client
    client.close()


def _post(service, gate, body: bytes, content_type=MATCH_REQUEST_TYPE, headers=None):
    headers = headers or gate.signer.sign("POST", "/gate/v1/match", body, now=service.gate_time())
    with service.gate_http("gate-a") as http:
        response = http.post(
            "/gate/v1/match", content=body, headers={**headers, "Content-Type": content_type}
        )
    return response, headers


def test_binary_match_retry_is_idempotent_and_reveals(service, gate):
    probe = gate.he.encrypt(_unit(1))
    first = gate.match(probe, request_id="binary-retry-0001")
    again = gate.match(probe, request_id="binary-retry-0001")  # a retry: same query, bytes
    assert again == first
    with pytest.raises(ServiceRefusedError) as reused:
        gate.match(probe, doc_pseudonym="0" * 64, request_id="binary-retry-0001")
    assert reused.value.code == "request-id-reused"
    assert gate.he.reveal(first[1]) == []
    outcome = gate.send_probe(probe, request_id="binary-retry-0002")
    assert outcome.outcome == "proceed" and outcome.hits == 0
    # the database keeps the query id for retries, never the masked result
    with service.ctx.reader() as conn:
        stored = conn.exec_driver_sql(
            "SELECT response FROM svc_idempotency_keys WHERE request_id = 'binary-retry-0001'"
        ).scalar_one()
    assert json.loads(bytes(stored)) == {"query_id": first[0]}


@pytest.mark.parametrize(
    ("mutation", "status", "code"),
    [
        ("version-2", 400, "unsupported-wire-version"),
        ("wrong-magic", 400, "malformed-frame"),
        ("meta-not-json", 400, "malformed-request"),
        ("meta-unknown-field", 400, "malformed-request"),
        ("garbage-probe", 400, "crypto-refused"),
        ("oversized-probe", 413, "payload-too-large"),
    ],
)
def test_malformed_binary_requests_are_4xx_and_spend_the_nonce(
    service, gate, mutation, status, code
):
    meta = b'{"request_id":"malformed-frame-01"}'
    body = {
        "version-2": b"VMRQ\x02" + struct.pack(">H", len(meta)) + meta + b"probe",
        "wrong-magic": _frame(b"VMRS", meta, b"probe"),
        "meta-not-json": _frame(b"VMRQ", b"{not json", b"probe"),
        "meta-unknown-field": _frame(b"VMRQ", b'{"request_id":"abcdefgh1","x":1}', b"p"),
        "garbage-probe": _frame(b"VMRQ", meta, b"\x00" * 4096),
        "oversized-probe": _frame(b"VMRQ", meta, b"\x00" * (6 * 1024 * 1024 + 1)),
    }[mutation]
    response, headers = _post(service, gate, body)
    assert response.status_code == status, response.text[:300]
    assert problem(response)["code"] == code
    assert b"probe" not in response.content  # nothing sent is echoed
    replay, _ = _post(service, gate, body, headers=headers)
    assert replay.status_code == 401 and problem(replay)["code"] == "request-replayed"


def test_a_committed_match_cannot_be_replayed(service, gate):
    probe = gate.he.encrypt(_unit(2))
    body = _frame(b"VMRQ", b'{"request_id":"replay-binary-01"}', probe)
    first, headers = _post(service, gate, body)
    assert first.status_code == 200
    assert first.headers["content-type"] == wire.MATCH_RESPONSE_TYPE
    replay, _ = _post(service, gate, body, headers=headers)
    assert replay.status_code == 401 and problem(replay)["code"] == "request-replayed"
    query_id, result = _unframe(b"VMRS", first.content)[0]["query_id"], first.content
    entries = service.audit_entries(types=["match.query"])
    assert [e for e in entries if f"query:{query_id}" in e.header.subjects]
    assert len(result) > 1_000  # raw bytes, no base64

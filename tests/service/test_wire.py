"""The binary match wire (``protocol.wire``, version 1) through the real service and the
two-transaction match path.

Over mutual TLS: a binary match is idempotent on retry and reveals like the JSON form;
every malformed frame is a 4xx problem with a stable code (the protocol's errors mapped
by ``service.problems``); a request is spent (replay refused) whether its work succeeded
or failed. The pure codec and messages are tested in ``tests/protocol``.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from gate.client import ServiceRefusedError
from protocol import wire
from protocol.messages import MatchResponse
from protocol.wire import MATCH_REQUEST_TYPE
from protocol.wire import encode_frame as _frame
from tests.service.conftest import problem


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return vector / np.linalg.norm(vector)


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
    query_id, result = MatchResponse.from_bytes(first.content).query_id, first.content
    entries = service.audit_entries(types=["match.query"])
    assert [e for e in entries if f"query:{query_id}" in e.header.subjects]
    assert len(result) > 1_000  # raw bytes, no base64

"""The gate client parses the service's answers with ``protocol.messages``: a malformed
match or reveal response is a typed ``ServiceProtocolError``, never a raw exception.

The service is an ``httpx.MockTransport`` (the real HTTPS path is tested in
``tests/service``); the mutations are named after what they break.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from crypto.devcerts import make_dev_pki
from crypto.signing import SigningKey
from gate.client import GateClient, ServiceProtocolError, ServiceRefusedError
from gate.errors import GateError
from protocol.messages import MatchResponse

RESPONSE_TYPE = "application/vnd.veilmatch.match-response"
GOOD_META = {"query_id": "q-1", "expires_at": "2025-01-01T00:00:00Z", "gallery_version": "g"}


class _NoCrypto:
    single_ciphertext = False

    def encrypt(self, template: Any, seed: bytes | None = None) -> bytes:
        return b"probe"

    def reveal(self, masked_result: bytes) -> list[int]:
        return [2, 0]

    def public_bundle(self) -> bytes:
        return b""


def _frame(meta: bytes, payload: bytes = b"masked", declared: int | None = None) -> bytes:
    size = len(meta) if declared is None else declared
    return b"VMRS\x01" + size.to_bytes(2, "big") + meta + payload


def _client(tmp_path: Path, handler: Callable[[httpx.Request], httpx.Response]) -> GateClient:
    pki = make_dev_pki(tmp_path / "pki", ["gate-a"])
    cert, key = pki.gate_certs["gate-a"]
    client = GateClient(
        "https://127.0.0.1:1",
        gate_id="gate-a",
        cert=cert,
        key=key,
        ca=pki.ca_cert,
        signing_key=SigningKey.generate(),
        he=_NoCrypto(),
    )
    client._http = httpx.Client(base_url="https://t", transport=httpx.MockTransport(handler))
    return client


MALFORMED_MATCH_RESPONSES = {
    "empty": b"",
    "truncated-header": b"VMRS\x01\x00",
    "request-magic": b"VMRQ" + _frame(json.dumps(GOOD_META).encode())[4:],
    "version-2": b"VMRS\x02" + _frame(json.dumps(GOOD_META).encode())[5:],
    "meta-not-json": _frame(b"{not json"),
    "meta-a-list": _frame(b"[]"),
    "meta-without-query-id": _frame(json.dumps({**GOOD_META, "query_id": None}).encode()),
    "meta-length-beyond-body": _frame(b"{}", b"", declared=900),
    # The gate's old copy of the codec did not check the declared metadata length
    # against the body: this frame parsed, with its metadata short and no result.
    "meta-length-beyond-valid-meta": _frame(
        json.dumps(GOOD_META).encode(), b"", declared=len(json.dumps(GOOD_META)) + 50
    ),
    "meta-length-over-limit": _frame(json.dumps(GOOD_META).encode().ljust(1100), b""),
}


@pytest.mark.parametrize("mutation", sorted(MALFORMED_MATCH_RESPONSES))
def test_malformed_match_responses_are_typed_errors(tmp_path, mutation):
    body = MALFORMED_MATCH_RESPONSES[mutation]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": RESPONSE_TYPE})

    client = _client(tmp_path, handler)
    with pytest.raises(ServiceProtocolError) as err:
        client.match(b"probe", request_id="r-00000001")
    assert isinstance(err.value, GateError)
    client.close()


def test_a_json_answer_to_a_binary_request_is_refused(tmp_path):
    client = _client(tmp_path, lambda request: httpx.Response(200, json=GOOD_META))
    with pytest.raises(ServiceRefusedError) as err:
        client.match(b"probe", request_id="r-00000001")
    assert err.value.code == "unexpected-media-type"


def test_reveal_sends_sorted_positions_and_parses_the_answer(tmp_path):
    sent: list[dict[str, Any]] = []
    answer = MatchResponse("q-1", dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "g", b"m").to_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gate/v1/match":
            return httpx.Response(200, content=answer, headers={"content-type": RESPONSE_TYPE})
        sent.append(json.loads(request.content))
        outcome = "secondary" if len(sent) == 1 else "wave-through"
        return httpx.Response(200, json={"query_id": "q-1", "outcome": outcome})

    client = _client(tmp_path, handler)
    outcome = client.send_probe(b"probe", request_id="r-00000001")
    assert (outcome.query_id, outcome.outcome, outcome.hits) == ("q-1", "secondary", 2)
    assert sent[0] == {"request_id": "r-00000001-r", "query_id": "q-1", "positions": [0, 2]}
    with pytest.raises(ServiceProtocolError):  # an outcome the protocol does not know
        client.send_probe(b"probe", request_id="r-00000002")
    client.close()

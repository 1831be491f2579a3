"""crypto.signing: round trip, and every field bound by the signature."""

from __future__ import annotations

import pytest

from crypto.signing import (
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    MalformedSignatureError,
    RequestSigner,
    SignatureInvalidError,
    SigningKey,
    StaleRequestError,
    verify_request,
)

NOW = 1_750_000_000.0


@pytest.fixture
def signed():
    key = SigningKey.generate()
    headers = RequestSigner(key, "gate-1", "k-1").sign("POST", "/gate/v1/match", b"body", now=NOW)
    return key, headers


def test_round_trip(signed):
    key, headers = signed
    result = verify_request(key.public_bytes(), "POST", "/gate/v1/match", b"body", headers, now=NOW)
    assert (result.gate_id, result.key_id, result.timestamp) == ("gate-1", "k-1", int(NOW))
    restored = SigningKey.from_private_bytes(key.private_bytes())
    assert restored.public_bytes() == key.public_bytes()


@pytest.mark.parametrize("mutation", ["method", "path", "body", "timestamp", "nonce", "gate"])
def test_every_field_is_bound(signed, mutation):
    key, headers = signed
    method, path, body, headers = "POST", "/gate/v1/match", b"body", dict(headers)
    if mutation == "method":
        method = "PUT"
    elif mutation == "path":
        path = "/gate/v1/reveal"
    elif mutation == "body":
        body = b"bodz"
    elif mutation == "timestamp":
        headers[HEADER_TIMESTAMP] = str(int(NOW) + 1)
    elif mutation == "nonce":
        headers[HEADER_NONCE] = headers[HEADER_NONCE][:-1] + (
            "A" if headers[HEADER_NONCE][-1] != "A" else "B"
        )
    else:
        headers["X-VM-Gate"] = "gate-2"
    with pytest.raises(SignatureInvalidError):
        verify_request(key.public_bytes(), method, path, body, headers, now=NOW)


def test_stale_and_malformed(signed):
    key, headers = signed
    with pytest.raises(StaleRequestError):
        verify_request(key.public_bytes(), "POST", "/gate/v1/match", b"body", headers, now=NOW + 61)
    for name, value in (
        (HEADER_SIGNATURE, "***"),
        (HEADER_TIMESTAMP, "-1"),
        (HEADER_NONCE, "short"),
    ):
        with pytest.raises(MalformedSignatureError):
            verify_request(
                key.public_bytes(),
                "POST",
                "/gate/v1/match",
                b"body",
                {**headers, name: value},
                now=NOW,
            )
    with pytest.raises(MalformedSignatureError):
        verify_request(b"\x00" * 31, "POST", "/gate/v1/match", b"body", headers, now=NOW)

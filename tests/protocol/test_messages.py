"""The match and reveal messages (``protocol.messages``): valid on construction, round
trips through bytes, and every malformed body a typed error naming the field only."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from protocol.errors import (
    FrameTooLargeError,
    MalformedFrameError,
    MalformedMessageError,
    UnsupportedWireVersionError,
)
from protocol.messages import (
    MAX_POSITIONS,
    MatchRequest,
    MatchResponse,
    RevealRequest,
    RevealResponse,
)
from protocol.wire import MATCH_REQUEST_MAGIC, MATCH_RESPONSE_MAGIC, encode_frame

PSEUDONYM = "ab" * 32
SEED = "0f" * 32
EXPIRES = dt.datetime(2025, 3, 1, 12, 0, 30, tzinfo=dt.UTC)


def _request_frame(meta: object, probe: bytes = b"probe") -> bytes:
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return encode_frame(MATCH_REQUEST_MAGIC, raw, probe)


@pytest.mark.parametrize(
    "request_",
    [
        MatchRequest("abcdefgh", b""),
        MatchRequest("r-0123456789", b"\x00" * 5000, doc_pseudonym=PSEUDONYM),
        MatchRequest("A._-" * 16, b"p", doc_pseudonym=PSEUDONYM, next_seed=SEED),
    ],
)
def test_match_request_round_trip(request_):
    assert MatchRequest.from_bytes(request_.to_bytes()) == request_


def test_match_request_bytes_are_stable():
    # the gate signs these bytes and a retry must repeat them exactly
    body = MatchRequest("r-0123456789", b"P", doc_pseudonym=PSEUDONYM, next_seed=SEED)
    meta = f'{{"request_id":"r-0123456789","doc_pseudonym":"{PSEUDONYM}","next_seed":"{SEED}"}}'
    assert body.to_bytes() == encode_frame(MATCH_REQUEST_MAGIC, meta.encode(), b"P")


@pytest.mark.parametrize(
    ("mutation", "meta", "field"),
    [
        ("meta-not-json", b"{not json", "JSON"),
        ("meta-not-utf8", b'{"request_id":"\xff\xfe"}', "JSON"),
        ("meta-a-list", b"[]", "object"),
        ("meta-unknown-field", {"request_id": "abcdefgh1", "x": 1}, "x"),
        ("request-id-missing", {}, "request_id"),
        ("request-id-short", {"request_id": "abc"}, "request_id"),
        ("request-id-long", {"request_id": "a" * 65}, "request_id"),
        ("request-id-slash", {"request_id": "abcdefgh/1"}, "request_id"),
        ("request-id-number", {"request_id": 123456789}, "request_id"),
        ("pseudonym-uppercase", {"request_id": "abcdefgh", "doc_pseudonym": "AB" * 32}, "doc"),
        ("pseudonym-short", {"request_id": "abcdefgh", "doc_pseudonym": "ab"}, "doc"),
        ("seed-63-digits", {"request_id": "abcdefgh", "next_seed": "a" * 63}, "next_seed"),
        ("seed-number", {"request_id": "abcdefgh", "next_seed": 7}, "next_seed"),
    ],
)
def test_malformed_match_request_metadata(mutation, meta, field):
    with pytest.raises(MalformedMessageError) as err:
        MatchRequest.from_bytes(_request_frame(meta))
    assert err.value.code == "malformed-request"
    assert field in str(err.value)
    assert "ab" * 8 not in str(err.value)  # values are never echoed


def test_match_request_frame_errors_pass_through():
    good = _request_frame({"request_id": "abcdefgh"})
    with pytest.raises(UnsupportedWireVersionError):
        MatchRequest.from_bytes(good[:4] + b"\x07" + good[5:])
    with pytest.raises(MalformedFrameError):
        MatchRequest.from_bytes(encode_frame(MATCH_RESPONSE_MAGIC, b"{}", b""))
    with pytest.raises(FrameTooLargeError):
        MatchRequest.from_bytes(_request_frame({"request_id": "abcdefgh"}, b"x" * 11), max_probe=10)


def test_match_request_invalid_on_construction():
    with pytest.raises(MalformedMessageError):
        MatchRequest("short", b"")
    with pytest.raises(MalformedMessageError):
        MatchRequest("abcdefgh", b"", doc_pseudonym="not-hex")


def test_match_response_round_trip():
    answer = MatchResponse("5f1c-q", EXPIRES, "e3" * 32, b"\x01" * 777)
    assert MatchResponse.from_bytes(answer.to_bytes()) == answer


def test_match_response_accepts_the_services_form():
    # pydantic's JSON (service.schemas.MatchResultMeta): Z suffix, extra fields ignored
    meta = json.dumps(
        {
            "query_id": "0b8e1c6a-2d1e-4a57-8b0e-7cb3d7f0a1a2",
            "expires_at": "2025-03-01T12:00:30Z",
            "gallery_version": "e3" * 32,
            "added_later": True,
        }
    ).encode()
    answer = MatchResponse.from_bytes(encode_frame(MATCH_RESPONSE_MAGIC, meta, b"R"))
    assert answer.expires_at == EXPIRES and answer.masked_result == b"R"


@pytest.mark.parametrize(
    "meta",
    [
        {"expires_at": "2025-03-01T12:00:30Z", "gallery_version": "v"},
        {"query_id": "", "expires_at": "2025-03-01T12:00:30Z", "gallery_version": "v"},
        {"query_id": "q", "expires_at": "tomorrow", "gallery_version": "v"},
        {"query_id": "q", "expires_at": "2025-03-01T12:00:30", "gallery_version": "v"},
        {"query_id": "q", "expires_at": 5, "gallery_version": "v"},
        {"query_id": "q", "expires_at": "2025-03-01T12:00:30Z"},
        {"query_id": "q/../x", "expires_at": "2025-03-01T12:00:30Z", "gallery_version": "v"},
    ],
)
def test_malformed_match_response_metadata(meta):
    with pytest.raises(MalformedMessageError):
        MatchResponse.from_bytes(encode_frame(MATCH_RESPONSE_MAGIC, json.dumps(meta).encode(), b""))


@pytest.mark.parametrize("positions", [(), (0,), (3, 17, 4095), tuple(range(MAX_POSITIONS))])
def test_reveal_request_round_trip(positions):
    reveal = RevealRequest("r-0123456789-r", "q-1", positions)
    assert RevealRequest.from_bytes(reveal.to_bytes()) == reveal
    assert json.loads(reveal.to_bytes())["positions"] == list(positions)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[1,2]",
        b'{"request_id":"r-0123456789","query_id":"q"}',
        b'{"request_id":"r-0123456789","query_id":"q","positions":"1,2"}',
        b'{"request_id":"r-0123456789","query_id":"q","positions":[-1]}',
        b'{"request_id":"r-0123456789","query_id":"q","positions":[2,1]}',
        b'{"request_id":"r-0123456789","query_id":"q","positions":[1,1]}',
        b'{"request_id":"r-0123456789","query_id":"q","positions":[true]}',
        b'{"request_id":"r-0123456789","query_id":"q","positions":[1.0]}',
        b'{"request_id":"r-0123456789","query_id":"q","positions":[],"x":1}',
        json.dumps(
            {"request_id": "r-0123456789", "query_id": "q", "positions": list(range(4097))}
        ).encode(),
    ],
)
def test_malformed_reveal_requests(body):
    with pytest.raises(MalformedMessageError):
        RevealRequest.from_bytes(body)


def test_reveal_response_round_trip_and_refusals():
    for outcome in ("proceed", "secondary"):
        answer = RevealResponse("q-1", outcome)
        assert RevealResponse.from_bytes(answer.to_bytes()) == answer
    for body in (b'{"query_id":"q-1","outcome":"wave-through"}', b'{"outcome":"proceed"}', b"{"):
        with pytest.raises(MalformedMessageError):
            RevealResponse.from_bytes(body)


def test_a_response_whose_metadata_length_runs_past_the_body_is_refused():
    # The gate's own copy of the codec (before protocol/) did not compare the declared
    # metadata length with the body: this frame parsed, with an empty result.
    meta = json.dumps(
        {"query_id": "q-1", "expires_at": "2025-03-01T12:00:30Z", "gallery_version": "v"}
    ).encode()
    frame = MATCH_RESPONSE_MAGIC + b"\x01" + (len(meta) + 50).to_bytes(2, "big") + meta
    with pytest.raises(MalformedFrameError):
        MatchResponse.from_bytes(frame)

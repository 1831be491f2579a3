"""The frame codec (``protocol.wire``, version 1): round trips and every malformed frame.

Mutations are named after what they do to a good frame; each must raise its typed
error with the stable code the service answers with (``docs/api.md``).
"""

from __future__ import annotations

import struct

import pytest

from protocol.errors import (
    FrameTooLargeError,
    MalformedFrameError,
    ProtocolError,
    UnsupportedWireVersionError,
)
from protocol.wire import (
    FRAME_VERSION,
    MATCH_REQUEST_MAGIC,
    MATCH_RESPONSE_MAGIC,
    MAX_META_BYTES,
    Frame,
    encode_frame,
    is_media_type,
    parse_frame,
)

META = b'{"request_id":"abcdefgh1234"}'
GOOD = encode_frame(MATCH_REQUEST_MAGIC, META, b"probe")


def test_frame_layout_is_the_documented_bytes():
    # docs/api.md: magic (4 B) | version (u8 = 1) | meta length (u16 BE) | meta | payload
    assert b"VMRQ\x01" + struct.pack(">H", len(META)) + META + b"probe" == GOOD
    assert FRAME_VERSION == 1


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(256)) * 9])
@pytest.mark.parametrize("meta", [b"", b"{}", b"m" * MAX_META_BYTES])
def test_round_trip(meta, payload):
    for magic in (MATCH_REQUEST_MAGIC, MATCH_RESPONSE_MAGIC):
        data = encode_frame(magic, meta, payload)
        assert parse_frame(data, magic, max_payload=len(payload)) == Frame(meta, payload)


@pytest.mark.parametrize(
    ("mutation", "error", "code"),
    [
        ("empty", MalformedFrameError, "malformed-frame"),
        ("truncated-header", MalformedFrameError, "malformed-frame"),
        ("wrong-magic", MalformedFrameError, "malformed-frame"),
        ("response-magic-on-request", MalformedFrameError, "malformed-frame"),
        ("version-0", UnsupportedWireVersionError, "unsupported-wire-version"),
        ("version-2", UnsupportedWireVersionError, "unsupported-wire-version"),
        ("meta-longer-than-body", MalformedFrameError, "malformed-frame"),
        ("meta-over-limit", MalformedFrameError, "malformed-frame"),
        ("meta-length-max-u16", MalformedFrameError, "malformed-frame"),
    ],
)
def test_malformed_frames_raise_typed_errors(mutation, error, code):
    data = {
        "empty": b"",
        "truncated-header": GOOD[:5],
        "wrong-magic": b"XXXX" + GOOD[4:],
        "response-magic-on-request": MATCH_RESPONSE_MAGIC + GOOD[4:],
        "version-0": GOOD[:4] + b"\x00" + GOOD[5:],
        "version-2": GOOD[:4] + b"\x02" + GOOD[5:],
        "meta-longer-than-body": GOOD[:5] + struct.pack(">H", 900) + GOOD[7:],
        "meta-over-limit": GOOD[:5] + struct.pack(">H", 1025) + GOOD[7:] + b"x" * 2000,
        "meta-length-max-u16": GOOD[:5] + b"\xff\xff" + GOOD[7:],
    }[mutation]
    with pytest.raises(error) as err:
        parse_frame(data, MATCH_REQUEST_MAGIC, max_payload=1 << 20)
    assert err.value.code == code
    assert isinstance(err.value, ProtocolError)


def test_version_is_checked_before_the_metadata():
    # a future version may lay out its metadata differently: its length is not read
    data = b"VMRQ\x02\xff\xff"
    with pytest.raises(UnsupportedWireVersionError):
        parse_frame(data, MATCH_REQUEST_MAGIC, max_payload=0)


def test_payload_over_the_limit_is_too_large():
    data = encode_frame(MATCH_REQUEST_MAGIC, b"{}", b"x" * 101)
    assert parse_frame(data, MATCH_REQUEST_MAGIC, max_payload=101).payload == b"x" * 101
    with pytest.raises(FrameTooLargeError) as err:
        parse_frame(data, MATCH_REQUEST_MAGIC, max_payload=100)
    assert err.value.code == "payload-too-large"
    assert "x" * 10 not in str(err.value)  # sizes only, no payload


def test_encoder_refuses_what_the_parser_would():
    with pytest.raises(MalformedFrameError):
        encode_frame(MATCH_REQUEST_MAGIC, b"m" * (MAX_META_BYTES + 1), b"")
    with pytest.raises(MalformedFrameError):
        encode_frame(b"VMR", b"{}", b"")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/vnd.veilmatch.match-request", True),
        ("Application/VND.veilmatch.match-request; charset=binary", True),
        ("application/json, application/vnd.veilmatch.match-request", True),
        ("application/vnd.veilmatch.match-response", False),
        ("application/json", False),
        ("", False),
        (None, False),
    ],
)
def test_media_type_matching(header, expected):
    assert is_media_type(header, "application/vnd.veilmatch.match-request") is expected

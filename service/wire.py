"""Binary framing of the match exchange (``vm-frame`` version 1).

A match request carries a 2 MB encrypted probe and its answer a 0.3 MB masked
result. Inside JSON they travel as base64 (a third larger, and encoded, escaped, parsed
and decoded on both sides); framed, the bytes go through untouched. A frame is::

    magic 4 B | version u8 = 1 | meta length u16 (big-endian) | meta | payload

``meta`` is a small UTF-8 JSON object (at most :data:`MAX_META_BYTES`) validated
by a strict schema; ``payload`` is the rest of the body (the probe or the masked
result, in ``crypto.he``'s own versioned binary formats). The whole request body
— frame header, metadata and probe — is what the gate signs, so the request id and
document pseudonym are covered by the signature exactly as in the JSON form.

Media types: ``application/vnd.veilmatch.match-request`` (magic ``VMRQ``) and
``application/vnd.veilmatch.match-response`` (magic ``VMRS``). Version 1 is the only
version; any other is refused (``unsupported-wire-version``) before the metadata is
read. The gate client (``gate.client``) writes and reads the same frames; a test
round-trips one through the other.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from service.errors import MalformedRequestError, PayloadTooLargeError

__all__ = [
    "FRAME_VERSION",
    "MATCH_REQUEST_MAGIC",
    "MATCH_REQUEST_TYPE",
    "MATCH_RESPONSE_MAGIC",
    "MATCH_RESPONSE_TYPE",
    "MAX_META_BYTES",
    "Frame",
    "encode_frame",
    "is_media_type",
    "parse_frame",
]

MATCH_REQUEST_TYPE = "application/vnd.veilmatch.match-request"
MATCH_RESPONSE_TYPE = "application/vnd.veilmatch.match-response"
MATCH_REQUEST_MAGIC = b"VMRQ"
MATCH_RESPONSE_MAGIC = b"VMRS"
FRAME_VERSION = 1
#: Largest metadata object (bytes); request ids, pseudonyms and versions are short.
MAX_META_BYTES = 1024
_HEAD = struct.Struct(">4sBH")


@dataclass(frozen=True)
class Frame:
    """A parsed frame: its JSON metadata (bytes, not yet validated) and payload."""

    meta: bytes
    payload: bytes


def encode_frame(magic: bytes, meta: bytes, payload: bytes) -> bytes:
    """One frame. ``meta`` is a JSON object's UTF-8 bytes (≤ :data:`MAX_META_BYTES`)."""
    if len(magic) != 4:
        raise ValueError("frame magic is 4 bytes")
    if len(meta) > MAX_META_BYTES:
        raise ValueError("frame metadata too large")
    return b"".join((_HEAD.pack(magic, FRAME_VERSION, len(meta)), meta, payload))


def parse_frame(data: bytes, magic: bytes, *, max_payload: int) -> Frame:
    """Split a frame, checking in order: header present, magic, version, metadata
    length (``MalformedRequestError``, 400, with a stable code), payload size
    (``PayloadTooLargeError``, 413). The metadata is returned unparsed for the
    caller's schema.

    The payload is one copy of the tail of ``data`` (run this off the event loop).
    """
    if len(data) < _HEAD.size:
        raise MalformedRequestError("frame truncated", code="malformed-frame")
    got_magic, version, meta_len = _HEAD.unpack_from(data, 0)
    if got_magic != magic:
        raise MalformedRequestError("not a veilmatch match frame", code="malformed-frame")
    if version != FRAME_VERSION:
        raise MalformedRequestError(
            f"frame version {version} is not supported (expected {FRAME_VERSION})",
            code="unsupported-wire-version",
        )
    if meta_len > MAX_META_BYTES or _HEAD.size + meta_len > len(data):
        raise MalformedRequestError("frame metadata length is invalid", code="malformed-frame")
    start = _HEAD.size + meta_len
    if len(data) - start > max_payload:
        raise PayloadTooLargeError(f"frame payload larger than {max_payload} bytes")
    return Frame(data[_HEAD.size : start], data[start:])


def is_media_type(content_type: str | None, media_type: str) -> bool:
    """Whether a ``Content-Type``/``Accept`` value names ``media_type`` (parameters ignored)."""
    if not content_type:
        return False
    return any(
        part.split(";", 1)[0].strip().lower() == media_type for part in content_type.split(",")
    )

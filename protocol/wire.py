"""Binary framing of the match exchange (``vm-frame`` version 1): codec, media types,
size limits.

A match request carries an encrypted probe and its answer a masked result. Inside JSON
they travel as base64 (a third larger, and encoded, escaped, parsed and decoded on both
sides); framed, the bytes go through untouched. A frame is::

    magic 4 B | version u8 = 1 | meta length u16 (big-endian) | meta | payload

``meta`` is a small UTF-8 JSON object (at most :data:`MAX_META_BYTES`), validated by the
message that owns the frame (``protocol.messages``); ``payload`` is the rest of the body
(the probe or the masked result, in ``crypto.he``'s own versioned binary formats). The
whole request body — header, metadata and probe — is what the gate signs, so the request
id and document pseudonym are covered by the signature with the probe.

Media types: :data:`MATCH_REQUEST_TYPE` (magic ``VMRQ``) and :data:`MATCH_RESPONSE_TYPE`
(magic ``VMRS``). Version 1 is the only version; any other is refused
(:class:`~protocol.errors.UnsupportedWireVersionError`) before the metadata is read.

Usage::

    body = encode_frame(MATCH_REQUEST_MAGIC, b'{"request_id":"r-00000001"}', probe)
    frame = parse_frame(body, MATCH_REQUEST_MAGIC, max_payload=MAX_PROBE_BYTES)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from protocol.errors import FrameTooLargeError, MalformedFrameError, UnsupportedWireVersionError

__all__ = [
    "FRAME_VERSION",
    "MATCH_REQUEST_MAGIC",
    "MATCH_REQUEST_TYPE",
    "MATCH_RESPONSE_MAGIC",
    "MATCH_RESPONSE_TYPE",
    "MAX_META_BYTES",
    "MAX_PROBE_BYTES",
    "MAX_RESULT_BYTES",
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
#: Largest metadata object (bytes); request ids, pseudonyms, seeds and versions are short.
MAX_META_BYTES = 1024
#: Largest probe the service accepts (bytes): a ckks-v2 probe is 32.9 KB, ckks-v1 2.1 MB.
MAX_PROBE_BYTES = 6 * 1024 * 1024
#: Largest masked result a gate accepts (bytes; ``crypto.he.wire.MAX_RESULT_BYTES``).
MAX_RESULT_BYTES = 64 << 20
_HEAD = struct.Struct(">4sBH")


@dataclass(frozen=True)
class Frame:
    """A split frame: its JSON metadata (bytes, not yet validated) and its payload."""

    meta: bytes
    payload: bytes


def encode_frame(magic: bytes, meta: bytes, payload: bytes) -> bytes:
    """One version-1 frame. Requires ``len(magic) == 4`` and ``len(meta) <=``
    :data:`MAX_META_BYTES` (``MalformedFrameError`` otherwise: nothing is written that
    the other end would refuse)."""
    if len(magic) != 4:
        raise MalformedFrameError("frame magic is 4 bytes")
    if len(meta) > MAX_META_BYTES:
        raise MalformedFrameError(f"frame metadata larger than {MAX_META_BYTES} bytes")
    return b"".join((_HEAD.pack(magic, FRAME_VERSION, len(meta)), meta, payload))


def parse_frame(data: bytes, magic: bytes, *, max_payload: int) -> Frame:
    """Split a frame, checking in order and raising on the first failure:

    1. the 7-byte header is present (``MalformedFrameError``);
    2. the magic is ``magic`` (``MalformedFrameError``);
    3. the version is :data:`FRAME_VERSION` (``UnsupportedWireVersionError``);
    4. the metadata length is at most :data:`MAX_META_BYTES` and within the body
       (``MalformedFrameError``);
    5. the payload is at most ``max_payload`` bytes (``FrameTooLargeError``).

    The metadata is returned unparsed for the message's schema. The payload is one copy
    of the tail of ``data`` (callers on an event loop run this in a thread).
    """
    if len(data) < _HEAD.size:
        raise MalformedFrameError("frame truncated")
    got_magic, version, meta_len = _HEAD.unpack_from(data, 0)
    if got_magic != magic:
        raise MalformedFrameError("not a veilmatch match frame of the expected kind")
    if version != FRAME_VERSION:
        raise UnsupportedWireVersionError(
            f"frame version {version} is not supported (expected {FRAME_VERSION})"
        )
    if meta_len > MAX_META_BYTES or _HEAD.size + meta_len > len(data):
        raise MalformedFrameError("frame metadata length is invalid")
    start = _HEAD.size + meta_len
    if len(data) - start > max_payload:
        raise FrameTooLargeError(f"frame payload larger than {max_payload} bytes")
    return Frame(bytes(data[_HEAD.size : start]), bytes(data[start:]))


def is_media_type(content_type: str | None, media_type: str) -> bool:
    """Whether a ``Content-Type``/``Accept`` value names ``media_type`` (parameters and
    case ignored)."""
    if not content_type:
        return False
    return any(
        part.split(";", 1)[0].strip().lower() == media_type for part in content_type.split(",")
    )

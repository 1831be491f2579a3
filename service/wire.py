"""The binary match frames now live in :mod:`protocol.wire` (shared with the gate).

This name is kept so code written against ``service.wire`` keeps importing; new code
imports ``protocol.wire``. Errors are ``protocol.errors`` types, which
:func:`service.problems.to_service_error` maps to the API's stable codes
(``malformed-frame``, ``unsupported-wire-version``, 413 ``payload-too-large``).
"""

from __future__ import annotations

from protocol.wire import (
    FRAME_VERSION,
    MATCH_REQUEST_MAGIC,
    MATCH_REQUEST_TYPE,
    MATCH_RESPONSE_MAGIC,
    MATCH_RESPONSE_TYPE,
    MAX_META_BYTES,
    Frame,
    encode_frame,
    is_media_type,
    parse_frame,
)

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

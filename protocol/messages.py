"""The match and reveal messages, as frozen types valid on construction.

Parse, then trust: ``from_bytes`` checks the frame (``protocol.wire``), then every
field of the metadata or JSON body, and raises a :class:`~protocol.errors.ProtocolError`
subclass on the first failure; an instance that exists is well-formed, so ``to_bytes``
always writes something the other end accepts.

Per traveller, the gate sends :class:`MatchRequest` (binary frame, ``VMRQ``), gets
:class:`MatchResponse` (``VMRS``), decrypts locally and sends :class:`RevealRequest`
(JSON) with the positive positions only, and gets :class:`RevealResponse`.
Requests refuse unknown fields (as the service does); responses ignore them, so a
service may add fields without breaking deployed gates.

Usage::

    body = MatchRequest("r-0123456789", probe, doc_pseudonym=pseudonym).to_bytes()
    answer = MatchResponse.from_bytes(response_body)
    reveal = RevealRequest("r-0123456789-r", answer.query_id, (3, 17)).to_bytes()
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from protocol.errors import MalformedMessageError
from protocol.wire import (
    MATCH_REQUEST_MAGIC,
    MATCH_RESPONSE_MAGIC,
    MAX_PROBE_BYTES,
    MAX_RESULT_BYTES,
    encode_frame,
    parse_frame,
)

__all__ = [
    "MAX_POSITIONS",
    "MatchRequest",
    "MatchResponse",
    "Outcome",
    "RevealRequest",
    "RevealResponse",
]

#: Most positions a reveal may carry (the service's limit).
MAX_POSITIONS = 4096
Outcome = Literal["proceed", "secondary"]
_OUTCOMES: tuple[Outcome, ...] = ("proceed", "secondary")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_QUERY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_VERSION = re.compile(r"[A-Za-z0-9._:+-]{1,128}")


def _check(name: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise MalformedMessageError(f"field {name} is missing or invalid")
    return value


def _optional(name: str, value: object, pattern: re.Pattern[str]) -> str | None:
    return None if value is None else _check(name, value, pattern)


def _outcome(value: object) -> Outcome:
    for outcome in _OUTCOMES:
        if value == outcome:
            return outcome
    raise MalformedMessageError("field outcome is missing or invalid")


def _object(data: bytes, allowed: frozenset[str] | None) -> Mapping[str, Any]:
    """A JSON object from UTF-8 ``data``; with ``allowed``, unknown keys are refused."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MalformedMessageError("metadata or body is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise MalformedMessageError("metadata or body is not a JSON object")
    if allowed is not None and not set(value) <= allowed:
        unknown = sorted(set(value) - allowed)[:5]
        raise MalformedMessageError("unknown fields: " + ", ".join(unknown))
    return value


def _dumps(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class MatchRequest:
    """An encrypted probe and its metadata: ``request_id`` (8-64 of ``[A-Za-z0-9._-]``,
    reused by retries), optional ``doc_pseudonym`` and ``next_seed`` (64 lowercase hex
    digits each). ``probe`` is opaque here (``crypto.he`` parses it), at most
    :data:`~protocol.wire.MAX_PROBE_BYTES`."""

    request_id: str
    probe: bytes
    doc_pseudonym: str | None = None
    next_seed: str | None = None

    _FIELDS = frozenset({"request_id", "doc_pseudonym", "next_seed"})

    def __post_init__(self) -> None:
        _check("request_id", self.request_id, _REQUEST_ID)
        _optional("doc_pseudonym", self.doc_pseudonym, _HEX64)
        _optional("next_seed", self.next_seed, _HEX64)
        if not isinstance(self.probe, bytes) or len(self.probe) > MAX_PROBE_BYTES:
            raise MalformedMessageError(f"probe is not bytes of at most {MAX_PROBE_BYTES}")

    def to_bytes(self) -> bytes:
        """The ``VMRQ`` frame (the exact bytes the gate signs and a retry repeats)."""
        meta: dict[str, str] = {"request_id": self.request_id}
        if self.doc_pseudonym is not None:
            meta["doc_pseudonym"] = self.doc_pseudonym
        if self.next_seed is not None:
            meta["next_seed"] = self.next_seed
        return encode_frame(MATCH_REQUEST_MAGIC, _dumps(meta), self.probe)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_probe: int = MAX_PROBE_BYTES) -> MatchRequest:
        """Parse a ``VMRQ`` frame; unknown metadata fields are refused."""
        frame = parse_frame(data, MATCH_REQUEST_MAGIC, max_payload=max_probe)
        meta = _object(frame.meta, cls._FIELDS)
        return cls(
            _check("request_id", meta.get("request_id"), _REQUEST_ID),
            frame.payload,
            _optional("doc_pseudonym", meta.get("doc_pseudonym"), _HEX64),
            _optional("next_seed", meta.get("next_seed"), _HEX64),
        )


@dataclass(frozen=True)
class MatchResponse:
    """A masked result and its metadata: the ``query_id`` to reveal against, when the
    pending query ``expires_at`` (timezone-aware) and the ``gallery_version`` scored."""

    query_id: str
    expires_at: dt.datetime
    gallery_version: str
    masked_result: bytes

    def __post_init__(self) -> None:
        _check("query_id", self.query_id, _QUERY_ID)
        _check("gallery_version", self.gallery_version, _VERSION)
        if not isinstance(self.expires_at, dt.datetime) or self.expires_at.tzinfo is None:
            raise MalformedMessageError("field expires_at is missing or invalid")
        if not isinstance(self.masked_result, bytes) or len(self.masked_result) > MAX_RESULT_BYTES:
            raise MalformedMessageError("masked result is not bytes of the allowed size")

    def to_bytes(self) -> bytes:
        """The ``VMRS`` frame."""
        meta = {
            "query_id": self.query_id,
            "expires_at": self.expires_at.isoformat(),
            "gallery_version": self.gallery_version,
        }
        return encode_frame(MATCH_RESPONSE_MAGIC, _dumps(meta), self.masked_result)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_result: int = MAX_RESULT_BYTES) -> MatchResponse:
        """Parse a ``VMRS`` frame; unknown metadata fields are ignored."""
        frame = parse_frame(data, MATCH_RESPONSE_MAGIC, max_payload=max_result)
        meta = _object(frame.meta, None)
        expires = meta.get("expires_at")
        try:
            expires_at = dt.datetime.fromisoformat(expires) if isinstance(expires, str) else None
        except ValueError:
            expires_at = None
        if expires_at is None:
            raise MalformedMessageError("field expires_at is missing or invalid")
        return cls(
            _check("query_id", meta.get("query_id"), _QUERY_ID),
            expires_at,
            _check("gallery_version", meta.get("gallery_version"), _VERSION),
            frame.payload,
        )


@dataclass(frozen=True)
class RevealRequest:
    """The positive positions of a decrypted masked result (ascending, distinct,
    non-negative, at most :data:`MAX_POSITIONS`): all that leaves the gate of it."""

    request_id: str
    query_id: str
    positions: tuple[int, ...]

    _FIELDS = frozenset({"request_id", "query_id", "positions"})

    def __post_init__(self) -> None:
        _check("request_id", self.request_id, _REQUEST_ID)
        _check("query_id", self.query_id, _QUERY_ID)
        p = self.positions
        if (
            not isinstance(p, tuple)
            or len(p) > MAX_POSITIONS
            or any(type(x) is not int or x < 0 for x in p)
            or any(a >= b for a, b in itertools.pairwise(p))
        ):
            raise MalformedMessageError("field positions is missing or invalid")

    def to_bytes(self) -> bytes:
        """The JSON body (``application/json``)."""
        return _dumps(
            {"request_id": self.request_id, "query_id": self.query_id, "positions": self.positions}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RevealRequest:
        """Parse the JSON body; unknown fields are refused."""
        body = _object(data, cls._FIELDS)
        positions = body.get("positions")
        if not isinstance(positions, list):
            raise MalformedMessageError("field positions is missing or invalid")
        return cls(
            _check("request_id", body.get("request_id"), _REQUEST_ID),
            _check("query_id", body.get("query_id"), _QUERY_ID),
            tuple(positions),
        )


@dataclass(frozen=True)
class RevealResponse:
    """What the lane shows: ``proceed`` or ``secondary`` for ``query_id``."""

    query_id: str
    outcome: Outcome

    def __post_init__(self) -> None:
        _check("query_id", self.query_id, _QUERY_ID)
        _outcome(self.outcome)

    def to_bytes(self) -> bytes:
        """The JSON body."""
        return _dumps({"query_id": self.query_id, "outcome": self.outcome})

    @classmethod
    def from_bytes(cls, data: bytes) -> RevealResponse:
        """Parse the JSON body; unknown fields are ignored."""
        body = _object(data, None)
        return cls(
            _check("query_id", body.get("query_id"), _QUERY_ID), _outcome(body.get("outcome"))
        )

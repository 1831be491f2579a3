"""What an audit entry says: event types, events, leaf headers, payload blobs.

A **leaf** is the RFC 8785 canonical JSON of a small header (format version ``v``,
``seq``, ``time``, ``type``, ``actor``, ``subjects``, ``payload_sha256`` and, when a
policy decided, ``policy_digest`` and ``decision_id``). The **payload** (pseudonymous
details) is stored beside it as the canonical JSON of ``{"nonce": …, "payload": …}``;
its SHA-256 is in the header. The random nonce is deleted with the payload, so a
deleted low-entropy payload cannot be recovered by guessing its hash.

Nothing biometric may enter: :func:`check_not_biometric` rejects template-like float
lists, large base64 blobs and fields named like templates, images or document numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import rfc8785

from audit.errors import BiometricPayloadError, EventError, MalformedError

__all__ = [
    "HEADER_VERSION",
    "AuditEvent",
    "EventType",
    "LeafHeader",
    "check_not_biometric",
    "encode_payload",
]

HEADER_VERSION = 1
#: Largest canonical header; the tlog-tiles entry bundle length prefix is a uint16.
MAX_LEAF_BYTES = 4096
MAX_PAYLOAD_BYTES = 16 * 1024


class EventType(StrEnum):
    """Every kind of event veilmatch records. Values are part of the wire format."""

    MATCH_QUERY = "match.query"
    MATCH_DECISION = "match.decision"
    ALERT_RAISED = "alert.raised"
    ALERT_REVIEW = "alert.review"
    WATCHLIST_ENROL = "watchlist.enrol"
    WATCHLIST_RENEW = "watchlist.renew"
    WATCHLIST_REVOKE = "watchlist.revoke"
    WATCHLIST_APPROVE = "watchlist.approve"
    GATE_REGISTER = "gate.register"
    GATE_KEY_ROTATE = "gate.key_rotate"
    POLICY_LOAD = "policy.load"
    RETENTION_DELETE = "retention.delete"
    ADMIN = "admin"
    ACCESS_GRANTED = "access.granted"
    ACCESS_DENIED = "access.denied"
    AUDIT_EXPORT = "audit.export"


# --- the biometric guard -------------------------------------------------------------

_FORBIDDEN_KEY_PARTS = (
    "template",
    "embedding",
    "image",
    "photo",
    "picture",
    "face_crop",
    "faceprint",
    "biometric",
    "feature_vector",
    "ciphertext",
    "probe_vector",
    "document_number",
    "documentnumber",
    "passport_number",
    "passportnumber",
    "passport_no",
    "id_number",
    "mrz",
)
#: Longest list of numbers a payload may carry (a 128-d template is far longer).
MAX_NUMBER_LIST = 16
#: Longest base64-looking string (a 32-byte hash in base64 is 44 characters).
MAX_BLOB_CHARS = 96
_BASE64ISH = re.compile(r"[A-Za-z0-9+/=_-]+")
_SUBJECT_RE = re.compile(r"[a-z][a-z0-9_]{0,31}:[A-Za-z0-9._~-]{1,128}")
_ACTOR_RE = re.compile(r"[a-z][a-z0-9_]{0,31}:[A-Za-z0-9._@~-]{1,128}|system")


def _key_is_forbidden(key: str) -> bool:
    norm = key.lower().replace("-", "_")
    compact = norm.replace("_", "")
    return any(part in norm or part.replace("_", "") in compact for part in _FORBIDDEN_KEY_PARTS)


def _looks_like_blob(text: str) -> bool:
    if len(text) <= MAX_BLOB_CHARS or not _BASE64ISH.fullmatch(text):
        return False
    if re.fullmatch(r"[0-9a-f]+", text):  # long hex: hashes are 64, allow up to 128
        return len(text) > 128
    # Any long run of the base64 alphabets (padded or not, standard or URL-safe) counts:
    # an encoded template need not decode cleanly to be a leak.
    return True


def check_not_biometric(value: Any, path: str = "payload") -> None:
    """Raise :class:`BiometricPayloadError` if ``value`` looks like biometric data.

    Rejects: keys containing ``template``, ``embedding``, ``image``, ``face``,
    ``document_number`` (and similar); lists of more than 16 numbers; strings over
    96 characters that decode as base64 (hex up to 128 characters is allowed, for
    hashes); ``bytes`` of any kind; non-JSON types.
    """
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise BiometricPayloadError(path, "non-string key")
            if _key_is_forbidden(k):
                raise BiometricPayloadError(f"{path}.{k}", "field name suggests biometric data")
            check_not_biometric(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        numbers = sum(1 for v in value if isinstance(v, int | float) and not isinstance(v, bool))
        if numbers > MAX_NUMBER_LIST:
            raise BiometricPayloadError(path, f"list of {numbers} numbers looks like a template")
        for i, v in enumerate(value):
            check_not_biometric(v, f"{path}[{i}]")
    elif isinstance(value, str):
        if _looks_like_blob(value):
            raise BiometricPayloadError(path, f"{len(value)}-character encoded blob")
    elif isinstance(value, bytes | bytearray | memoryview):
        raise BiometricPayloadError(path, "raw bytes are not allowed")
    elif value is None or isinstance(value, bool | int | float):
        return
    else:
        raise BiometricPayloadError(path, f"unsupported type {type(value).__name__}")


# --- canonical JSON ------------------------------------------------------------------

_SAFE_INT = 2**53


def _plain(value: Any) -> bool:
    """True for JSON made of str keys, str, bool, None and ints within ±2**53 (no floats)."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_SAFE_INT < value < _SAFE_INT
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of ``value``.

    For values without floats (every leaf header, most payloads) RFC 8785 coincides
    with ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``:
    same escapes (lowercase ``\\u00xx`` for control characters, everything else
    literal UTF-8), keys sorted by code point (equal to UTF-16 order for the BMP keys we
    accept), integers printed exactly. That path is ~5× faster; anything else (floats,
    huge ints, non-BMP keys, lone surrogates) goes through the ``rfc8785`` package.
    Equivalence is property-tested against ``rfc8785``.
    """
    if _plain(value):
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            if all(ord(c) < 0x10000 for k in _keys(value) for c in k):
                return text.encode("utf-8")
        except UnicodeEncodeError:
            pass
    try:
        out: bytes = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, UnicodeError) as exc:
        raise EventError(f"not canonicalisable JSON: {type(exc).__name__}") from None
    return out


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _keys(v)


# --- events and headers --------------------------------------------------------------


@dataclass(frozen=True)
class AuditEvent:
    """Something to record. Validated on construction, so an event that exists is safe.

    ``actor`` is ``<kind>:<id>`` (``gate:shenzhen-bay-07``, ``officer:o-1234``) or
    ``system``; ``subjects`` are pseudonymous references ``<kind>:<opaque id>``
    (``watchlist:wl-8f3a``, ``traveller:hmac-…``), never names or document numbers;
    ``payload`` is a JSON object of pseudonymous details. ``policy_digest`` and
    ``decision_id`` identify the OPA bundle and decision when a policy decided.
    """

    type: EventType
    actor: str
    subjects: tuple[str, ...] = ()
    payload: Mapping[str, Any] = field(default_factory=dict)
    policy_digest: str | None = None
    decision_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", EventType(self.type))
        object.__setattr__(self, "subjects", tuple(self.subjects))
        if not _ACTOR_RE.fullmatch(self.actor):
            raise EventError("actor must be '<kind>:<id>' or 'system'")
        for s in self.subjects:
            if not isinstance(s, str) or not _SUBJECT_RE.fullmatch(s):
                raise EventError("subjects must be pseudonymous '<kind>:<opaque id>' references")
        if not isinstance(self.payload, Mapping):
            raise EventError("payload must be a JSON object")
        check_not_biometric(dict(self.payload))
        for name in ("policy_digest", "decision_id"):
            v = getattr(self, name)
            if v is not None and not re.fullmatch(r"[A-Za-z0-9:._-]{1,128}", v):
                raise EventError(f"{name} must be a short identifier")


def encode_payload(payload: Mapping[str, Any], nonce: bytes) -> bytes:
    """Canonical payload blob: RFC 8785 JSON of ``{"nonce": hex, "payload": …}``."""
    blob = canonical_json({"nonce": nonce.hex(), "payload": dict(payload)})
    if len(blob) > MAX_PAYLOAD_BYTES:
        raise EventError(f"payload is {len(blob)} bytes, limit {MAX_PAYLOAD_BYTES}")
    return blob


def format_time(t: datetime) -> str:
    """RFC 3339 UTC with microseconds: ``2025-11-27T02:22:00.123456Z``."""
    if t.tzinfo is None:
        raise EventError("event time must be timezone-aware")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeafHeader:
    """The leaf: everything about an entry except its (deletable) payload."""

    seq: int
    time: str
    type: str
    actor: str
    subjects: tuple[str, ...]
    payload_sha256: str
    policy_digest: str | None = None
    decision_id: str | None = None
    v: int = HEADER_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON object form; optional fields omitted when absent."""
        out: dict[str, Any] = {
            "v": self.v,
            "seq": self.seq,
            "time": self.time,
            "type": self.type,
            "actor": self.actor,
            "subjects": list(self.subjects),
            "payload_sha256": self.payload_sha256,
        }
        if self.policy_digest is not None:
            out["policy_digest"] = self.policy_digest
        if self.decision_id is not None:
            out["decision_id"] = self.decision_id
        return out

    def to_bytes(self) -> bytes:
        """The leaf bytes: RFC 8785 canonical JSON of :meth:`to_dict`."""
        data = canonical_json(self.to_dict())
        if len(data) > MAX_LEAF_BYTES:
            raise EventError(f"leaf header is {len(data)} bytes, limit {MAX_LEAF_BYTES}")
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> LeafHeader:
        """Parse a leaf; it must be canonical (re-encoding gives the same bytes)."""
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise MalformedError("malformed leaf: not JSON") from None
        if not isinstance(obj, dict) or obj.get("v") != HEADER_VERSION:
            raise MalformedError("malformed leaf: not a version 1 header")
        allowed = {
            "v",
            "seq",
            "time",
            "type",
            "actor",
            "subjects",
            "payload_sha256",
            "policy_digest",
            "decision_id",
        }
        if set(obj) - allowed:
            raise MalformedError("malformed leaf: unknown fields")
        try:
            header = cls(
                seq=_int(obj["seq"]),
                time=_str(obj["time"]),
                type=_str(obj["type"]),
                actor=_str(obj["actor"]),
                subjects=tuple(_str(s) for s in _list(obj["subjects"])),
                payload_sha256=_str(obj["payload_sha256"]),
                policy_digest=_opt_str(obj.get("policy_digest")),
                decision_id=_opt_str(obj.get("decision_id")),
            )
        except KeyError as exc:
            raise MalformedError(f"malformed leaf: missing {exc.args[0]}") from None
        if not re.fullmatch(r"[0-9a-f]{64}", header.payload_sha256):
            raise MalformedError("malformed leaf: payload_sha256 is not 64 hex digits")
        if header.to_bytes() != data:
            raise MalformedError("malformed leaf: not RFC 8785 canonical")
        return header


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise MalformedError("malformed leaf: expected a non-negative integer")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise MalformedError("malformed leaf: expected a string")
    return v


def _opt_str(v: Any) -> str | None:
    return None if v is None else _str(v)


def _list(v: Any) -> Sequence[Any]:
    if not isinstance(v, list):
        raise MalformedError("malformed leaf: expected a list")
    return v


def build_leaf(
    seq: int, when: datetime, event: AuditEvent, rng: Callable[[int], bytes]
) -> tuple[LeafHeader, bytes]:
    """The header and payload blob for ``event`` at position ``seq``."""
    blob = encode_payload(event.payload, rng(16))
    header = LeafHeader(
        seq=seq,
        time=format_time(when),
        type=event.type.value,
        actor=event.actor,
        subjects=event.subjects,
        payload_sha256=hashlib.sha256(blob).hexdigest(),
        policy_digest=event.policy_digest,
        decision_id=event.decision_id,
    )
    return header, blob

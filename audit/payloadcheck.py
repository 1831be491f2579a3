"""Verification step 7: payloads, and deletions only as the retention policy allowed.

Every payload present must hash to its entry's ``payload_sha256``. A payload may be
absent only if a later ``retention.delete`` entry lists it in ``deleted``, and that
deletion was allowed, as the log alone shows:

- the deletion records the retention period in force (``retention_days``); the entry's
  leaf time plus that period is not after the deletion entry's time;
- when the log recorded a policy load before the deletion, the deletion's
  ``policy_digest`` is the digest of the last policy loaded (the policy in force).

Each violation names the payload and the deletion entry, e.g. "payload of entry 12:
deleted by entry 40: 3.0 days old, retention period 183 days".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from audit.errors import (
    MalformedError,
    NotFoundError,
    PayloadError,
    RetentionViolationError,
    VerificationError,
)
from audit.events import EventType, LeafHeader
from audit.rfc9162 import ct_equal
from audit.sources import Source
from audit.tiles import decode_bundle, tiles_for_size

__all__ = ["Deletion", "check_payloads"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class _Problems(Protocol):
    def add(self, problem: VerificationError) -> None: ...


class _Counts(Protocol):
    payloads_present: int
    payloads_deleted: int


@dataclass(frozen=True)
class Deletion:
    """One ``retention.delete`` entry: where, when, the period and policy in force."""

    seq: int
    at: datetime
    retention_days: float | None
    policy_digest: str | None
    policy_in_force: str | None


def _leaf_time(header: LeafHeader) -> datetime:
    try:
        return datetime.strptime(header.time, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise MalformedError(f"entry {header.seq}: leaf time is not RFC 3339 UTC") from None


def _read_blobs(source: Source, n: int, problems: _Problems) -> list[bytes | None]:
    """Payload blob per position (``None`` when its bundle is unreadable)."""
    blobs: list[bytes | None] = [None] * n
    for bundle in tiles_for_size(n, "payloads"):
        try:
            items = decode_bundle(source.read(bundle.to_path()), 4)
        except (MalformedError, NotFoundError) as exc:
            problems.add(PayloadError(bundle.start, f"payload bundle unreadable: {exc}"))
            continue
        for j, blob in enumerate(items[: bundle.width]):
            blobs[bundle.start + j] = blob
    return blobs


def _period(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _deletions(
    headers: Sequence[LeafHeader | None], blobs: Sequence[bytes | None], problems: _Problems
) -> dict[int, Deletion]:
    """Deleted ``seq`` → the first retention entry after it that lists it."""
    deleted_by: dict[int, Deletion] = {}
    in_force: str | None = None
    for i, h in enumerate(headers):
        if h is not None and h.type == EventType.POLICY_LOAD.value and h.policy_digest:
            in_force = h.policy_digest
        if h is None or h.type != EventType.RETENTION_DELETE.value:
            continue
        blob = blobs[i]
        if not blob or hashlib.sha256(blob).hexdigest() != h.payload_sha256:
            continue  # reported by the payload check
        try:
            payload = json.loads(blob)["payload"]
            ranges = [(int(a), int(b)) for a, b in payload["deleted"]]
            deletion = Deletion(
                i, _leaf_time(h), _period(payload.get("retention_days")), h.policy_digest, in_force
            )
        except (ValueError, KeyError, TypeError, MalformedError):
            problems.add(PayloadError(i, "retention event payload is malformed"))
            continue
        for a, b in ranges:
            for s in range(a, min(b, i)):
                deleted_by.setdefault(s, deletion)
    return deleted_by


def _deletion_problem(header: LeafHeader, deletion: Deletion) -> str | None:
    """Why deleting ``header``'s payload was not allowed, or ``None`` if it was."""
    if deletion.retention_days is None:
        return "no retention period recorded for the deletion"
    if deletion.policy_in_force is not None and deletion.policy_digest != deletion.policy_in_force:
        return (
            f"deleted under policy {deletion.policy_digest}, but policy "
            f"{deletion.policy_in_force} was in force"
        )
    try:
        age = deletion.at - _leaf_time(header)
    except MalformedError as exc:
        return str(exc)
    if age < timedelta(days=deletion.retention_days):
        return (
            f"{header.type} payload deleted {age.total_seconds() / 86400:.1f} days after it "
            f"was recorded, before its retention period of {deletion.retention_days:g} days"
        )
    return None


def check_payloads(
    source: Source,
    n: int,
    headers: Sequence[LeafHeader | None],
    bad: set[int],
    counts: _Counts,
    problems: _Problems,
) -> None:
    """Step 7 over the first ``n`` entries (``bad``: entries already reported)."""
    blobs = _read_blobs(source, n, problems)
    deleted_by = _deletions(headers, blobs, problems)
    for i, h in enumerate(headers):
        if h is None or i in bad:
            continue
        present = blobs[i]
        if present:
            if not ct_equal(hashlib.sha256(present).digest(), bytes.fromhex(h.payload_sha256)):
                problems.add(PayloadError(i, "does not match the hash in its entry (changed)"))
            else:
                counts.payloads_present += 1
        elif i in deleted_by:
            why = _deletion_problem(h, deleted_by[i])
            if why is None:
                counts.payloads_deleted += 1
            else:
                problems.add(RetentionViolationError(i, deleted_by[i].seq, why))
        elif h.type == EventType.RETENTION_DELETE.value:
            problems.add(PayloadError(i, "retention event payloads must never be deleted"))
        else:
            problems.add(PayloadError(i, "missing without a retention deletion event"))

"""What the oversight pages show, computed with the ``audit`` package's own functions.

No FastAPI here: plain functions over an :class:`audit.log.AuditLog`.

- :func:`browse` pages through entries newest first, filtered by time, type and gate.
- :func:`latest_checkpoint` reads the newest signed checkpoint and checks its signature
  with the log key (:meth:`audit.checkpoint.SignedCheckpoint.verify`).
- :func:`prove` fetches an entry's RFC 9162 inclusion proof for that checkpoint and
  checks it with :func:`audit.rfc9162.verify_inclusion`, from a leaf hash recomputed
  from the leaf bytes (the stored hash is not trusted). The page's script repeats the
  same check in the browser with WebCrypto, so the server's word is not needed.
- :func:`checkpoint_history`, :func:`policy_timeline` and :func:`daily_counts` feed
  the checkpoint, policy and statistics pages.

Time bounds are compared on the leaf header's canonical UTC time string
(``YYYY-MM-DDTHH:MM:SS.ffffffZ``), which sorts like the time it names.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from audit.checkpoint import SignedCheckpoint
from audit.errors import AuditError
from audit.events import EventType, format_time
from audit.log import AuditLog, Entry
from audit.note import COSIGNATURE_V1, NoteVerifier
from audit.rfc9162 import hash_leaf, verify_inclusion

__all__ = [
    "COUNTED",
    "CheckpointRow",
    "CheckpointStatus",
    "EntryFilter",
    "Page",
    "ProofStatus",
    "browse",
    "checkpoint_history",
    "daily_counts",
    "latest_checkpoint",
    "policy_timeline",
    "prove",
]

#: Entries read per database query while scanning backwards.
CHUNK: Final = 2000
#: Series on the statistics page, each counted from one event type.
COUNTED: Final = (
    ("queries", EventType.MATCH_QUERY),
    ("hits", EventType.MATCH_DECISION),
    ("alerts", EventType.ALERT_RAISED),
    ("confirmations", EventType.ALERT_REVIEW),
    ("dismissals", EventType.ALERT_REVIEW),
    ("deletions", EventType.RETENTION_DELETE),
)


@dataclass(frozen=True)
class EntryFilter:
    """Audit browser filters; ``None`` means no bound. Times are timezone-aware."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    event_type: str | None = None
    gate: str | None = None

    def __post_init__(self) -> None:
        if self.event_type is not None:
            EventType(self.event_type)  # ValueError for an unknown type
        if self.since and self.until and self.since > self.until:
            raise ValueError("the start of the period is after its end")

    def matches(self, entry: Entry) -> bool:
        """Whether ``entry`` passes the time and gate filters (the type is filtered in SQL)."""
        header = entry.header
        if self.since is not None and header.time < format_time(self.since):
            return False
        if self.until is not None and header.time > format_time(self.until):
            return False
        if self.gate is not None:
            tag = f"gate:{self.gate}"
            in_payload = (
                isinstance(entry.payload, dict) and entry.payload.get("gate_id") == self.gate
            )
            if header.actor != tag and tag not in header.subjects and not in_payload:
                return False
        return True


@dataclass(frozen=True)
class Page:
    """One page of entries (newest first) and where the next, older page starts."""

    entries: list[Entry]
    tree_size: int
    older: int | None  # pass as ``before`` for the next page; None when nothing is older
    scanned: int  # entries examined (bounded by ``scan_limit``)
    exhausted: bool  # True when the scan stopped at its limit before filling the page


def _backwards(
    log: AuditLog, end: int, types: Sequence[str] | None, stop_before: str | None
) -> Iterator[Entry]:
    """Entries with ``seq < end``, newest first, until one is older than ``stop_before``."""
    while end > 0:
        start = max(0, end - CHUNK)
        chunk = log.entries(start, end, types=types, limit=CHUNK)
        for entry in reversed(chunk):
            if stop_before is not None and entry.header.time < stop_before:
                return
            yield entry
        end = start


def browse(
    log: AuditLog,
    flt: EntryFilter,
    *,
    before: int | None = None,
    limit: int = 50,
    scan_limit: int = 50_000,
) -> Page:
    """Up to ``limit`` entries with ``seq < before`` passing ``flt``, newest first.

    The scan stops at the first entry older than ``flt.since`` (entries are appended
    in time order) or after ``scan_limit`` entries.
    """
    size = log.tree_size()
    end = size if before is None else max(0, min(before, size))
    types = [flt.event_type] if flt.event_type else None
    stop = format_time(flt.since) if flt.since else None
    found: list[Entry] = []
    scanned = 0
    last_seq: int | None = None
    for entry in _backwards(log, end, types, stop):
        scanned += 1
        last_seq = entry.seq
        if flt.matches(entry):
            found.append(entry)
            if len(found) >= limit:
                break
        if scanned >= scan_limit:
            return Page(found, size, entry.seq, scanned, True)
    more = len(found) >= limit and last_seq is not None and last_seq > 0
    return Page(found, size, last_seq if more else None, scanned, False)


@dataclass(frozen=True)
class CheckpointStatus:
    """The newest checkpoint and whether its log signature verified (``problem`` if not)."""

    signed: SignedCheckpoint | None
    verified: bool
    problem: str | None

    @property
    def size(self) -> int:
        """Tree size it commits to (0 without a checkpoint)."""
        return self.signed.checkpoint.size if self.signed else 0


def latest_checkpoint(log: AuditLog, log_key: NoteVerifier) -> CheckpointStatus:
    """The newest checkpoint, its signature checked with ``log_key``; never raises."""
    try:
        signed = log.latest_checkpoint()
    except AuditError as exc:
        return CheckpointStatus(None, False, str(exc))
    try:
        signed.verify(log_key, log.origin)
    except AuditError as exc:
        return CheckpointStatus(signed, False, str(exc))
    return CheckpointStatus(signed, True, None)


@dataclass(frozen=True)
class ProofStatus:
    """An entry's inclusion proof against a checkpoint and the server's verdict.

    ``state`` is ``verified``, ``pending`` (the entry is newer than the checkpoint) or
    ``failed`` (``problem`` says why). ``hashes`` are hex, in RFC 9162 PATH order.
    """

    seq: int
    size: int
    state: str
    leaf_b64: str
    hashes: list[str] = field(default_factory=list)
    problem: str | None = None


def prove(log: AuditLog, entry: Entry, checkpoint: CheckpointStatus) -> ProofStatus:
    """Check that ``entry`` is in the tree ``checkpoint`` commits to; never raises."""
    leaf_b64 = base64.b64encode(entry.leaf).decode()
    size = checkpoint.size
    if checkpoint.signed is None or entry.seq >= size:
        return ProofStatus(entry.seq, size, "pending", leaf_b64)
    try:
        proof = log.inclusion_proof(entry.seq, size)
        hashes = [h.hex() for h in proof.hashes]
        verify_inclusion(
            entry.seq, size, hash_leaf(entry.leaf), proof.hashes, checkpoint.signed.checkpoint.root
        )
    except AuditError as exc:
        return ProofStatus(entry.seq, size, "failed", leaf_b64, [], str(exc))
    if not checkpoint.verified:
        problem = f"checkpoint signature: {checkpoint.problem}"
        return ProofStatus(entry.seq, size, "failed", leaf_b64, hashes, problem)
    return ProofStatus(entry.seq, size, "verified", leaf_b64, hashes)


@dataclass(frozen=True)
class CheckpointRow:
    """One checkpoint with its signatures: (name, key id hex, kind, time, verified)."""

    size: int
    root_b64: str
    note: str
    signatures: list[dict[str, Any]]


def checkpoint_history(
    log: AuditLog, log_key: NoteVerifier, witnesses: Sequence[NoteVerifier], limit: int = 50
) -> tuple[list[CheckpointRow], int]:
    """The newest ``limit`` checkpoints (newest first) and how many exist.

    Each signature is checked with the matching key (the log key, or a witness key
    when one is configured); ``verified`` is ``True``, ``False`` or ``None`` (no key).
    """
    sizes = log.checkpoint_sizes()
    rows: list[CheckpointRow] = []
    keys = [log_key, *witnesses]
    for size in reversed(sizes[-limit:]):
        signed = log.checkpoint_at(size)
        sigs: list[dict[str, Any]] = []
        for sig in signed.note.signatures:
            key = next((k for k in keys if k.matches(sig)), None)
            kind = "cosignature" if len(sig.body) == 72 else "log signature"
            stamp: int | None = int.from_bytes(sig.body[:8], "big") if len(sig.body) == 72 else None
            verified: bool | None = None
            if key is not None:
                try:
                    stamp = key.verify(signed.note.text, sig)
                    verified = True
                    kind = "cosignature" if key.sig_type == COSIGNATURE_V1 else "log signature"
                except AuditError:
                    verified = False
            sigs.append(
                {
                    "name": sig.name,
                    "key_id": sig.key_id.hex(),
                    "kind": kind,
                    "time": (
                        dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat()
                        if stamp is not None
                        else None
                    ),
                    "verified": verified,
                }
            )
        rows.append(
            CheckpointRow(
                size,
                base64.b64encode(signed.checkpoint.root).decode(),
                signed.to_bytes().decode(),
                sigs,
            )
        )
    return rows, len(sizes)


def policy_timeline(log: AuditLog, limit: int = 200) -> list[dict[str, Any]]:
    """Policy versions in force, newest first: from each ``policy.load`` to the next."""
    loads = list(_backwards(log, log.tree_size(), [EventType.POLICY_LOAD.value], None))[:limit]
    out: list[dict[str, Any]] = []
    until: str | None = None
    for entry in loads:
        payload = entry.payload or {}
        out.append(
            {
                "seq": entry.seq,
                "digest": entry.header.policy_digest,
                "from": entry.header.time,
                "until": until,
                "previous": payload.get("previous_digest"),
                "engine": payload.get("engine"),
                "actor": entry.header.actor,
            }
        )
        until = entry.header.time
    return out


def _amount(entry: Entry, name: str) -> int:
    """How much one entry adds to series ``name``."""
    payload = entry.payload if isinstance(entry.payload, dict) else {}
    if name == "hits":
        return sum(1 for s in entry.header.subjects if s.startswith("watchlist:"))
    if name in ("confirmations", "dismissals"):
        wanted = "confirm" if name == "confirmations" else "dismiss"
        return int(payload.get("verdict") == wanted)
    if name == "deletions":
        ranges = payload.get("deleted")
        if isinstance(ranges, list):
            return sum(
                int(r[1]) - int(r[0])
                for r in ranges
                if isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r)
            )
        return 1
    return 1


def daily_counts(
    log: AuditLog, days: int, now: dt.datetime, scan_limit: int = 500_000
) -> tuple[list[str], dict[str, list[int]], bool]:
    """Per-day (UTC) counts of each :data:`COUNTED` series over the last ``days`` days.

    Returns the day labels (oldest first), one list of counts per series, and whether
    the scan hit ``scan_limit`` before reaching the start of the period (then the
    oldest days are incomplete). Hits count matched watchlist entries named in the
    decision leaves; review verdicts come from payloads (a deleted payload counts in
    neither series).
    """
    first = (now - dt.timedelta(days=days - 1)).date()
    labels = [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]
    index = {day: i for i, day in enumerate(labels)}
    series: dict[str, list[int]] = {name: [0] * days for name, _ in COUNTED}
    by_type: dict[str, list[str]] = {}
    for name, event_type in COUNTED:
        by_type.setdefault(event_type.value, []).append(name)
    since = format_time(dt.datetime.combine(first, dt.time(0), dt.UTC))
    entries = _backwards(log, log.tree_size(), sorted(by_type), since)
    for scanned, entry in enumerate(entries, 1):
        slot = index.get(entry.header.time[:10])
        if slot is not None:
            for name in by_type[entry.header.type]:
                series[name][slot] += _amount(entry, name)
        if scanned >= scan_limit:
            return labels, series, True
    return labels, series, False

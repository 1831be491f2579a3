"""Retention enforcement: ask the retention policy what has expired, remove it in batches.

The service implements :class:`RecordStore` for each of its tables (or uses
:class:`policy.retention_sql.SqlTableStore`). A sweep:

1. reads the periods (``veilmatch.retention.periods``) from the active bundle;
2. for each store and each state with a period, pages through records that entered the
   state before ``now - period`` (ordered by id, ``batch_size`` at a time);
3. asks ``veilmatch.retention.decision`` about each record (kind, state, age in days);
4. hands the records the policy says to delete or redact to the store as one batch per
   action, and the store calls ``on_batch(batch, txn)`` inside the same transaction so
   the audit event commits with the deletion (or neither does).

Nothing is removed without a policy decision: a store whose kind has no period is
reported, not swept. Time is injected (``now``) so tests control the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from policy.engine import RETENTION, RETENTION_PERIODS, PolicyEngine
from policy.errors import RetentionError

__all__ = [
    "Candidate",
    "OnBatch",
    "RecordStore",
    "RetentionBatch",
    "SweepReport",
    "sweep",
]

Action = Literal["delete", "redact"]


@dataclass(frozen=True)
class Candidate:
    """A record that may have expired: its id, state, and when it entered that state (UTC)."""

    record_id: str
    state: str
    state_since: datetime


@dataclass(frozen=True)
class RetentionBatch:
    """Records of one kind removed together, with the decisions that justified it.

    ``decisions`` pairs each record id with the policy decision id; all were taken
    under ``bundle_digest``. This is what goes to the audit log (ids only).
    """

    kind: str
    state: str
    action: Action
    record_ids: tuple[str, ...]
    decisions: tuple[tuple[str, str], ...]
    bundle_digest: str
    retention_days: float
    swept_at: datetime

    def to_audit(self) -> dict[str, Any]:
        """Audit payload for the batch (record and decision ids, no record contents)."""
        return {
            "event": f"retention.{self.action}",
            "kind": self.kind,
            "state": self.state,
            "count": len(self.record_ids),
            "records": [{"id": rid, "decision_id": did} for rid, did in self.decisions],
            "bundle_digest": self.bundle_digest,
            "retention_days": self.retention_days,
            "swept_at": self.swept_at.isoformat(),
        }


#: Called once per applied batch with the store's transaction handle (for SQL stores
#: the ``sqlalchemy.Connection``), before that transaction commits.
OnBatch = Callable[[RetentionBatch, Any], None]


class RecordStore(Protocol):
    """One kind of record the service keeps (a table, a directory …)."""

    @property
    def kind(self) -> str:
        """The record kind as the retention policy names it (e.g. ``crossing_record``)."""
        ...

    def candidates(
        self, state: str, entered_before: datetime, after: str | None, limit: int
    ) -> Sequence[Candidate]:
        """Up to ``limit`` records in ``state`` that entered it before ``entered_before``.

        Ordered by ``record_id``; only ids greater than ``after`` (when given).
        """
        ...

    def apply(self, batch: RetentionBatch, on_batch: OnBatch) -> int:
        """Delete or redact ``batch.record_ids`` and call ``on_batch`` in one transaction.

        Returns how many records changed. If ``on_batch`` raises, nothing changes.
        """
        ...


@dataclass
class SweepReport:
    """What a sweep did (or, with ``dry_run``, would do)."""

    batches: list[RetentionBatch] = field(default_factory=list)
    unknown_kinds: list[str] = field(default_factory=list)
    kept: int = 0
    dry_run: bool = False

    def count(self, kind: str | None = None, action: str | None = None) -> int:
        """Records removed, optionally for one kind and/or action."""
        return sum(
            len(b.record_ids)
            for b in self.batches
            if (kind is None or b.kind == kind) and (action is None or b.action == action)
        )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sweep(
    engine: PolicyEngine,
    stores: Sequence[RecordStore],
    *,
    now: datetime,
    on_batch: OnBatch,
    batch_size: int = 500,
    dry_run: bool = False,
) -> SweepReport:
    """Remove every expired record from ``stores`` as the retention policy decides.

    ``now`` must be timezone-aware. Raises ``RetentionError`` on malformed periods or
    store answers, and policy errors (``UndefinedDecisionError`` …) unchanged; batches
    applied before an error stay applied and audited.
    """
    if now.tzinfo is None:
        raise RetentionError("now must be timezone-aware")
    if batch_size < 1:
        raise RetentionError("batch_size must be at least 1")
    now = now.astimezone(UTC)
    periods = engine.evaluate(RETENTION_PERIODS, {}).result
    if not isinstance(periods, dict):
        raise RetentionError("retention periods are not an object")
    report = SweepReport(dry_run=dry_run)
    for store in stores:
        states = periods.get(store.kind)
        if not isinstance(states, dict):
            report.unknown_kinds.append(store.kind)
            continue
        for state in sorted(states):
            days = states[state].get("days") if isinstance(states[state], dict) else None
            if not isinstance(days, int | float) or isinstance(days, bool) or days < 0:
                raise RetentionError(f"period for {store.kind}/{state} is malformed")
            _sweep_state(engine, store, state, days, now, on_batch, batch_size, report)
    return report


def _sweep_state(
    engine: PolicyEngine,
    store: RecordStore,
    state: str,
    days: float,
    now: datetime,
    on_batch: OnBatch,
    batch_size: int,
    report: SweepReport,
) -> None:
    cutoff = now - timedelta(days=days)
    after: str | None = None
    while True:
        page = list(store.candidates(state, cutoff, after, batch_size))
        if not page:
            return
        if len(page) > batch_size or any(c.state != state for c in page):
            raise RetentionError(f"store {store.kind} returned records outside the request")
        groups: dict[str, list[tuple[str, str]]] = {"delete": [], "redact": []}
        digest = ""
        for candidate in page:
            age_days = (now - _utc(candidate.state_since)).total_seconds() / 86400
            decision = engine.evaluate(
                RETENTION, {"kind": store.kind, "state": state, "age_days": max(age_days, 0.0)}
            )
            digest = decision.bundle_digest
            action = decision.result.get("action") if isinstance(decision.result, dict) else None
            if action in groups:
                groups[action].append((candidate.record_id, decision.decision_id))
            else:
                report.kept += 1
        for action in ("delete", "redact"):
            chosen = groups[action]
            if not chosen:
                continue
            batch = RetentionBatch(
                kind=store.kind,
                state=state,
                action=action,  # type: ignore[arg-type]
                record_ids=tuple(rid for rid, _ in chosen),
                decisions=tuple(chosen),
                bundle_digest=digest,
                retention_days=days,
                swept_at=now,
            )
            if not report.dry_run:
                store.apply(batch, on_batch)
            report.batches.append(batch)
        after = page[-1].record_id
        if len(page) < batch_size:
            return

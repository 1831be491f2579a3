"""Retention for the service's own records, enforced by ``policy.retention.sweep``.

Stores, swept in this order:

- crossing records (state ``recorded`` since ``at``);
- kept probe ciphertexts (state from their alert: ``alert_open``, ``alert_confirmed``,
  ``alert_dismissed``; ``unused`` when no alert holds them any more: no alert, a
  deleted alert, or a redacted one);
- alerts. Closed ones: service status ``dismissed`` → policy state ``dismissed``,
  ``actionable`` → ``confirmed``, each since ``closed_at``. Open ones that nobody has
  reviewed (no row in ``svc_alert_reviews``) → policy state ``open`` ("never
  reviewed"), since ``created_at``. Deleting an alert deletes its reviews; redacting it
  deletes its reviews, blanks the links to the traveller's query and the watchlist
  entries and moves it to status ``redacted`` (no period, never swept again). An open
  alert with one review (waiting for a second officer) is in no policy state and is
  not swept: the policy's ``alert/open`` period is for alerts never reviewed, and the
  policy has no period for partly reviewed ones. The state is checked again in the
  statement that deletes, so an alert reviewed after the sweep listed it stays;
- kept probe ciphertexts again, state ``unused`` only: the probes of alerts the alert
  pass just deleted or redacted;
- audit payloads (state ``recorded`` since the entry's leaf time), removed with
  ``AuditLog.delete_payloads_in``, which writes the ``retention.delete`` event carrying
  the ``deleted`` ranges itself; payloads of retention events are never candidates.

Probes are swept before alerts so that, with the policy's probe periods no longer than
the alert periods, a probe is deleted no later than the alert that explains it (a probe
and its alert are stored with the same time, so a never-reviewed alert and its probe go
in the same sweep). The second, ``unused``-only probe pass removes, in the same sweep,
any probe whose alert went first (for instance if the periods are ever changed so that
they no longer line up), so no probe is left pointing at a deleted alert. Each removed
batch and its ``retention.delete`` audit event commit in one transaction.

The server sweeps with :func:`run_sweep`; ``veilmatch retention sweep`` (the
application layer, ``veilmatch.retention_cli.record_stores``) builds a context and
uses the same :func:`stores` and :func:`batch_recorder`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from audit import schema
from audit.events import EventType, LeafHeader
from policy.retention import Candidate, sweep
from policy.retention_sql import SqlTableStore
from service.audit_retention import delete_expired_payloads_in
from service.context import ServiceContext
from service.ports import ServiceEvent
from service.tables import alert_reviews, alerts, crossings, probe_records, utc

__all__ = [
    "NEVER_REVIEWED",
    "REDACTED_ALERT",
    "AlertStore",
    "AuditPayloadStore",
    "OnBatch",
    "ProbeStore",
    "batch_recorder",
    "run_sweep",
    "stores",
]

#: ``on_batch(batch, conn)``: appends a removed batch's audit event in its transaction.
OnBatch = Callable[[Any, Connection], None]

_PROBE_STATES = {
    "open": "alert_open",
    "actionable": "alert_confirmed",
    "dismissed": "alert_dismissed",
}

#: Service alert status → the retention policy's ``alert`` state, for closed alerts.
_ALERT_STATES = {"actionable": "confirmed", "dismissed": "dismissed"}
#: The policy's ``alert`` state for an open alert nobody has reviewed yet.
NEVER_REVIEWED = "open"
#: Status of a redacted alert: no retention period, so it is never swept again.
REDACTED_ALERT = "redacted"


class ProbeStore:
    """Kept probe ciphertexts, whose state follows the alert that needed them.

    With ``states``, only those policy states are swept (the store answers no
    candidates for the others).
    """

    kind = "probe_ciphertext"

    def __init__(self, ctx: ServiceContext, states: frozenset[str] | None = None) -> None:
        self.ctx = ctx
        self.states = states

    def candidates(
        self, state: str, entered_before: dt.datetime, after: str | None, limit: int
    ) -> Sequence[Any]:
        """Probe records in ``state`` since before ``entered_before``, by id."""
        if self.states is not None and state not in self.states:
            return []
        since = sa.func.coalesce(alerts.c.closed_at, probe_records.c.created_at)
        query = sa.select(probe_records.c.id, since.label("since"), alerts.c.status).select_from(
            probe_records.outerjoin(alerts, alerts.c.id == probe_records.c.alert_id)
        )
        if state == "unused":
            # No alert needs the probe: none raised, or it is gone or redacted.
            query = query.where(
                sa.or_(
                    probe_records.c.alert_id.is_(None),
                    alerts.c.id.is_(None),
                    alerts.c.status == REDACTED_ALERT,
                )
            )
        else:
            wanted = [k for k, v in _PROBE_STATES.items() if v == state]
            if not wanted:
                return []
            query = query.where(alerts.c.status.in_(wanted))
        cutoff = (
            entered_before
            if self.ctx.engine.dialect.name != "sqlite"
            else (entered_before.astimezone(dt.UTC).replace(tzinfo=None))
        )
        query = query.where(since < cutoff)
        if after is not None:
            query = query.where(probe_records.c.id > after)
        with self.ctx.engine.connect() as conn:
            rows = conn.execute(query.order_by(probe_records.c.id).limit(limit)).all()
        return [Candidate(str(r.id), state, utc(r.since)) for r in rows]

    def apply(self, batch: Any, on_batch: Any) -> int:
        """Delete the batch's probe records and audit it, in one transaction."""
        with self.ctx.transaction() as conn:
            result = conn.execute(
                probe_records.delete().where(probe_records.c.id.in_(list(batch.record_ids)))
            )
            on_batch(batch, conn)
        return int(result.rowcount or 0)


def _cutoff(ctx: ServiceContext, moment: dt.datetime) -> dt.datetime:
    """``moment`` as the backend compares it (SQLite keeps naive UTC)."""
    moment = moment.astimezone(dt.UTC)
    return moment.replace(tzinfo=None) if ctx.engine.dialect.name == "sqlite" else moment


def _alerts_in(state: str) -> tuple[sa.ColumnElement[bool], sa.Column[Any]] | None:
    """Where clause for the alerts in the policy's ``alert`` ``state``, and the column
    holding when they entered it; ``None`` when no alert of the service is in it."""
    if state == NEVER_REVIEWED:
        unreviewed = ~sa.exists().where(alert_reviews.c.alert_id == alerts.c.id)
        return sa.and_(alerts.c.status == "open", unreviewed), alerts.c.created_at
    wanted = [status for status, mapped in _ALERT_STATES.items() if mapped == state]
    if not wanted:
        return None
    closed = sa.and_(alerts.c.status.in_(wanted), alerts.c.closed_at.is_not(None))
    return closed, alerts.c.closed_at


class AlertStore:
    """Closed alerts since they were closed (``closed_at``), and open alerts nobody
    reviewed since they were raised (``created_at``)."""

    kind = "alert"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def candidates(
        self, state: str, entered_before: dt.datetime, after: str | None, limit: int
    ) -> Sequence[Any]:
        """Alerts in ``state`` that entered it before ``entered_before``, by id."""
        selected = _alerts_in(state)
        if selected is None:
            return []
        in_state, since = selected
        query = sa.select(alerts.c.id, since.label("since")).where(
            in_state, since < _cutoff(self.ctx, entered_before)
        )
        if after is not None:
            query = query.where(alerts.c.id > after)
        with self.ctx.engine.connect() as conn:
            rows = conn.execute(query.order_by(alerts.c.id).limit(limit)).all()
        return [Candidate(str(r.id), state, utc(r.since)) for r in rows]

    def apply(self, batch: Any, on_batch: Any) -> int:
        """Delete or redact the batch's alerts (reviews deleted either way) and audit it,
        in one transaction. Only alerts still in the batch's state change: the state is
        checked again by the statement that deletes or redacts them."""
        selected = _alerts_in(batch.state)
        if selected is None:
            return 0
        in_state, _ = selected
        ids = list(batch.record_ids)
        with self.ctx.transaction() as conn:
            ids = list(
                conn.execute(sa.select(alerts.c.id).where(alerts.c.id.in_(ids), in_state)).scalars()
            )
            if batch.state != NEVER_REVIEWED:
                # A closed alert takes no more reviews. A never-reviewed one has none to
                # delete, and a review that lands meanwhile must keep its alert.
                conn.execute(alert_reviews.delete().where(alert_reviews.c.alert_id.in_(ids)))
            chosen = sa.and_(alerts.c.id.in_(ids), in_state)
            if batch.action == "delete":
                result = conn.execute(alerts.delete().where(chosen))
            else:
                result = conn.execute(
                    alerts.update()
                    .where(chosen)
                    .values(status=REDACTED_ALERT, query_id="", entry_ids="[]")
                )
            on_batch(batch, conn)
        return int(result.rowcount or 0)


_SEQ_DIGITS = 20  # record ids are zero-padded seqs, so string order is seq order
_SCAN_CHUNK = 1000


class AuditPayloadStore:
    """Audit payloads still present, since their entry's time (state ``recorded``).

    ``apply`` deletes them through the audit log, whose own ``retention.delete`` event
    (with the ``deleted`` ranges the verifier checks) is the batch's audit record; the
    sweep's ``on_batch`` is therefore not called, so the deletion is logged once.
    Candidates are found by reading leaf times (the log has no time column): a sweep
    reads every present payload's leaf once.
    """

    kind = "audit_payload"

    def __init__(self, ctx: ServiceContext, log: Any) -> None:
        self.ctx = ctx
        self.log = log

    def candidates(
        self, state: str, entered_before: dt.datetime, after: str | None, limit: int
    ) -> Sequence[Any]:
        """Present payloads older than ``entered_before``, retention events excluded, by seq."""
        if state != "recorded":
            return []
        cursor = int(after) if after is not None else -1
        found: list[Any] = []
        with self.ctx.engine.connect() as conn:
            while len(found) < limit:
                rows = conn.execute(
                    sa.select(schema.entries.c.seq, schema.entries.c.leaf)
                    .select_from(
                        schema.entries.join(
                            schema.payloads, schema.payloads.c.seq == schema.entries.c.seq
                        )
                    )
                    .where(
                        schema.entries.c.seq > cursor,
                        schema.entries.c.event_type != EventType.RETENTION_DELETE.value,
                    )
                    .order_by(schema.entries.c.seq)
                    .limit(_SCAN_CHUNK)
                ).all()
                for row in rows:
                    header = LeafHeader.from_bytes(bytes(row.leaf))
                    at = dt.datetime.strptime(header.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                        tzinfo=dt.UTC
                    )
                    if at < entered_before:
                        found.append(Candidate(f"{int(row.seq):0{_SEQ_DIGITS}d}", state, at))
                        if len(found) == limit:
                            break
                if len(rows) < _SCAN_CHUNK:
                    break
                cursor = int(rows[-1].seq)
        return found

    def apply(self, batch: Any, on_batch: Any) -> int:
        """Delete the batch's payloads; the audit log logs the deletion in the same
        transaction (``on_batch`` is deliberately not called: see the class doc).

        On PostgreSQL the deletion goes through the database's retention function
        (:mod:`service.audit_retention`), which the application role may call although
        it may not delete payloads itself.
        """
        del on_batch
        seqs = [int(rid) for rid in batch.record_ids]
        reason = (
            f"retention: {batch.kind}/{batch.state} {batch.action} after "
            f"{batch.retention_days} days"
        )
        decision_id = batch.decisions[0][1] if batch.decisions else None
        with self.ctx.transaction() as conn:
            if self.ctx.engine.dialect.name == "postgresql":
                receipts = delete_expired_payloads_in(
                    conn,
                    self.log,
                    seqs,
                    retention_days=math.ceil(batch.retention_days),  # never shorter
                    actor="system",
                    reason=reason,
                    policy_digest=batch.bundle_digest,
                    decision_id=decision_id,
                )
            else:
                receipts = self.log.delete_payloads_in(
                    conn,
                    seqs,
                    actor="system",
                    reason=reason,
                    retention_days=batch.retention_days,
                    policy_digest=batch.bundle_digest,
                    decision_id=decision_id,
                    now=batch.swept_at,
                )
        return len(seqs) if receipts else 0


def stores(ctx: ServiceContext) -> list[Any]:
    """The service's record stores for the sweep (probes before and after alerts: see
    the module doc)."""
    log = getattr(ctx.audit, "log", None)
    audit_stores: list[Any] = [AuditPayloadStore(ctx, log)] if log is not None else []
    return [
        SqlTableStore(
            ctx.engine,
            crossings,
            kind="crossing_record",
            since_column="at",
            state_column=None,
            fixed_state="recorded",
        ),
        ProbeStore(ctx),
        AlertStore(ctx),
        ProbeStore(ctx, states=frozenset({"unused"})),  # probes of alerts just removed
        *audit_stores,
    ]


def batch_recorder(ctx: ServiceContext) -> OnBatch:
    """The sweep's ``on_batch`` for ``ctx``: appends the batch's ``retention.delete``
    audit event inside the store's transaction (ids and counts, no record contents)."""

    def on_batch(batch: Any, conn: Connection) -> None:
        ctx.record(
            conn,
            ServiceEvent(
                "retention.delete",
                "system",
                (),
                {
                    # audit.verify reads ``deleted`` as the audit-payload ranges this
                    # event removed; a sweep of service records removes none.
                    "deleted": [],
                    "kind": batch.kind,
                    "state": batch.state,
                    "action": batch.action,
                    "count": len(batch.record_ids),
                    "first_decision_id": batch.decisions[0][1] if batch.decisions else None,
                    "retention_days": batch.retention_days,
                },
                bundle_digest=batch.bundle_digest,
            ),
        )

    return on_batch


def run_sweep(ctx: ServiceContext, *, now: dt.datetime | None = None) -> int:
    """One retention sweep over the service's stores; returns records removed."""
    engine = ctx.policy.engine  # type: ignore[attr-defined]
    report = sweep(
        engine, stores(ctx), now=now or ctx.now(), on_batch=batch_recorder(ctx), batch_size=200
    )
    return int(report.count())

"""Retention for the service's own records, enforced by ``policy.retention.sweep``.

Stores, swept in this order:

- crossing records (state ``recorded`` since ``at``);
- kept probe ciphertexts (state from their alert: ``alert_open``, ``alert_confirmed``,
  ``alert_dismissed``; ``unused`` when no alert holds them any more: no alert, a
  deleted alert, or a redacted one);
- closed alerts (service status ``dismissed`` → policy state ``dismissed``,
  ``actionable`` → ``confirmed``, each since ``closed_at``). Deleting an alert deletes
  its reviews; redacting it deletes its reviews, blanks the links to the traveller's
  query and the watchlist entries and moves it to status ``redacted`` (no period, never
  swept again). Open alerts are not swept here: the policy's ``alert/open`` means
  "never reviewed", which the service's ``open`` status does not tell apart from
  "partly reviewed";
- audit payloads (state ``recorded`` since the entry's leaf time), removed with
  ``AuditLog.delete_payloads_in``, which writes the ``retention.delete`` event carrying
  the ``deleted`` ranges itself; payloads of retention events are never candidates.

Probes are swept before alerts so that, with the policy's probe periods no longer than
the alert periods, a probe never outlives the alert that explains it. Each removed
batch and its ``retention.delete`` audit event commit in one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from service.context import ServiceContext
from service.ports import ServiceEvent
from service.tables import alert_reviews, alerts, crossings, probe_records, utc

__all__ = [
    "REDACTED_ALERT",
    "AlertStore",
    "AuditPayloadStore",
    "ProbeStore",
    "run_sweep",
    "stores",
]

_PROBE_STATES = {
    "open": "alert_open",
    "actionable": "alert_confirmed",
    "dismissed": "alert_dismissed",
}

#: Service alert status → the retention policy's ``alert`` state (closed alerts only).
_ALERT_STATES = {"actionable": "confirmed", "dismissed": "dismissed"}
#: Status of a redacted alert: no retention period, so it is never swept again.
REDACTED_ALERT = "redacted"


class ProbeStore:
    """Kept probe ciphertexts, whose state follows the alert that needed them."""

    kind = "probe_ciphertext"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def candidates(
        self, state: str, entered_before: dt.datetime, after: str | None, limit: int
    ) -> Sequence[Any]:
        """Probe records in ``state`` since before ``entered_before``, by id."""
        from policy.retention import Candidate

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


class AlertStore:
    """Closed alerts, since they were closed (``closed_at``)."""

    kind = "alert"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def candidates(
        self, state: str, entered_before: dt.datetime, after: str | None, limit: int
    ) -> Sequence[Any]:
        """Alerts whose status maps to ``state``, closed before ``entered_before``, by id."""
        from policy.retention import Candidate

        wanted = [status for status, mapped in _ALERT_STATES.items() if mapped == state]
        if not wanted:
            return []
        query = sa.select(alerts.c.id, alerts.c.closed_at).where(
            alerts.c.status.in_(wanted),
            alerts.c.closed_at.is_not(None),
            alerts.c.closed_at < _cutoff(self.ctx, entered_before),
        )
        if after is not None:
            query = query.where(alerts.c.id > after)
        with self.ctx.engine.connect() as conn:
            rows = conn.execute(query.order_by(alerts.c.id).limit(limit)).all()
        return [Candidate(str(r.id), state, utc(r.closed_at)) for r in rows]

    def apply(self, batch: Any, on_batch: Any) -> int:
        """Delete or redact the batch's alerts (reviews deleted either way) and audit it,
        in one transaction. Only alerts still in the batch's state change."""
        ids = list(batch.record_ids)
        statuses = [k for k, v in _ALERT_STATES.items() if v == batch.state]
        with self.ctx.transaction() as conn:
            ids = list(
                conn.execute(
                    sa.select(alerts.c.id).where(
                        alerts.c.id.in_(ids), alerts.c.status.in_(statuses)
                    )
                ).scalars()
            )
            conn.execute(alert_reviews.delete().where(alert_reviews.c.alert_id.in_(ids)))
            if batch.action == "delete":
                result = conn.execute(alerts.delete().where(alerts.c.id.in_(ids)))
            else:
                result = conn.execute(
                    alerts.update()
                    .where(alerts.c.id.in_(ids))
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
        from audit import schema
        from audit.events import EventType, LeafHeader
        from policy.retention import Candidate

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
        transaction (``on_batch`` is deliberately not called: see the class doc)."""
        del on_batch
        seqs = [int(rid) for rid in batch.record_ids]
        with self.ctx.transaction() as conn:
            receipts = self.log.delete_payloads_in(
                conn,
                seqs,
                actor="system",
                reason=(
                    f"retention: {batch.kind}/{batch.state} {batch.action} after "
                    f"{batch.retention_days} days"
                ),
                policy_digest=batch.bundle_digest,
                decision_id=batch.decisions[0][1] if batch.decisions else None,
            )
        return len(seqs) if receipts else 0


def stores(ctx: ServiceContext) -> list[Any]:
    """The service's record stores for the sweep (probes before alerts: see the module doc)."""
    from policy.retention_sql import SqlTableStore

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
        *audit_stores,
    ]


def run_sweep(ctx: ServiceContext, *, now: dt.datetime | None = None) -> int:
    """One retention sweep over the service's stores; returns records removed."""
    from policy.retention import sweep

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

    engine = ctx.policy.engine  # type: ignore[attr-defined]
    report = sweep(engine, stores(ctx), now=now or ctx.now(), on_batch=on_batch, batch_size=200)
    return int(report.count())

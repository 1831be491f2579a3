"""Retention for the service's own records, enforced by ``policy.retention.sweep``.

Stores: crossing records (state ``recorded`` since ``at``) and kept probe ciphertexts
(state from their alert: ``alert_open``, ``alert_confirmed``, ``alert_dismissed``;
``unused`` when no alert holds them). Each deleted batch and its ``retention.delete``
audit event commit in one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from service.context import ServiceContext
from service.ports import ServiceEvent
from service.tables import alerts, crossings, probe_records, utc

__all__ = ["ProbeStore", "run_sweep", "stores"]

_PROBE_STATES = {
    "open": "alert_open",
    "actionable": "alert_confirmed",
    "dismissed": "alert_dismissed",
}


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
            query = query.where(probe_records.c.alert_id.is_(None))
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


def stores(ctx: ServiceContext) -> list[Any]:
    """The service's record stores for the sweep."""
    from policy.retention_sql import SqlTableStore

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

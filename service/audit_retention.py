"""Retention deletion of audit payloads through the database's own guard (PostgreSQL).

The service's application role may not DELETE audit payloads (:mod:`core.dbroles`);
it calls ``audit_delete_expired_payloads(seqs, retention_days)`` (migration
``0007_roles``), a ``SECURITY DEFINER`` function that deletes only payloads whose
entries are older than the retention period by the database's clock, never a
``retention.delete`` event's payload and never under the 183-day floor. Then, in the
same transaction, it logs exactly what the function deleted as ``retention.delete``
events in the form :meth:`audit.log.AuditLog.delete_payloads_in` writes them
(``{"deleted": [[start, end), …], "reason": …, "retention_days": …}``, at most 200
ranges per event, one event even when nothing was deleted), so the verifier reads both
alike and can check each deletion against the period.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import ARRAY

from audit.events import AuditEvent, EventType
from core.dbroles import PAYLOAD_DELETE_FUNCTION

__all__ = ["RANGES_PER_EVENT", "delete_expired_payloads_in", "seq_ranges"]

#: Ranges per ``retention.delete`` event, as in ``audit.log``.
RANGES_PER_EVENT = 200

_DELETE = sa.text(
    f"SELECT seq FROM {PAYLOAD_DELETE_FUNCTION}(:seqs, :days) AS deleted(seq)"  # noqa: S608
).bindparams(sa.bindparam("seqs", type_=ARRAY(sa.BigInteger)), sa.bindparam("days"))


def seq_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted unique ints as ``[[start, end_exclusive], …]``."""
    out: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if out and out[-1][1] == seq:
            out[-1][1] = seq + 1
        else:
            out.append([seq, seq + 1])
    return out


def delete_expired_payloads_in(
    conn: Connection,
    log: Any,
    seqs: Sequence[int],
    *,
    retention_days: int,
    actor: str,
    reason: str,
    policy_digest: str | None,
    decision_id: str | None,
) -> list[Any]:
    """Delete what the database allows of ``seqs`` and log it; returns the receipts of
    the ``retention.delete`` events (``[]`` when ``seqs`` is empty)."""
    if not seqs:
        return []
    deleted = [
        int(s)
        for s in conn.execute(_DELETE, {"seqs": list(seqs), "days": retention_days}).scalars()
    ]
    ranges = seq_ranges(deleted)
    events = [
        AuditEvent(
            EventType.RETENTION_DELETE,
            actor,
            payload={
                "deleted": ranges[i : i + RANGES_PER_EVENT],
                "reason": reason,
                "retention_days": retention_days,
            },
            policy_digest=policy_digest,
            decision_id=decision_id,
        )
        for i in range(0, max(len(ranges), 1), RANGES_PER_EVENT)
    ]
    return list(log.append_in(conn, events))

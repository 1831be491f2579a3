"""Alerts: created only from an alert-policy decision; actionable after two confirmations.

State machine: ``open`` → (two *distinct* reviewers confirm) → ``actionable``;
``open`` → (any reviewer dismisses, with a reason) → ``dismissed``. A reviewer reviews
an alert at most once (a database constraint, not only this code). Every review is an
audit event written by the caller in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from service.errors import ConflictError, NotFoundError
from service.tables import alert_reviews, alerts, as_utc, utc

__all__ = [
    "REQUIRED_CONFIRMATIONS",
    "AlertBus",
    "alert_public",
    "create_alert",
    "get_alert",
    "list_alerts",
    "review_alert",
]

#: EU AI Act Art. 14(5): a match is acted on only after two competent people confirm it.
#: The policy decides; this is the floor the database state machine documents.
REQUIRED_CONFIRMATIONS = 2


def create_alert(
    conn: Connection,
    *,
    gate_id: str,
    query_id: str,
    entry_ids: Sequence[str],
    reason: str,
    severity: str,
    decision_id: str,
    bundle_digest: str,
    gallery_version: str,
    now: dt.datetime,
) -> str:
    """Insert an ``open`` alert; returns its id."""
    alert_id = str(uuid.uuid4())
    conn.execute(
        alerts.insert().values(
            id=alert_id,
            created_at=now,
            gate_id=gate_id,
            query_id=query_id,
            entry_ids=json.dumps(sorted(entry_ids)),
            reason=reason[:64],
            severity=severity[:16],
            status="open",
            decision_id=decision_id,
            bundle_digest=bundle_digest,
            gallery_version=gallery_version,
        )
    )
    return alert_id


def alert_public(row: Any, reviews: Sequence[Any] = ()) -> dict[str, Any]:
    """JSON-ready view of an alert row (pseudonymous ids only)."""
    closed = as_utc(row.closed_at)
    return {
        "id": row.id,
        "created_at": utc(row.created_at).isoformat(),
        "gate_id": row.gate_id,
        "query_id": row.query_id,
        "entry_ids": json.loads(row.entry_ids),
        "reason": row.reason,
        "severity": row.severity,
        "status": row.status,
        "decision_id": row.decision_id,
        "bundle_digest": row.bundle_digest,
        "gallery_version": row.gallery_version,
        "closed_at": closed.isoformat() if closed else None,
        "reviews": [
            {
                "reviewer": r.reviewer,
                "role": r.role,
                "verdict": r.verdict,
                "reason": r.reason,
                "at": utc(r.at).isoformat(),
            }
            for r in reviews
        ],
    }


def get_alert(conn: Connection, alert_id: str) -> dict[str, Any]:
    """One alert with its reviews."""
    row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
    if row is None:
        raise NotFoundError("no such alert")
    reviews = conn.execute(
        sa.select(alert_reviews)
        .where(alert_reviews.c.alert_id == alert_id)
        .order_by(alert_reviews.c.at)
    ).all()
    return alert_public(row, reviews)


def list_alerts(
    conn: Connection, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Alerts, newest first, optionally filtered by status."""
    query = sa.select(alerts).order_by(alerts.c.created_at.desc()).limit(limit)
    if status:
        query = query.where(alerts.c.status == status)
    return [alert_public(row) for row in conn.execute(query)]


def review_alert(
    conn: Connection,
    alert_id: str,
    reviewer: str,
    role: str,
    verdict: str,
    reason: str,
    now: dt.datetime,
    decide: Callable[[list[dict[str, str]]], str],
) -> str:
    """Record one review and return the alert's new status.

    ``decide`` maps the reviews so far to ``pending``, ``confirmed`` or ``dismissed``
    (the ``veilmatch.alert.review`` policy). Raises ``ConflictError``
    (``already-reviewed``) when the reviewer reviewed this alert before, and
    (``alert-closed``) when it is no longer open.
    """
    if verdict not in ("confirm", "dismiss"):
        raise ConflictError("verdict must be confirm or dismiss", code="bad-verdict")
    # FOR UPDATE (PostgreSQL): a retention sweep deleting this alert waits for the review,
    # or the review waits for the sweep and then finds no alert (never a stale insert)
    row = conn.execute(
        sa.select(alerts.c.status).where(alerts.c.id == alert_id).with_for_update()
    ).first()
    if row is None:
        raise NotFoundError("no such alert")
    if row.status != "open":
        raise ConflictError(f"alert is {row.status}", code="alert-closed")
    try:
        with conn.begin_nested():
            conn.execute(
                alert_reviews.insert().values(
                    id=str(uuid.uuid4()),
                    alert_id=alert_id,
                    reviewer=reviewer,
                    role=role,
                    verdict=verdict,
                    reason=reason,
                    at=now,
                )
            )
    except IntegrityError:
        raise ConflictError(
            "this reviewer already reviewed the alert", code="already-reviewed"
        ) from None
    reviews = [
        {"reviewer": r.reviewer, "role": r.role, "verdict": r.verdict}
        for r in conn.execute(sa.select(alert_reviews).where(alert_reviews.c.alert_id == alert_id))
    ]
    state = decide(reviews)
    status = {"confirmed": "actionable", "dismissed": "dismissed"}.get(state, "open")
    if status != "open":
        conn.execute(
            alerts.update().where(alerts.c.id == alert_id).values(status=status, closed_at=now)
        )
    return status


class AlertBus:
    """In-process fan-out of alert notifications to SSE subscribers.

    Each subscriber has a bounded queue; a slow subscriber loses the oldest events
    rather than slowing the match path (it can re-list alerts to catch up).
    """

    def __init__(self, queue_size: int = 100) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the event loop so worker threads can publish."""
        self._loop = loop

    def publish(self, event: dict[str, Any]) -> None:
        """Deliver ``event`` to every subscriber (thread-safe)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Yield events until the consumer stops iterating."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

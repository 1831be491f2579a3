"""The SQL the routers and use cases need: pending queries, crossings, kept probes,
idempotency records, gate keys, and the staff reads (accounts, gates, reviewers,
statistics).

Every function runs on the caller's connection, inside the caller's transaction: the
caller decides what commits together (a record and its audit leaf always do). Times are
timezone-aware UTC ``datetime`` values; durations are ``timedelta``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from service.tables import (
    accounts,
    alert_reviews,
    alerts,
    crossings,
    gate_keys,
    gates,
    idempotency_keys,
    pending_queries,
    probe_records,
    utc,
)

__all__ = [
    "ActiveKey",
    "NewPendingQuery",
    "StatisticsCounts",
    "StoredReply",
    "active_key",
    "alert_reviewers",
    "count_crossings",
    "count_recent_queries",
    "insert_pending_query",
    "keep_probe",
    "key_expiry",
    "list_accounts",
    "list_gates",
    "mark_revealed",
    "record_crossing",
    "statistics_counts",
    "store_reply",
    "stored_reply",
]


# --- idempotency -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredReply:
    """The answer stored for a gate's request id; ``body_sha256`` is of the request."""

    route: str
    body_sha256: str
    status_code: int
    response: bytes


def stored_reply(conn: Connection, gate_id: str, request_id: str) -> StoredReply | None:
    """The reply recorded for ``(gate_id, request_id)``, or None."""
    row = conn.execute(
        sa.select(idempotency_keys).where(
            idempotency_keys.c.gate_id == gate_id,
            idempotency_keys.c.request_id == request_id,
        )
    ).first()
    if row is None:
        return None
    return StoredReply(
        str(row.route), str(row.body_sha256), int(row.status_code), bytes(row.response)
    )


def store_reply(
    conn: Connection,
    gate_id: str,
    request_id: str,
    route: str,
    digest: str,
    response: bytes,
    now: dt.datetime,
) -> None:
    """Record a 200 reply for ``(gate_id, request_id)`` (``digest``: SHA-256 hex of the
    request body), so a retry gets the same answer."""
    conn.execute(
        idempotency_keys.insert().values(
            gate_id=gate_id,
            request_id=request_id,
            route=route,
            body_sha256=digest,
            status_code=200,
            response=response,
            created_at=now,
        )
    )


# --- gate keys -------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveKey:
    """A gate's current signing key: id and creation time (UTC)."""

    id: str
    created_at: dt.datetime


def active_key(conn: Connection, gate_id: str) -> ActiveKey | None:
    """The gate's active key, or None."""
    row = conn.execute(
        sa.select(gate_keys.c.id, gate_keys.c.created_at).where(
            gate_keys.c.gate_id == gate_id, gate_keys.c.status == "active"
        )
    ).first()
    return None if row is None else ActiveKey(str(row.id), utc(row.created_at))


def key_expiry(conn: Connection, key_id: str) -> dt.datetime:
    """When gate key ``key_id`` expires (UTC); the key must exist."""
    row = conn.execute(sa.select(gate_keys.c.expires_at).where(gate_keys.c.id == key_id)).one()
    return utc(row.expires_at)


# --- pending queries and crossings -----------------------------------------------------


def count_recent_queries(conn: Connection, gate_id: str, since: dt.datetime) -> int:
    """Searches ``gate_id`` made after ``since`` (the match policy's rate input)."""
    count = conn.execute(
        sa.select(sa.func.count())
        .select_from(pending_queries)
        .where(pending_queries.c.gate_id == gate_id, pending_queries.c.created_at > since)
    ).scalar_one()
    return int(count)


@dataclass(frozen=True)
class NewPendingQuery:
    """A scored search awaiting its reveal (the mapping itself stays in memory)."""

    id: str
    gate_id: str
    key_id: str
    created_at: dt.datetime
    expires_at: dt.datetime
    gallery_version: str
    doc_pseudonym: str | None


def insert_pending_query(conn: Connection, query: NewPendingQuery) -> None:
    """Record ``query`` as ``pending``."""
    conn.execute(
        pending_queries.insert().values(
            id=query.id,
            gate_id=query.gate_id,
            key_id=query.key_id,
            created_at=query.created_at,
            expires_at=query.expires_at,
            gallery_version=query.gallery_version,
            doc_pseudonym=query.doc_pseudonym,
            status="pending",
        )
    )


def mark_revealed(conn: Connection, query_id: str, outcome: str, decision_id: str) -> None:
    """A pending query was revealed with ``outcome`` under alert decision ``decision_id``."""
    conn.execute(
        pending_queries.update()
        .where(pending_queries.c.id == query_id)
        .values(status="revealed", outcome=outcome, decision_id=decision_id)
    )


def record_crossing(conn: Connection, doc_pseudonym: str, gate_id: str, at: dt.datetime) -> None:
    """A traveller (by document pseudonym) crossed at ``gate_id``."""
    conn.execute(
        crossings.insert().values(
            id=str(uuid.uuid4()), doc_pseudonym=doc_pseudonym, gate_id=gate_id, at=at
        )
    )


def count_crossings(conn: Connection, doc_pseudonym: str, since: dt.datetime) -> int:
    """Crossings of one document pseudonym after ``since``."""
    count = conn.execute(
        sa.select(sa.func.count())
        .select_from(crossings)
        .where(crossings.c.doc_pseudonym == doc_pseudonym, crossings.c.at > since)
    ).scalar_one()
    return int(count)


def keep_probe(
    conn: Connection, query_id: str, alert_id: str, ciphertext: bytes, now: dt.datetime
) -> None:
    """Keep the encrypted probe of an alert for its review (deleted by retention)."""
    conn.execute(
        probe_records.insert().values(
            id=str(uuid.uuid4()),
            query_id=query_id,
            alert_id=alert_id,
            ciphertext=ciphertext,
            created_at=now,
        )
    )


# --- staff reads -----------------------------------------------------------------------


def list_accounts(conn: Connection) -> list[Any]:
    """Account rows (id, username, role, active, ...), by username."""
    return list(conn.execute(sa.select(accounts).order_by(accounts.c.username)).all())


def list_gates(conn: Connection) -> list[dict[str, Any]]:
    """Registered gates with status and current key (id, expiry), by id."""
    rows = conn.execute(sa.select(gates).order_by(gates.c.id)).all()
    keys = conn.execute(
        sa.select(gate_keys.c.gate_id, gate_keys.c.id, gate_keys.c.expires_at).where(
            gate_keys.c.status == "active"
        )
    ).all()
    current = {k.gate_id: (k.id, utc(k.expires_at).isoformat()) for k in keys}
    return [
        {
            "id": r.id,
            "site": r.site,
            "status": r.status,
            "cert_sha256": r.cert_sha256,
            "registered_at": utc(r.registered_at).isoformat(),
            "key_id": current.get(r.id, (None, None))[0],
            "key_expires_at": current.get(r.id, (None, None))[1],
        }
        for r in rows
    ]


def alert_reviewers(conn: Connection, alert_id: str) -> list[str]:
    """Who has reviewed ``alert_id`` so far."""
    rows = conn.execute(
        sa.select(alert_reviews.c.reviewer).where(alert_reviews.c.alert_id == alert_id)
    )
    return [str(r.reviewer) for r in rows]


@dataclass(frozen=True)
class StatisticsCounts:
    """Counts since a time: searches per gate per day, secondary outcomes, alerts by
    status, review verdicts."""

    per_gate: dict[str, dict[str, int]]
    secondary: int
    alerts_by_status: dict[str, int]
    verdicts: dict[str, int]


def statistics_counts(conn: Connection, since: dt.datetime) -> StatisticsCounts:
    """The database side of ``GET /statistics`` (counts only, nothing per person)."""
    per_gate: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        sa.select(pending_queries.c.gate_id, pending_queries.c.created_at).where(
            pending_queries.c.created_at >= since
        )
    )
    for row in rows:
        day = row.created_at.date().isoformat()
        per_gate.setdefault(row.gate_id, {}).setdefault(day, 0)
        per_gate[row.gate_id][day] += 1
    secondary = conn.execute(
        sa.select(sa.func.count())
        .select_from(pending_queries)
        .where(pending_queries.c.created_at >= since, pending_queries.c.outcome == "secondary")
    ).scalar_one()
    by_status = conn.execute(
        sa.select(alerts.c.status, sa.func.count())
        .where(alerts.c.created_at >= since)
        .group_by(alerts.c.status)
    ).all()
    verdicts = conn.execute(
        sa.select(alert_reviews.c.verdict, sa.func.count())
        .where(alert_reviews.c.at >= since)
        .group_by(alert_reviews.c.verdict)
    ).all()
    return StatisticsCounts(
        per_gate,
        int(secondary),
        {str(k): int(v) for k, v in by_status},
        {str(k): int(v) for k, v in verdicts},
    )

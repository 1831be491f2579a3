"""Refusals without a principal, counted in the database and audited in aggregate.

A request refused before anyone was authenticated (no or a bad bearer token, a failed
or locked sign-in, a forged console form, an unauthorised scrape) costs its sender
nothing, so one audit entry each would let anyone grow the audit log. Instead each
refusal adds one to a counter keyed by (window, source, route, code) in
``svc_denial_counts``; when a window has closed, its counters are deleted and written
as **one** ``access.denied`` entry per source and window (code ``denials-aggregated``,
the total ``count`` and a per-route, per-code breakdown under ``denials``).

Bounds: the source is the client address (an IPv6 address counts as its /64, since one
host holds a whole /64); after :data:`MAX_SOURCES` distinct sources in a window,
further sources count as ``other``; so a window adds at most ``MAX_SOURCES + 1``
entries, however many requests it saw. The counters live in the database, so the
replicas of one deployment share them, and ``DELETE … RETURNING`` hands each counter
to exactly one flushing transaction, which appends its entry before committing: a
count is audited once, never twice, never lost.
"""

from __future__ import annotations

import collections
import datetime as dt
import ipaddress
from collections.abc import Iterable
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from service.audit_events import denials_aggregated
from service.context import ServiceContext
from service.ports import ServiceEvent
from service.tables import denial_counts, utc
from service.upsert import insert_or_add

__all__ = [
    "AGGREGATE_CODE",
    "MAX_SOURCES",
    "count_denial",
    "flush_all",
    "flush_due",
    "record_unauthenticated",
    "source_of",
    "take_closed",
    "window_start",
]

#: Distinct sources recorded per window before the rest count as ``other``.
MAX_SOURCES: Final = 64
#: Per-route, per-code lines kept in one entry; the rest are summed as ``other``.
MAX_LINES: Final = 40
AGGREGATE_CODE: Final = "denials-aggregated"  # the code denials_aggregated() writes
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def source_of(address: str) -> str:
    """The counting source for a client address: IPv4 as is, IPv6 as its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def window_start(now: dt.datetime, window_s: int) -> dt.datetime:
    """Start of the ``window_s``-second window holding ``now`` (aligned to the epoch)."""
    seconds = int((now - _EPOCH).total_seconds())
    return _EPOCH + dt.timedelta(seconds=seconds - seconds % window_s)


def count_denial(
    conn: Connection, *, source: str, route: str, code: str, now: dt.datetime, window_s: int
) -> None:
    """Add one refusal to its window's counter (inside the caller's transaction)."""
    start = window_start(now, window_s)
    c = denial_counts.c
    known = conn.execute(
        sa.select(c.source).where(c.window_start == start, c.source == source).limit(1)
    ).first()
    if known is None:
        sources = conn.execute(
            sa.select(sa.func.count(sa.distinct(c.source))).where(c.window_start == start)
        ).scalar_one()
        if sources >= MAX_SOURCES:
            source = "other"
    values = {
        "window_start": start,
        "source": source[:64],
        "route": route[:200],
        "code": code[:64],
        "count": 1,
    }
    insert_or_add(conn, denial_counts, values, ["window_start", "source", "route", "code"], "count")


def _events(rows: Iterable[Any], window_s: int) -> list[ServiceEvent]:
    groups: dict[tuple[dt.datetime, str], list[tuple[str, str, int]]] = collections.defaultdict(
        list
    )
    for row in rows:
        groups[(utc(row.window_start), str(row.source))].append(
            (str(row.route), str(row.code), int(row.count))
        )
    out: list[ServiceEvent] = []
    for (start, source), lines in sorted(groups.items()):
        lines.sort(key=lambda line: (-line[2], line[0], line[1]))
        kept: list[dict[str, object]] = [
            {"route": r, "code": c, "count": n} for r, c, n in lines[:MAX_LINES]
        ]
        rest = sum(n for _r, _c, n in lines[MAX_LINES:])
        if rest:
            kept.append({"route": "other", "code": "other", "count": rest})
        total = sum(n for _r, _c, n in lines)
        out.append(
            denials_aggregated(
                source, window_start=start, window_s=window_s, lines=kept, count=total
            )
        )
    return out


def take_closed(conn: Connection, before: dt.datetime, window_s: int) -> list[ServiceEvent]:
    """Delete every counter whose window started at or before ``before`` and return
    their aggregate events (one per source and window), to be appended in ``conn``'s
    transaction. A counter deleted by a concurrent transaction is not returned here."""
    c = denial_counts.c
    rows = conn.execute(
        denial_counts.delete()
        .where(c.window_start <= before)
        .returning(c.window_start, c.source, c.route, c.code, c.count)
    ).all()
    return _events(rows, window_s)


def _flush(ctx: ServiceContext, conn: Connection, before: dt.datetime) -> int:
    events = take_closed(conn, before, ctx.settings.denial_window_s)
    if events:
        ctx.record(conn, *events)
    return len(events)


def record_unauthenticated(ctx: ServiceContext, address: str, route: str, code: str) -> None:
    """Count one refusal without a principal, and audit any closed window (blocking)."""
    now = ctx.now()
    window_s = ctx.settings.denial_window_s
    with ctx.transaction() as conn:
        count_denial(
            conn, source=source_of(address), route=route, code=code, now=now, window_s=window_s
        )
        _flush(ctx, conn, now - dt.timedelta(seconds=window_s))


def flush_due(ctx: ServiceContext) -> int:
    """Audit the windows that have closed (timer); entries written. Reads first, so an
    idle service takes no write lock."""
    window = dt.timedelta(seconds=ctx.settings.denial_window_s)
    before = ctx.now() - window
    with ctx.reader() as conn:
        due = conn.execute(
            sa.select(denial_counts.c.count).where(denial_counts.c.window_start <= before).limit(1)
        ).first()
    if due is None:
        return 0
    with ctx.transaction() as conn:
        return _flush(ctx, conn, before)


def flush_all(ctx: ServiceContext) -> int:
    """Audit every counter, the open window's too (shutdown, tests); entries written."""
    with ctx.transaction() as conn:
        return _flush(ctx, conn, ctx.now() + dt.timedelta(days=1))

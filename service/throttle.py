"""Sign-in throttling per account and per client address, kept in the database.

Each sign-in attempt first *reserves* one failure on its address key, then on its
account key (always in that order, so concurrent transactions never deadlock): the
counter is incremented before the password is checked, so parallel guesses cannot all
pass a "not yet locked" check together. A reservation over the key's limit locks the
key; a failed password check that brings a key to its limit locks it. A locked key
refuses every attempt, the right password included, without checking it, until
``locked_until``. A success clears the account's counter and returns the address's
reservation (one valid account must not reset the counter of its whole address).

Each lock is set by one conditional ``UPDATE`` (``… WHERE locked_until IS NULL OR
locked_until <= now``), so exactly one transaction, on whichever replica, sees it set
and audits it: one audit entry per lock-out, not per attempt. Failures older than the
lock-out period are forgotten. Times are UTC; durations in seconds.

Keys: ``address:<client address>`` and ``account:<SHA-256 of the typed username>``: the
typed string (it may be a mistyped password) is never stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from service.errors import RateLimitedError
from service.tables import as_utc, login_throttle
from service.upsert import insert_or_ignore

__all__ = [
    "LoginLockedError",
    "NewLock",
    "ThrottleKey",
    "keys_for",
    "lock_exhausted",
    "purge",
    "reserve",
    "settle_success",
]


class LoginLockedError(RateLimitedError):
    """Too many failed sign-ins for this account or from this address (429)."""

    code = "login-locked"


@dataclass(frozen=True)
class ThrottleKey:
    """One counter: its scope (``address`` or ``account``), database key and limit."""

    scope: str
    key: str
    limit: int


@dataclass(frozen=True)
class NewLock:
    """A lock this transaction set (to be audited once)."""

    key: ThrottleKey
    failures: int
    until: dt.datetime


def keys_for(
    username: str, address: str, *, account_limit: int, address_limit: int
) -> tuple[ThrottleKey, ThrottleKey]:
    """The address key, then the account key (the order every transaction uses)."""
    digest = hashlib.sha256(username.strip().lower().encode("utf-8")).hexdigest()[:32]
    return (
        ThrottleKey("address", f"address:{address[:64]}", address_limit),
        ThrottleKey("account", f"account:{digest}", account_limit),
    )


def _unlocked(now: dt.datetime) -> sa.ColumnElement[bool]:
    col = login_throttle.c.locked_until
    return sa.or_(col.is_(None), col <= now)


def _start(conn: Connection, key: str, now: dt.datetime, window: dt.timedelta) -> None:
    """Create the row, or forget its failures when its lock or window has lapsed."""
    insert_or_ignore(
        conn,
        login_throttle,
        {"key": key, "failures": 0, "window_start": now, "locked_until": None},
        ["key"],
    )
    c = login_throttle.c
    lapsed = sa.or_(
        sa.and_(c.locked_until.is_not(None), c.locked_until <= now),
        sa.and_(c.locked_until.is_(None), c.window_start <= now - window),
    )
    conn.execute(
        login_throttle.update()
        .where(c.key == key, lapsed)
        .values(failures=0, window_start=now, locked_until=None)
    )


def _lock(
    conn: Connection, key: ThrottleKey, failures: int, now: dt.datetime, window: dt.timedelta
) -> NewLock | None:
    until = now + window
    done = conn.execute(
        login_throttle.update()
        .where(login_throttle.c.key == key.key, _unlocked(now))
        .values(locked_until=until)
    )
    return NewLock(key, failures, until) if done.rowcount == 1 else None


def retry_after_s(conn: Connection, keys: Sequence[ThrottleKey], now: dt.datetime) -> int:
    """Whole seconds until every lock among ``keys`` has lapsed (at least 1)."""
    rows = conn.execute(
        sa.select(login_throttle.c.locked_until).where(
            login_throttle.c.key.in_([k.key for k in keys])
        )
    )
    latest = max((as_utc(r.locked_until) or now for r in rows), default=now)
    return max(1, math.ceil((latest - now).total_seconds()))


def reserve(
    conn: Connection, keys: Sequence[ThrottleKey], now: dt.datetime, window: dt.timedelta
) -> tuple[bool, list[NewLock]]:
    """Count one attempt on each key in order; ``(admitted, locks set)``.

    An attempt while any key is locked counts nowhere (it checks no password, so it is
    no guess). Otherwise it stops at the first key locked meanwhile by a concurrent
    attempt; a reservation over its key's limit locks that key.
    """
    new: list[NewLock] = []
    for key in keys:
        _start(conn, key.key, now, window)
    locked = conn.execute(
        sa.select(login_throttle.c.key).where(
            login_throttle.c.key.in_([k.key for k in keys]), sa.not_(_unlocked(now))
        )
    ).first()
    if locked is not None:  # refused before counting: an attempt on a locked key is no guess
        return False, new
    for key in keys:
        row = conn.execute(
            login_throttle.update()
            .where(login_throttle.c.key == key.key, _unlocked(now))
            .values(failures=login_throttle.c.failures + 1)
            .returning(login_throttle.c.failures)
        ).first()
        if row is None:  # locked by an earlier lock-out or a concurrent attempt
            return False, new
        if int(row.failures) > key.limit:
            lock = _lock(conn, key, int(row.failures), now, window)
            new += [lock] if lock is not None else []
            return False, new
    return True, new


def lock_exhausted(
    conn: Connection, keys: Sequence[ThrottleKey], now: dt.datetime, window: dt.timedelta
) -> list[NewLock]:
    """After a failed password check: lock each key whose failures reached its limit."""
    new: list[NewLock] = []
    for key in keys:
        failures = conn.execute(
            sa.select(login_throttle.c.failures).where(login_throttle.c.key == key.key)
        ).scalar_one_or_none()
        if failures is not None and failures >= key.limit:
            lock = _lock(conn, key, int(failures), now, window)
            new += [lock] if lock is not None else []
    return new


def settle_success(conn: Connection, keys: Sequence[ThrottleKey], now: dt.datetime) -> None:
    """After a correct password: clear the account's failures, return the address's
    reservation. Locks set meanwhile by concurrent attempts stay."""
    c = login_throttle.c
    for key in keys:
        values: dict[str, Any]
        if key.scope == "account":
            values = {"failures": 0}
        else:
            values = {"failures": sa.case((c.failures > 0, c.failures - 1), else_=0)}
        conn.execute(login_throttle.update().where(c.key == key.key, _unlocked(now)).values(values))


def purge(conn: Connection, now: dt.datetime, window: dt.timedelta) -> int:
    """Delete rows with no lock and no failure younger than ``window``; how many."""
    c = login_throttle.c
    done = conn.execute(
        login_throttle.delete().where(_unlocked(now), c.window_start <= now - window)
    )
    return int(done.rowcount)

"""Password sign-in for the API (``POST /api/v1/auth/token``) and the console, throttled.

:func:`sign_in` reserves an attempt on the client address and the account
(:mod:`service.throttle`), checks the password only when both are admitted, and
settles the counters: a refused attempt raises :class:`LoginLockedError` (429 with
``Retry-After``) without checking the password, so the right password is refused too
while a lock lasts. Each lock-out is audited once, as ``access.denied`` with code
``login-locked``, in the transaction that set it. Failed passwords themselves are
refusals without a principal: the caller's denial hook aggregates them
(:mod:`service.denials`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy import Connection

from service import audit_events as events
from service import throttle
from service.accounts import Principal, authenticate
from service.context import ServiceContext
from service.errors import AuthenticationError
from service.ports import ServiceEvent
from service.tables import accounts
from service.throttle import LoginLockedError, NewLock, ThrottleKey

__all__ = ["LoginLockedError", "client_address", "sign_in"]


def client_address(request: Request) -> str:
    """The TCP peer's address, normalised (the service terminates TLS itself, so the
    peer is the client; ``X-Forwarded-For`` is not trusted)."""
    host = request.client.host if request.client is not None else ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "unknown"


def _lock_event(conn: Connection, lock: NewLock, username: str, address: str) -> ServiceEvent:
    if lock.key.scope == "address":
        return events.login_locked(
            "address", failures=lock.failures, until=lock.until, source=address
        )
    account_id = conn.execute(
        sa.select(accounts.c.id).where(accounts.c.username == username)
    ).scalar_one_or_none()
    return events.login_locked(
        "account", failures=lock.failures, until=lock.until, account_id=account_id
    )


def _audit_locks(
    ctx: ServiceContext, conn: Connection, locks: list[NewLock], username: str, address: str
) -> None:
    if locks:
        ctx.record(conn, *(_lock_event(conn, lock, username, address) for lock in locks))


def _refuse(ctx: ServiceContext, keys: tuple[ThrottleKey, ...], now: dt.datetime) -> None:
    with ctx.reader() as conn:
        wait = throttle.retry_after_s(conn, keys, now)
    raise LoginLockedError(f"too many failed sign-ins; try again in {wait} s", retry_after_s=wait)


def sign_in(ctx: ServiceContext, username: str, password: str, address: str) -> Principal:
    """The principal for a correct password, unless the account or address is locked.

    Raises :class:`LoginLockedError` (locked, or this failure locked it) or
    :class:`AuthenticationError` (``login-failed``). Blocking: call from a worker thread.
    """
    settings = ctx.settings
    keys = throttle.keys_for(
        username,
        address,
        account_limit=settings.login_account_failures,
        address_limit=settings.login_address_failures,
    )
    window = dt.timedelta(seconds=settings.login_lockout_s)
    now = ctx.now()
    with ctx.transaction() as conn:
        admitted, locks = throttle.reserve(conn, keys, now, window)
        _audit_locks(ctx, conn, locks, username, address)
    if not admitted:
        _refuse(ctx, keys, now)
    try:
        with ctx.reader() as conn:
            principal = authenticate(conn, username, password)
    except AuthenticationError:
        with ctx.transaction() as conn:
            locks = throttle.lock_exhausted(conn, keys, now, window)
            _audit_locks(ctx, conn, locks, username, address)
        if locks:
            _refuse(ctx, keys, now)
        raise
    with ctx.transaction() as conn:
        throttle.settle_success(conn, keys, now)
    return principal

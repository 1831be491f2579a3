"""Sign-in counters in the database (``service.throttle``), on each backend, with an
explicit clock: limits, lock-out once, expiry, and two replicas sharing the counters
(two engines on one database stand for two service processes)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from core.db import make_engine
from service import throttle
from service.tables import login_throttle

T0 = dt.datetime(2025, 3, 1, 4, 0, tzinfo=dt.UTC)
WINDOW = dt.timedelta(minutes=15)


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """One write transaction, as ``ServiceContext.transaction`` opens it."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn
        conn.commit()


def keys(username: str = "officer1", address: str = "192.0.2.7", account: int = 5, addr: int = 20):
    return throttle.keys_for(username, address, account_limit=account, address_limit=addr)


def attempt(
    engine: Engine, ks: Any, now: dt.datetime, correct: bool
) -> tuple[str, list[throttle.NewLock]]:
    """One sign-in as ``service.signin.sign_in`` runs it; ('ok'|'failed'|'locked', locks)."""
    with write(engine) as conn:
        admitted, locks = throttle.reserve(conn, ks, now, WINDOW)
    if not admitted:
        return "locked", locks
    with write(engine) as conn:
        if correct:
            throttle.settle_success(conn, ks, now)
            return "ok", locks
        more = throttle.lock_exhausted(conn, ks, now, WINDOW)
    return ("locked" if more else "failed"), locks + more


def test_the_account_locks_at_its_limit_and_refuses_the_right_password(engine):
    ks = keys()
    outcomes = [attempt(engine, ks, T0, correct=False) for _ in range(40)]
    assert [o for o, _ in outcomes[:4]] == ["failed"] * 4
    assert outcomes[4][0] == "locked"  # the failure that reached the limit locks
    locks = [lock for _o, ls in outcomes for lock in ls]
    assert [(lock.key.scope, lock.failures) for lock in locks] == [("account", 5)]
    assert locks[0].until == T0 + WINDOW
    assert attempt(engine, ks, T0 + dt.timedelta(minutes=14), correct=True)[0] == "locked"
    with engine.connect() as conn:  # attempts on a locked key count nowhere
        rows = dict(conn.execute(sa.select(login_throttle.c.key, login_throttle.c.failures)).all())
    assert rows == {ks[0].key: 5, ks[1].key: 5}
    with engine.connect() as conn:
        assert throttle.retry_after_s(conn, ks, T0 + dt.timedelta(seconds=30)) == 870


def test_the_lock_expires_and_the_failures_are_forgotten(engine):
    ks = keys()
    for _ in range(5):
        attempt(engine, ks, T0, correct=False)
    assert attempt(engine, ks, T0 + WINDOW - dt.timedelta(seconds=1), correct=True)[0] == "locked"
    assert attempt(engine, ks, T0 + WINDOW, correct=True)[0] == "ok"
    later = T0 + 2 * WINDOW
    assert [attempt(engine, ks, later, correct=False)[0] for _ in range(4)] == ["failed"] * 4


def test_spraying_many_accounts_locks_the_address(engine):
    outcomes = []
    for i in range(8):
        ks = keys(username=f"user{i}", addr=20)
        outcomes += [attempt(engine, ks, T0, correct=False) for _ in range(3)]
    assert [o for o, _ in outcomes[:20]] == ["locked" if i == 19 else "failed" for i in range(20)]
    assert {o for o, _ in outcomes[20:]} == {"locked"}
    locks = [lock for _o, ls in outcomes for lock in ls]
    assert [lock.key.scope for lock in locks] == ["address"]


def test_success_clears_the_account_but_not_the_address(engine):
    ks = keys()
    for _ in range(4):
        attempt(engine, ks, T0, correct=False)
    assert attempt(engine, ks, T0, correct=True)[0] == "ok"
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(login_throttle.c.key, login_throttle.c.failures)).all())
    assert rows == {ks[0].key: 4, ks[1].key: 0}  # the address keeps its 4 failures


def test_the_typed_username_is_not_stored(engine):
    typed = "Correct-Horse-Battery"  # e.g. a password typed into the username field
    attempt(engine, keys(username=typed), T0, correct=False)
    with engine.connect() as conn:
        stored = " ".join(conn.execute(sa.select(login_throttle.c.key)).scalars())
    assert typed.lower() not in stored.lower() and "battery" not in stored.lower()


def test_purge_forgets_lapsed_rows_only(engine):
    attempt(engine, keys(username="quiet"), T0, correct=False)
    for _ in range(5):
        attempt(engine, keys(username="locked1", address="192.0.2.9"), T0 + WINDOW, correct=False)
    with write(engine) as conn:
        assert throttle.purge(conn, T0 + WINDOW + dt.timedelta(seconds=1), WINDOW) == 2
    with engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(login_throttle)).scalar_one()
    assert left == 2  # the locked account and its address


@pytest.fixture
def replica(engine: Engine, db_settings) -> Iterator[Engine]:
    """A second engine on the same database: another service process."""
    other = make_engine(db_settings)
    yield other
    other.dispose()


def test_replicas_share_the_counters(engine, replica):
    ks = keys()
    seen = [attempt(e, ks, T0, correct=False)[0] for e in [engine, replica] * 2]
    assert seen == ["failed"] * 4
    assert attempt(replica, ks, T0, correct=False)[0] == "locked"
    assert attempt(engine, ks, T0, correct=True)[0] == "locked"


def test_parallel_guesses_on_two_replicas_check_at_most_the_limit(engine, replica):
    ks = keys(account=5, addr=1000)
    results: list[tuple[bool, list[throttle.NewLock]]] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def guess(e: Engine) -> None:
        start.wait()
        with write(e) as conn:
            outcome = throttle.reserve(conn, ks, T0, WINDOW)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=guess, args=([engine, replica][i % 2],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 16
    assert sum(admitted for admitted, _ in results) == 5  # passwords checked: the limit
    locks = [lock for _a, ls in results for lock in ls]
    assert len(locks) == 1 and locks[0].key.scope == "account"  # one lock-out, one audit

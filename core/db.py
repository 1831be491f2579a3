"""The one engine and session factory every component uses.

No component opens its own connections: services take an ``Engine`` (or a
``Session`` from :func:`session_scope`) built here, so SQLite pragmas, the PostgreSQL
driver and ``search_path`` are applied in exactly one place. Write transactions that
read before they write go through :func:`write_transaction`, the one place that knows
SQLite needs ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

from core.settings import Settings


def is_postgres(engine: Engine) -> bool:
    """True when the engine talks to PostgreSQL (advisory locks, triggers, schemas)."""
    return engine.dialect.name == "postgresql"


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    """Create an engine for ``settings.database_url``.

    SQLite: the parent directory is created, WAL journal, ``synchronous=FULL`` (an
    acknowledged commit survives power loss), foreign keys on and a 30 s busy timeout so
    concurrent processes wait instead of failing. PostgreSQL: psycopg 3, pre-ping, and
    ``search_path`` set to ``settings.database_schema`` when given.
    """
    url = make_url(settings.sqlalchemy_url)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args["timeout"] = 30
        connect_args["check_same_thread"] = False
    elif settings.database_schema:
        connect_args["options"] = f"-csearch_path={settings.database_schema}"
    engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def write_transaction(
    engine: Engine, *, queue: threading.RLock | None = None
) -> Iterator[Connection]:
    """One write transaction on a fresh connection: commit on success, roll back on any
    exception (the exception propagates).

    On SQLite the transaction starts with ``BEGIN IMMEDIATE``, taking the database write
    lock before the first read: a deferred transaction that reads first could not
    upgrade its lock after a concurrent commit (``SQLITE_BUSY`` that no retry fixes).
    ``queue`` (SQLite only) is an in-process lock that writers take first, so threads of
    one process wait their turn on it instead of sleeping in SQLite's busy handler
    (1, 2, 5, 10 … ms steps) while the lock is already free. On PostgreSQL the
    transaction begins implicitly and ``queue`` is not used: row locks do that job.
    """
    sqlite = engine.dialect.name == "sqlite"
    waiting: AbstractContextManager[Any] = nullcontext()
    if sqlite and queue is not None:
        waiting = queue
    with waiting, engine.connect() as conn:
        if sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

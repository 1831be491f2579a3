"""Portable ``INSERT … ON CONFLICT`` for the two supported backends.

Both PostgreSQL and SQLite (3.24+) have the statement; SQLAlchemy exposes it per
dialect, so this picks the dialect's ``insert`` by the connection's dialect name. A
concurrent insert of the same key never raises: it is skipped, or its counter added to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["insert_or_add", "insert_or_ignore"]


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_or_ignore(
    conn: Connection, table: sa.Table, values: Mapping[str, Any], keys: Sequence[str]
) -> None:
    """Insert ``values`` unless a row with the same ``keys`` exists."""
    stmt = _insert(conn, table).values(dict(values))
    conn.execute(stmt.on_conflict_do_nothing(index_elements=list(keys)))


def insert_or_add(
    conn: Connection, table: sa.Table, values: Mapping[str, Any], keys: Sequence[str], counter: str
) -> None:
    """Insert ``values``, or add ``values[counter]`` to the existing row's ``counter``."""
    stmt = _insert(conn, table).values(dict(values))
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={counter: table.c[counter] + stmt.excluded[counter]},
    )
    conn.execute(stmt)

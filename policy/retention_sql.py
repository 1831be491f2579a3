"""A :class:`~policy.retention.RecordStore` over one SQL table (SQLAlchemy Core only).

The table needs a string-comparable id column and a "since" timestamp (when the row
entered its state). The state comes from a state column, or is fixed for tables whose
rows have one state (e.g. crossing records are always ``recorded``). Redaction sets the
configured columns and moves the row to state ``redacted`` (which has no period), so a
redacted row is never swept again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Engine, Table, delete, select, update

from policy.errors import RetentionError
from policy.retention import Candidate, OnBatch, RetentionBatch

__all__ = ["REDACTED_STATE", "SqlTableStore"]

REDACTED_STATE = "redacted"


class SqlTableStore:
    """Sweepable view of ``table`` for record kind ``kind``.

    ``on_batch`` receives the open ``sqlalchemy.Connection``: write the audit event
    with it and the deletion and its audit leaf commit together.
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        kind: str,
        id_column: str = "id",
        since_column: str = "state_since",
        state_column: str | None = "state",
        fixed_state: str | None = None,
        redact: Mapping[str, Any] | None = None,
    ) -> None:
        if (state_column is None) == (fixed_state is None):
            raise RetentionError("give exactly one of state_column and fixed_state")
        self._engine = engine
        self._table = table
        self._kind = kind
        self._id: Column[Any] = table.c[id_column]
        self._since: Column[Any] = table.c[since_column]
        self._state: Column[Any] | None = table.c[state_column] if state_column else None
        self._fixed_state = fixed_state
        self._redact = dict(redact or {})

    @property
    def kind(self) -> str:
        """The record kind this table holds."""
        return self._kind

    def _moment(self, value: datetime) -> datetime:
        value = value.astimezone(UTC)
        # SQLite keeps timestamps as naive text; store and compare them as UTC.
        return value.replace(tzinfo=None) if self._engine.dialect.name == "sqlite" else value

    def candidates(
        self, state: str, entered_before: datetime, after: str | None, limit: int
    ) -> Sequence[Candidate]:
        """Rows in ``state`` whose since-time is before ``entered_before``, by id."""
        if self._state is None and state != self._fixed_state:
            return []
        query = select(self._id, self._since).where(self._since < self._moment(entered_before))
        if self._state is not None:
            query = query.where(self._state == state)
        if after is not None:
            query = query.where(self._id > after)
        query = query.order_by(self._id).limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Candidate(str(rid), state, since if since.tzinfo else since.replace(tzinfo=UTC))
            for rid, since in rows
        ]

    def apply(self, batch: RetentionBatch, on_batch: OnBatch) -> int:
        """Delete or redact the batch's rows and run ``on_batch`` in the same transaction."""
        if batch.kind != self._kind:
            raise RetentionError(f"batch for {batch.kind} given to the {self._kind} store")
        ids = list(batch.record_ids)
        with self._engine.begin() as conn:
            if batch.action == "delete":
                result = conn.execute(delete(self._table).where(self._id.in_(ids)))
            else:
                if self._state is None or not self._redact:
                    raise RetentionError(f"{self._kind}: redaction is not configured")
                values = {**self._redact, self._state.name: REDACTED_STATE}
                result = conn.execute(update(self._table).where(self._id.in_(ids)).values(values))
            on_batch(batch, conn)
        return int(result.rowcount or 0)

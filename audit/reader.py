"""The reader: entries, checkpoints and RFC 9162 proofs, read from the log's tables.

Reads take no lock and see committed rows only. Nothing here checks authenticity: a
verifier checks what it reads against signed checkpoints (:mod:`audit.verify`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from audit import schema
from audit.checkpoint import SignedCheckpoint
from audit.errors import LogStateError, NotFoundError, ProofPreconditionError
from audit.events import EventType, LeafHeader
from audit.rfc9162 import Node, consistency_plan, fold, inclusion_plan, root_plan

__all__ = ["Entry", "InclusionProof", "LogReader"]


@dataclass(frozen=True)
class Entry:
    """A stored entry: its header, leaf bytes and payload (``None`` once deleted)."""

    seq: int
    header: LeafHeader
    leaf: bytes
    leaf_hash: bytes
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 inclusion proof of entry ``seq`` in the tree of ``size`` leaves."""

    seq: int
    size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]


class LogReader:
    """Read access to the log stored in ``engine``'s database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def tree_size(self) -> int:
        """Number of committed entries."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(schema.head.c.tree_size).where(schema.head.c.id == 1)
                ).scalar_one()
            )

    def last_checkpoint_row(self, conn: Connection) -> Any:
        """The newest ``audit_checkpoints`` row (``None`` before the first checkpoint)."""
        return conn.execute(
            sa.select(schema.checkpoints).order_by(schema.checkpoints.c.tree_size.desc()).limit(1)
        ).first()

    def checkpoint_at(self, size: int) -> SignedCheckpoint:
        """The checkpoint issued at ``size``, with any stored cosignatures appended."""
        with self.engine.connect() as conn:
            note = conn.execute(
                sa.select(schema.checkpoints.c.note).where(schema.checkpoints.c.tree_size == size)
            ).scalar_one_or_none()
            if note is None:
                raise NotFoundError(f"no checkpoint at size {size}")
            lines = conn.execute(
                sa.select(schema.cosignatures.c.line)
                .where(schema.cosignatures.c.tree_size == size)
                .order_by(schema.cosignatures.c.signer)
            ).scalars()
            return self._with_cosigs(bytes(note), list(lines))

    @staticmethod
    def _with_cosigs(note_bytes: bytes, lines: list[str]) -> SignedCheckpoint:
        if lines:
            note_bytes = note_bytes + "".join(lines).encode()
        return SignedCheckpoint.from_bytes(note_bytes)

    def checkpoint_sizes(self) -> list[int]:
        """Sizes of every checkpoint issued, ascending."""
        with self.engine.connect() as conn:
            return [
                int(s)
                for s in conn.execute(
                    sa.select(schema.checkpoints.c.tree_size).order_by(
                        schema.checkpoints.c.tree_size
                    )
                ).scalars()
            ]

    def latest_checkpoint(self) -> SignedCheckpoint:
        """The newest checkpoint (with cosignatures); raise if none was issued yet."""
        with self.engine.connect() as conn:
            last = self.last_checkpoint_row(conn)
        if last is None:
            raise LogStateError("no checkpoint has been issued yet")
        return self.checkpoint_at(int(last.tree_size))

    def entries(
        self,
        start: int = 0,
        end: int | None = None,
        *,
        types: Sequence[EventType | str] | None = None,
        limit: int = 1000,
    ) -> list[Entry]:
        """Entries with ``start <= seq < end``, optionally only the given event types."""
        q = sa.select(
            schema.entries.c.seq,
            schema.entries.c.leaf,
            schema.entries.c.leaf_hash,
            schema.payloads.c.blob,
        ).select_from(
            schema.entries.outerjoin(schema.payloads, schema.payloads.c.seq == schema.entries.c.seq)
        )
        q = q.where(schema.entries.c.seq >= start)
        if end is not None:
            q = q.where(schema.entries.c.seq < end)
        if types:
            q = q.where(schema.entries.c.event_type.in_([EventType(t).value for t in types]))
        q = q.order_by(schema.entries.c.seq).limit(limit)
        out: list[Entry] = []
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                payload = json.loads(bytes(r.blob))["payload"] if r.blob is not None else None
                out.append(
                    Entry(
                        int(r.seq),
                        LeafHeader.from_bytes(bytes(r.leaf)),
                        bytes(r.leaf),
                        bytes(r.leaf_hash),
                        payload,
                    )
                )
        return out

    def _nodes(self, conn: Connection, wanted: Iterable[Node]) -> dict[Node, bytes]:
        """Perfect subtree hashes in one statement: level 0 from entries, others from nodes.

        Plain driver SQL on purpose: building ~40 SQLAlchemy expressions per proof cost
        more than the query itself. Upper nodes are an OR of ``(level, idx)``
        equalities, not a row-value IN, which SQLite would answer with a table scan.
        """
        want = set(wanted)
        leaves = sorted(i for lvl, i in want if lvl == 0)
        upper = sorted((lvl, i) for lvl, i in want if lvl > 0)
        ph = "%s" if self._postgres else "?"
        parts: list[str] = []
        params: list[int] = []
        if leaves:
            marks = ", ".join([ph] * len(leaves))
            # Only placeholders are interpolated; values travel as parameters.
            sql = (
                "SELECT 0 AS level, seq AS idx, leaf_hash AS hash FROM audit_entries WHERE seq IN "
            )
            parts.append(sql + f"({marks})")
            params += leaves
        if upper:
            cond = " OR ".join([f"(level = {ph} AND idx = {ph})"] * len(upper))
            parts.append(f"SELECT level, idx, hash FROM audit_nodes WHERE {cond}")  # noqa: S608
            params += [x for node in upper for x in node]
        out: dict[Node, bytes] = {}
        if parts:
            rows = conn.exec_driver_sql(" UNION ALL ".join(parts), tuple(params)).all()
            for level, idx, h in rows:
                out[(int(level), int(idx))] = bytes(h)
        missing = want - set(out)
        if missing:
            raise LogStateError(f"tree hashes missing from storage: {sorted(missing)[:3]}")
        return out

    def _resolve_size(self, conn: Connection, size: int | None) -> int:
        """``size`` checked against the tree, or the latest checkpoint's size."""
        if size is None:
            latest = conn.execute(sa.select(sa.func.max(schema.checkpoints.c.tree_size))).scalar()
            if latest is None:
                raise LogStateError("no checkpoint has been issued yet")
            return int(latest)
        tree = int(
            conn.execute(
                sa.select(schema.head.c.tree_size).where(schema.head.c.id == 1)
            ).scalar_one()
        )
        if not 0 <= size <= tree:
            raise ProofPreconditionError(f"size {size} is not within the tree size {tree}")
        return size

    @contextmanager
    def _reading(self, conn: Connection | None) -> Iterator[Connection]:
        """The caller's connection if given (no pool checkout), else a fresh one."""
        if conn is not None:
            yield conn
            return
        with self.engine.connect() as own:
            yield own

    def root_at(self, size: int, *, conn: Connection | None = None) -> bytes:
        """Root hash of the tree's first ``size`` entries (``size`` ≤ tree size)."""
        with self._reading(conn) as conn:
            n = self._resolve_size(conn, size)
            plan = root_plan(n)
            return fold(plan, self._nodes(conn, plan))

    def inclusion_proof(
        self, seq: int, size: int | None = None, *, conn: Connection | None = None
    ) -> InclusionProof:
        """Inclusion proof of ``seq`` in the tree of ``size`` (default: latest checkpoint).

        Two indexed reads: the size check and one query for O(log n) stored hashes.
        Pass ``conn`` to reuse a connection the caller already holds.
        """
        with self._reading(conn) as conn:
            n = self._resolve_size(conn, size)
            plan = inclusion_plan(seq, n)
            hashes = self._nodes(conn, [(0, seq), *(x for run in plan for x in run)])
        return InclusionProof(seq, n, hashes[(0, seq)], tuple(fold(run, hashes) for run in plan))

    def consistency_proof(
        self, old_size: int, new_size: int | None = None, *, conn: Connection | None = None
    ) -> list[bytes]:
        """Consistency proof from ``old_size`` to ``new_size`` (default: latest checkpoint)."""
        with self._reading(conn) as conn:
            n = self._resolve_size(conn, new_size)
            plan = consistency_plan(old_size, n)
            hashes = self._nodes(conn, (x for run in plan for x in run))
        return [fold(run, hashes) for run in plan]

"""The appender: the log's one sequencer, and the only writer of entries.

Invariants:

- Appends are serialised: on PostgreSQL a transaction-scoped advisory lock plus the
  ``audit_head`` row lock; on SQLite the database write lock (our own transactions
  start with ``BEGIN IMMEDIATE``, :func:`core.db.write_transaction`). ``seq`` is
  therefore gap-free and dense.
- Before extending the head the appender checks that the head is authentic (the end of a
  range it tagged, or a signed checkpoint: :func:`audit.sequencer.anchor_tag`) and
  refuses with :class:`~audit.errors.SequencerChainError` otherwise; every append
  stores its range, root and tag in the same transaction as its entries.
- Every perfect subtree hash at level >= 1 is written in the same transaction as the
  leaf completing it, so proofs and tiles for any size <= the tree size are O(log n)
  reads.
- ``append_in`` receipts are valid once the *caller* commits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from audit import schema
from audit.errors import LogStateError
from audit.events import AuditEvent, EventType, build_leaf
from audit.keys import SequencerKey
from audit.note import NoteVerifier
from audit.rfc9162 import HASH_SIZE, fold, hash_children, hash_leaf, root_plan
from audit.sequencer import Range, anchor_tag, insert_range

__all__ = ["Appender", "Receipt", "connection_of", "read_head"]

#: Rows per INSERT batch; keeps statements below parameter limits on both backends.
_CHUNK = 2000
#: Retention ranges per deletion event (keeps each payload well below its size limit).
_RANGES_PER_EVENT = 200

#: (level, index, hash) of the tree's right edge, lowest level last.
_Frontier = list[tuple[int, int, bytes]]


@dataclass(frozen=True)
class Receipt:
    """Proof of acceptance: the entry's ``seq`` and ``leaf_hash``.

    Durable once the transaction that produced it committed. An inclusion proof for it
    exists from the first checkpoint whose size exceeds ``seq``.
    """

    seq: int
    leaf_hash: bytes


def connection_of(target: Any) -> Connection:
    """The ``Connection`` of ``target`` (a ``Connection`` or an ORM ``Session``)."""
    return target if isinstance(target, Connection) else target.connection()


def read_head(conn: Connection) -> tuple[int, _Frontier]:
    """The stored tree size and frontier (``audit_head``: a cache, checked before use)."""
    row = conn.execute(
        sa.select(schema.head.c.tree_size, schema.head.c.frontier).where(schema.head.c.id == 1)
    ).one()
    size, blob = int(row.tree_size), bytes(row.frontier)
    plan = root_plan(size)
    if len(blob) != HASH_SIZE * len(plan):
        raise LogStateError("audit_head frontier does not match the tree size")
    return size, [
        (lvl, idx, blob[i * HASH_SIZE : (i + 1) * HASH_SIZE]) for i, (lvl, idx) in enumerate(plan)
    ]


def frontier_root(size: int, frontier: _Frontier) -> bytes:
    """Root of the tree of ``size`` leaves whose right edge is ``frontier``."""
    return fold(root_plan(size), {(lvl, idx): h for lvl, idx, h in frontier})


def _ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted unique ints → ``[[start, end_exclusive], …]``."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and out[-1][1] == s:
            out[-1][1] = s + 1
        else:
            out.append([s, s + 1])
    return out


class Appender:
    """Appends events to the log in ``engine``'s database as the sequencer of ``origin``.

    ``sequencer_key`` tags each appended range; ``log_key`` (the log's public key) checks
    the signed checkpoint a chain may be anchored at. ``rng`` supplies payload nonces.
    """

    def __init__(
        self,
        engine: Engine,
        origin: str,
        sequencer_key: SequencerKey,
        log_key: NoteVerifier,
        *,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.engine = engine
        self.origin = origin
        self.sequencer_key = sequencer_key
        self.log_key = log_key
        self._rng = rng
        self._postgres = engine.dialect.name == "postgresql"

    def _lock(self, conn: Connection) -> None:
        if self._postgres:
            conn.execute(
                sa.text(
                    "SELECT pg_advisory_xact_lock(hashtext('veilmatch.audit:' || current_schema()))"
                )
            )
        # Row lock on PostgreSQL (harmless after the advisory lock); on SQLite this is the
        # first write of the transaction, which takes the database write lock.
        conn.execute(
            schema.head.update()
            .where(schema.head.c.id == 1)
            .values(tree_size=schema.head.c.tree_size)
        )

    def append_in(
        self, target: Any, events: Sequence[AuditEvent], *, now: datetime | None = None
    ) -> list[Receipt]:
        """Append ``events`` inside the caller's transaction (a ``Connection`` or ORM
        ``Session``): the caller's record and these leaves commit together or not at all.

        On SQLite call this before the transaction's first read (or open it with
        ``BEGIN IMMEDIATE``) so the write lock can be taken. Raises
        :class:`~audit.errors.SequencerChainError` if the stored head is not one this
        sequencer wrote (nothing is appended then).
        """
        conn = connection_of(target)
        if not events:
            return []
        for e in events:
            if not isinstance(e, AuditEvent):
                raise TypeError("append_in takes AuditEvent objects")
        self._lock(conn)
        size, stack = read_head(conn)
        prev_tag = anchor_tag(
            conn, self.sequencer_key, self.log_key, self.origin, size, frontier_root(size, stack)
        )
        receipts = self._write_leaves(conn, size, stack, events, now or datetime.now(UTC))
        new_size = size + len(events)
        root = frontier_root(new_size, stack)
        insert_range(
            conn, Range.seal(self.sequencer_key, self.origin, size, prev_tag, new_size, root)
        )
        conn.execute(
            schema.head.update()
            .where(schema.head.c.id == 1)
            .values(tree_size=new_size, frontier=b"".join(h for _, _, h in stack))
        )
        return receipts

    def _write_leaves(
        self,
        conn: Connection,
        size: int,
        stack: _Frontier,
        events: Sequence[AuditEvent],
        when: datetime,
    ) -> list[Receipt]:
        """Insert the entries, payloads and completed subtree hashes; ``stack`` becomes
        the new frontier."""
        entry_rows: list[dict[str, Any]] = []
        payload_rows: list[dict[str, Any]] = []
        node_rows: list[dict[str, Any]] = []
        receipts: list[Receipt] = []
        for offset, event in enumerate(events):
            seq = size + offset
            header, blob = build_leaf(seq, when, event, self._rng)
            leaf = header.to_bytes()
            lh = hash_leaf(leaf)
            entry_rows.append(
                {"seq": seq, "event_type": header.type, "leaf": leaf, "leaf_hash": lh}
            )
            payload_rows.append({"seq": seq, "blob": blob})
            receipts.append(Receipt(seq, lh))
            level, idx, acc = 0, seq, lh
            while stack and stack[-1][0] == level:
                acc = hash_children(stack.pop()[2], acc)
                level += 1
                idx >>= 1
                node_rows.append({"level": level, "idx": idx, "hash": acc})
            stack.append((level, idx, acc))
        for table, rows in (
            (schema.entries, entry_rows),
            (schema.payloads, payload_rows),
            (schema.nodes, node_rows),
        ):
            for i in range(0, len(rows), _CHUNK):
                conn.execute(table.insert(), rows[i : i + _CHUNK])
        return receipts

    def delete_payloads_in(
        self,
        target: Any,
        seqs: Iterable[int],
        *,
        actor: str,
        reason: str,
        retention_days: float | None = None,
        policy_digest: str | None = None,
        decision_id: str | None = None,
        now: datetime | None = None,
    ) -> list[Receipt]:
        """Delete the payloads of ``seqs`` (retention) and log that, in the caller's
        transaction.

        The ``retention.delete`` events record the ``deleted`` ranges, the
        ``retention_days`` period in force and (in the header) the ``policy_digest`` of
        the policy that set it: the verifier checks from the log alone that every
        deleted payload was at least that old. Payloads of retention events are kept:
        they are what lets a verifier accept the missing payloads.
        """
        conn = connection_of(target)
        self._lock(conn)
        wanted = sorted(set(seqs))
        if not wanted:
            return []
        present = self._delete_present(conn, wanted)
        ranges = _ranges(present)
        extra: dict[str, Any] = {} if retention_days is None else {"retention_days": retention_days}
        events = [
            AuditEvent(
                EventType.RETENTION_DELETE,
                actor,
                payload={"deleted": ranges[i : i + _RANGES_PER_EVENT], "reason": reason, **extra},
                policy_digest=policy_digest,
                decision_id=decision_id,
            )
            for i in range(0, max(len(ranges), 1), _RANGES_PER_EVENT)
        ]
        return self.append_in(conn, events, now=now)

    @staticmethod
    def _delete_present(conn: Connection, wanted: list[int]) -> list[int]:
        """Delete the payloads of ``wanted`` that exist, retention events' excepted."""
        protected = {
            r.seq
            for r in conn.execute(
                sa.select(schema.entries.c.seq).where(
                    schema.entries.c.event_type == EventType.RETENTION_DELETE.value,
                    schema.entries.c.seq.in_(wanted),
                )
            )
        }
        present: list[int] = []
        for i in range(0, len(wanted), _CHUNK):
            chunk = [s for s in wanted[i : i + _CHUNK] if s not in protected]
            present += [
                r.seq
                for r in conn.execute(
                    sa.select(schema.payloads.c.seq).where(schema.payloads.c.seq.in_(chunk))
                )
            ]
            conn.execute(schema.payloads.delete().where(schema.payloads.c.seq.in_(chunk)))
        return present

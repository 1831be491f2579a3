"""The audit log over SQL: one sequencer, persisted tree hashes, signed checkpoints.

Example::

    log = AuditLog(engine, load_signer(key_path))          # origin = the key's name
    [receipt] = log.append([AuditEvent(EventType.ADMIN, "officer:o-1", payload={...})])
    with engine.begin() as conn:                            # the caller's transaction
        conn.execute(my_record_insert)
        log.append_in(conn, [event])                        # same commit, or neither
    log.maybe_checkpoint()                                  # sign a checkpoint if due

Invariants:

- Appends are serialised: on PostgreSQL a transaction-scoped advisory lock plus the
  ``audit_head`` row lock; on SQLite the database write lock (our own transactions
  start with ``BEGIN IMMEDIATE``). ``seq`` is therefore gap-free and dense.
- ``append`` acknowledges (returns receipts) only after its commit; ``append_in``
  receipts are valid once the *caller* commits.
- Every perfect subtree hash at level ≥ 1 is written in the same transaction as the
  leaf completing it, so proofs and tiles for any size ≤ the tree size are O(log n)
  reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from audit import schema
from audit.checkpoint import Checkpoint, SignedCheckpoint
from audit.errors import (
    LogStateError,
    NotFoundError,
    ProofPreconditionError,
    SignatureError,
)
from audit.events import AuditEvent, EventType, LeafHeader, build_leaf
from audit.note import Note, NoteSigner, NoteVerifier, parse_note
from audit.rfc9162 import (
    HASH_SIZE,
    Node,
    consistency_plan,
    fold,
    hash_children,
    hash_leaf,
    inclusion_plan,
    root_plan,
)
from audit.tiles import (
    CHECKPOINT_PATH,
    CHECKPOINTS_PATH,
    TILE_HEIGHT,
    TILE_WIDTH,
    TilePath,
    encode_bundle,
    parse_path,
)

__all__ = ["AuditLog", "Entry", "InclusionProof", "Receipt"]

#: Rows per INSERT batch; keeps statements below parameter limits on both backends.
_CHUNK = 2000
#: Retention ranges per deletion event (keeps each payload well below its size limit).
_RANGES_PER_EVENT = 200


@dataclass(frozen=True)
class Receipt:
    """Proof of acceptance: the entry's ``seq`` and ``leaf_hash``.

    Durable once the transaction that produced it committed. An inclusion proof for it
    exists from the first checkpoint whose size exceeds ``seq``.
    """

    seq: int
    leaf_hash: bytes


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


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted unique ints → ``[[start, end_exclusive], …]``."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and out[-1][1] == s:
            out[-1][1] = s + 1
        else:
            out.append([s, s + 1])
    return out


class AuditLog:
    """The tamper-evident audit log stored in ``engine``'s database.

    ``signer`` is the log's Ed25519 note key; ``origin`` (default: the key name) is the
    checkpoint origin line. A checkpoint is due when ``checkpoint_every`` entries or
    ``checkpoint_interval`` have passed since the last one. ``rng`` supplies payload
    nonces (injectable for deterministic tests).
    """

    def __init__(
        self,
        engine: Engine,
        signer: NoteSigner,
        origin: str | None = None,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval: timedelta = timedelta(seconds=10),
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.origin = origin or signer.name
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self._rng = rng
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    def from_settings(cls, engine: Engine, settings: Any, **kwargs: Any) -> AuditLog:
        """The log with its key read from ``<key_dir>/audit-log.key`` (origin = key name)."""
        from pathlib import Path

        from audit.keys import LOG_KEY_FILE, load_signer

        return cls(engine, load_signer(Path(settings.key_dir) / LOG_KEY_FILE), **kwargs)

    # ---------------------------------------------------------------- transactions

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """Our own write transaction, holding the sequencer lock from its first statement."""
        with self.engine.connect() as conn:
            if not self._postgres:
                # Take SQLite's write lock now: a deferred transaction that reads first
                # could not upgrade after a concurrent commit.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

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

    # ---------------------------------------------------------------- appending

    def append(self, events: Sequence[AuditEvent], *, now: datetime | None = None) -> list[Receipt]:
        """Append ``events`` in one transaction; return receipts after it committed.

        Then issues a checkpoint if one is due (see :meth:`maybe_checkpoint`).
        """
        with self._write() as conn:
            receipts = self.append_in(conn, events, now=now)
        self.maybe_checkpoint(now=now)
        return receipts

    def append_in(
        self, target: Any, events: Sequence[AuditEvent], *, now: datetime | None = None
    ) -> list[Receipt]:
        """Append ``events`` inside the caller's transaction (a ``Connection`` or ORM ``Session``).

        The caller's record and these leaves commit together or not at all. Receipts are
        valid only once the caller commits. On SQLite call this before the transaction's
        first read (or open it with ``BEGIN IMMEDIATE``) so the write lock can be taken.
        """
        conn: Connection = target if isinstance(target, Connection) else target.connection()
        if not events:
            return []
        for e in events:
            if not isinstance(e, AuditEvent):
                raise TypeError("append_in takes AuditEvent objects")
        self._lock(conn)
        when = now or _utcnow()
        row = conn.execute(
            sa.select(schema.head.c.tree_size, schema.head.c.frontier).where(schema.head.c.id == 1)
        ).one()
        size, frontier_blob = int(row.tree_size), bytes(row.frontier)
        plan = root_plan(size)
        if len(frontier_blob) != HASH_SIZE * len(plan):
            raise LogStateError("audit_head frontier does not match the tree size")
        stack: list[tuple[int, int, bytes]] = [
            (lvl, idx, frontier_blob[i * HASH_SIZE : (i + 1) * HASH_SIZE])
            for i, (lvl, idx) in enumerate(plan)
        ]
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
        conn.execute(
            schema.head.update()
            .where(schema.head.c.id == 1)
            .values(tree_size=size + len(events), frontier=b"".join(h for _, _, h in stack))
        )
        return receipts

    def delete_payloads(
        self,
        seqs: Iterable[int],
        *,
        actor: str,
        reason: str,
        policy_digest: str | None = None,
        decision_id: str | None = None,
        now: datetime | None = None,
    ) -> list[Receipt]:
        """Delete the payloads of ``seqs`` (retention) and log that, in one transaction.

        Payloads of retention-deletion events themselves are kept: they are what lets a
        verifier accept the missing payloads. Returns the deletion events' receipts.
        """
        with self._write() as conn:
            receipts = self.delete_payloads_in(
                conn,
                seqs,
                actor=actor,
                reason=reason,
                policy_digest=policy_digest,
                decision_id=decision_id,
                now=now,
            )
        self.maybe_checkpoint(now=now)
        return receipts

    def delete_payloads_in(
        self,
        target: Any,
        seqs: Iterable[int],
        *,
        actor: str,
        reason: str,
        policy_digest: str | None = None,
        decision_id: str | None = None,
        now: datetime | None = None,
    ) -> list[Receipt]:
        """:meth:`delete_payloads` inside the caller's transaction."""
        conn: Connection = target if isinstance(target, Connection) else target.connection()
        self._lock(conn)
        wanted = sorted(set(seqs))
        if not wanted:
            return []
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
        ranges = _ranges(present)
        events = [
            AuditEvent(
                EventType.RETENTION_DELETE,
                actor,
                payload={"deleted": ranges[i : i + _RANGES_PER_EVENT], "reason": reason},
                policy_digest=policy_digest,
                decision_id=decision_id,
            )
            for i in range(0, max(len(ranges), 1), _RANGES_PER_EVENT)
        ]
        return self.append_in(conn, events, now=now)

    # ---------------------------------------------------------------- checkpoints

    def tree_size(self) -> int:
        """Number of committed entries."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(schema.head.c.tree_size).where(schema.head.c.id == 1)
                ).scalar_one()
            )

    def _last_checkpoint_row(self, conn: Connection) -> Any:
        return conn.execute(
            sa.select(schema.checkpoints).order_by(schema.checkpoints.c.tree_size.desc()).limit(1)
        ).first()

    def maybe_checkpoint(self, *, now: datetime | None = None) -> SignedCheckpoint | None:
        """Issue a checkpoint if ``checkpoint_every`` entries or ``checkpoint_interval`` passed.

        Call it from a timer too: the interval rule only fires when something calls.
        """
        when = now or _utcnow()
        with self.engine.connect() as conn:
            size = int(
                conn.execute(
                    sa.select(schema.head.c.tree_size).where(schema.head.c.id == 1)
                ).scalar_one()
            )
            last = self._last_checkpoint_row(conn)
        last_size = int(last.tree_size) if last else -1
        if size <= last_size:
            return None
        issued = last.issued_at if last else None
        if issued is not None and issued.tzinfo is None:
            issued = issued.replace(tzinfo=UTC)
        due = (
            last is None
            or size - last_size >= self.checkpoint_every
            or (issued is not None and when - issued >= self.checkpoint_interval)
        )
        return self.checkpoint(now=when) if due else None

    def checkpoint(self, *, now: datetime | None = None) -> SignedCheckpoint:
        """Sign and store a checkpoint for the current tree (idempotent per size)."""
        when = now or _utcnow()
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(schema.head.c.tree_size, schema.head.c.frontier).where(
                    schema.head.c.id == 1
                )
            ).one()
        size, blob = int(row.tree_size), bytes(row.frontier)
        plan = root_plan(size)
        hashes = {n: blob[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i, n in enumerate(plan)}
        signed = SignedCheckpoint.sign(
            Checkpoint(self.origin, size, fold(plan, hashes)), self.signer
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    schema.checkpoints.insert().values(
                        tree_size=size, note=signed.to_bytes(), issued_at=when
                    )
                )
        except IntegrityError:
            return self.checkpoint_at(size)
        return signed

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

    def latest_checkpoint(self) -> SignedCheckpoint:
        """The newest checkpoint (with cosignatures); raise if none was issued yet."""
        with self.engine.connect() as conn:
            last = self._last_checkpoint_row(conn)
        if last is None:
            raise LogStateError("no checkpoint has been issued yet")
        return self.checkpoint_at(int(last.tree_size))

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

    def add_cosignatures(
        self, cosigned: bytes, witnesses: Sequence[NoteVerifier], *, now: datetime | None = None
    ) -> list[str]:
        """Store the cosignatures in ``cosigned`` (a checkpoint note a witness signed).

        The note text must equal a checkpoint this log issued; only cosignatures that
        verify under one of ``witnesses`` are kept. Returns the witness names stored.
        """
        note = parse_note(cosigned)
        cp = Checkpoint.from_bytes(note.text)
        ours = self.checkpoint_at(cp.size)
        if ours.note.text != note.text:
            raise SignatureError(f"cosigned checkpoint at size {cp.size} is not ours")
        stored: list[str] = []
        when = now or _utcnow()
        with self.engine.begin() as conn:
            for sig in note.signatures:
                for w in witnesses:
                    if w.sig_type != 0x04 or not w.matches(sig):
                        continue
                    w.verify(note.text, sig)
                    signer_id = f"{w.name}+{w.key_id.hex()}"
                    exists = conn.execute(
                        sa.select(schema.cosignatures.c.signer).where(
                            schema.cosignatures.c.tree_size == cp.size,
                            schema.cosignatures.c.signer == signer_id,
                        )
                    ).first()
                    if exists is None:
                        conn.execute(
                            schema.cosignatures.insert().values(
                                tree_size=cp.size,
                                signer=signer_id,
                                line=sig.line(),
                                received_at=when,
                            )
                        )
                    stored.append(w.name)
        if not stored:
            raise SignatureError("no cosignature from a known witness key")
        return stored

    # ---------------------------------------------------------------- reading

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

    # ---------------------------------------------------------------- static (tlog-tiles)

    def read_static(self, path: str) -> bytes:
        """Bytes served at ``<prefix>/<path>`` (see :mod:`audit.tiles` for the paths).

        Tiles and bundles are immutable once their range is complete; ``checkpoint``
        and ``veilmatch/checkpoints`` change as the log grows. Raises
        :class:`NotFoundError` for unknown paths or tiles beyond the tree.
        """
        clean = path.strip("/")
        if clean == CHECKPOINT_PATH:
            return self.latest_checkpoint().to_bytes()
        if clean == CHECKPOINTS_PATH:
            return self.checkpoints_bundle()
        return self.read_tile(parse_path(clean))

    def checkpoints_bundle(self, max_size: int | None = None) -> bytes:
        """Every checkpoint (with cosignatures), oldest first, uint32 length-prefixed."""
        notes = [
            self.checkpoint_at(s).to_bytes()
            for s in self.checkpoint_sizes()
            if max_size is None or s <= max_size
        ]
        return encode_bundle(notes, 4)

    def read_tile(self, tile: TilePath) -> bytes:
        """One hash tile, entry bundle or payload bundle (may be short if rows are missing)."""
        tree_level = tile.level * TILE_HEIGHT
        first = tile.index * TILE_WIDTH
        last = first + tile.width  # exclusive, in units of tree-level nodes
        if (last << tree_level) > self.tree_size():
            raise NotFoundError(f"tile {tile.to_path()} is beyond the tree")
        with self.engine.connect() as conn:
            if tile.kind == "entries":
                rows = conn.execute(
                    sa.select(schema.entries.c.leaf)
                    .where(schema.entries.c.seq >= first, schema.entries.c.seq < last)
                    .order_by(schema.entries.c.seq)
                ).scalars()
                return encode_bundle([bytes(x) for x in rows], 2)
            if tile.kind == "payloads":
                blobs = {
                    int(r.seq): bytes(r.blob)
                    for r in conn.execute(
                        sa.select(schema.payloads.c.seq, schema.payloads.c.blob).where(
                            schema.payloads.c.seq >= first, schema.payloads.c.seq < last
                        )
                    )
                }
                return encode_bundle([blobs.get(s, b"") for s in range(first, last)], 4)
            if tree_level == 0:
                rows = conn.execute(
                    sa.select(schema.entries.c.leaf_hash)
                    .where(schema.entries.c.seq >= first, schema.entries.c.seq < last)
                    .order_by(schema.entries.c.seq)
                ).scalars()
            else:
                rows = conn.execute(
                    sa.select(schema.nodes.c.hash)
                    .where(
                        schema.nodes.c.level == tree_level,
                        schema.nodes.c.idx >= first,
                        schema.nodes.c.idx < last,
                    )
                    .order_by(schema.nodes.c.idx)
                ).scalars()
            return b"".join(bytes(h) for h in rows)


def payload_sha256(blob: bytes) -> str:
    """Hex SHA-256 of a payload blob, as in the leaf header's ``payload_sha256``."""
    return hashlib.sha256(blob).hexdigest()


def verifier_for(note: Note, verifiers: Sequence[NoteVerifier]) -> list[NoteVerifier]:
    """The verifiers among ``verifiers`` that have a signature line in ``note``."""
    return [v for v in verifiers if any(v.matches(s) for s in note.signatures)]

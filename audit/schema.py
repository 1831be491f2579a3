"""The audit tables (SQLAlchemy Core). The migration ``0002_audit`` creates them.

- ``audit_entries``: one row per leaf: ``seq``, ``event_type`` (for queries by type),
  ``leaf`` (the canonical header bytes) and ``leaf_hash``. Append-only.
- ``audit_payloads``: the deletable payload blob per ``seq``. Never updated; rows are
  deleted only by :meth:`audit.log.AuditLog.delete_payloads`, which logs the deletion.
- ``audit_nodes``: every perfect subtree hash at level ≥ 1 (``level``, ``idx``), so any
  proof or tile is O(log n) or one range read. Append-only.
- ``audit_head``: one row (``id`` = 1): the tree size and its right-edge ("frontier")
  hashes; the sequencer's lock target and cache, never trusted by a verifier.
- ``audit_ranges``: one row per append transaction: the range ``[start_size,
  end_size)`` it added, the root at ``end_size``, and the sequencer's tag chaining it to
  the previous range (:mod:`audit.sequencer`). Append-only (migration
  ``0006_audit_sequencer``).
- ``audit_checkpoints``: every signed checkpoint issued; append-only.
- ``audit_cosignatures``: witness cosignature lines per checkpoint; append-only.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

entries = sa.Table(
    "audit_entries",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("leaf", sa.LargeBinary, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    sa.Index("ix_audit_entries_event_type", "event_type", "seq"),  # entries by type, in order
)

payloads = sa.Table(
    "audit_payloads",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("blob", sa.LargeBinary, nullable=False),
)

nodes = sa.Table(
    "audit_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tree_size", sa.BigInteger, nullable=False),
    sa.Column("frontier", sa.LargeBinary, nullable=False),
)

ranges = sa.Table(
    "audit_ranges",
    metadata,
    sa.Column("end_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("start_size", sa.BigInteger, nullable=False),
    sa.Column("prev_tag", sa.LargeBinary, nullable=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("tag", sa.LargeBinary, nullable=False),
)

checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("note", sa.LargeBinary, nullable=False),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
)

cosignatures = sa.Table(
    "audit_cosignatures",
    metadata,
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("signer", sa.String(300), primary_key=True),
    sa.Column("line", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

#: Tables whose rows may never change or disappear.
APPEND_ONLY = (
    "audit_entries",
    "audit_nodes",
    "audit_ranges",
    "audit_checkpoints",
    "audit_cosignatures",
)

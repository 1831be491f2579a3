"""The SQL log on both backends: appends, one-transaction append_in, proofs, tiles,
checkpoint policy, retention deletion, and the database refusing changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from audit import schema
from audit.errors import LogStateError, NotFoundError, ProofPreconditionError
from audit.events import EventType, LeafHeader
from audit.rfc9162 import (
    consistency_plan,
    fold,
    hash_leaf,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from audit.sources import TileHashReader
from audit.tiles import decode_bundle
from tests.audit.conftest import T0, event, fill, make_log


def test_append_returns_dense_receipts_after_commit(audit_log):
    r1 = audit_log.append([event(0), event(1)], now=T0)
    r2 = audit_log.append([event(2)], now=T0)
    assert [r.seq for r in r1 + r2] == [0, 1, 2]
    assert audit_log.tree_size() == 3
    stored = audit_log.entries()
    assert [e.seq for e in stored] == [0, 1, 2]
    assert stored[1].leaf_hash == r1[1].leaf_hash == hash_leaf(stored[1].leaf)
    assert stored[1].header.actor == "gate:gate-1"
    assert stored[1].payload == {"n": 1, "gate": "gate-1", "decision": "proceed"}
    assert LeafHeader.from_bytes(stored[0].leaf).time == "2025-01-02T03:04:05.678901Z"


def test_append_in_commits_with_the_callers_record_or_not_at_all(engine, audit_log):
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE svc_record (id INTEGER PRIMARY KEY, note TEXT)"))
    # Rolled back: neither the record nor the leaf exists, and no seq is burned.
    with pytest.raises(RuntimeError), engine.begin() as conn:
        audit_log.append_in(conn, [event(0)], now=T0)
        conn.execute(text("INSERT INTO svc_record VALUES (1, 'x')"))
        raise RuntimeError("service failed after writing")
    assert audit_log.tree_size() == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM svc_record")).scalar_one() == 0
    # Committed through an ORM session: both exist.
    with Session(engine) as session:
        receipts = audit_log.append_in(session, [event(1)], now=T0)
        session.execute(text("INSERT INTO svc_record VALUES (2, 'y')"))
        session.commit()
    assert receipts[0].seq == 0
    assert audit_log.tree_size() == 1
    assert audit_log.entries()[0].payload["n"] == 1


def test_proofs_verify_against_signed_checkpoints(audit_log):
    fill(audit_log, 700, batch=97)
    cp_small = audit_log.checkpoint(now=T0)
    fill(audit_log, 333, start=700)
    cp = audit_log.checkpoint(now=T0)
    n, root = cp.checkpoint.size, cp.checkpoint.root
    assert n == 1033
    leaves = [e.leaf_hash for e in audit_log.entries(limit=5000)]
    assert root == root_from_leaf_hashes(leaves)
    for seq in (0, 1, 255, 256, 511, 699, 1032):
        p = audit_log.inclusion_proof(seq)
        assert p.size == n
        verify_inclusion(seq, n, p.leaf_hash, p.hashes, root)
    old = cp_small.checkpoint
    verify_consistency(old.size, n, old.root, root, audit_log.consistency_proof(old.size))
    for m in (1, 2, 256, 512, 1033):
        verify_consistency(m, n, audit_log.root_at(m), root, audit_log.consistency_proof(m, n))
    with pytest.raises(ProofPreconditionError):
        audit_log.inclusion_proof(5, 2000)
    with pytest.raises(ProofPreconditionError):
        audit_log.inclusion_proof(1033, 1033)


class _LogSource:
    def __init__(self, log):
        self.log = log

    def read(self, path):
        return self.log.read_static(path)


def test_tiles_serve_the_same_tree(audit_log):
    fill(audit_log, 70_000 // 100, batch=700)  # 700 entries
    cp = audit_log.checkpoint(now=T0)
    n = cp.checkpoint.size
    tile0 = audit_log.read_static("tile/0/001")
    assert len(tile0) == 256 * 32
    assert tile0[:32] == audit_log.entries(256, 257)[0].leaf_hash
    assert len(audit_log.read_static("tile/0/002.p/188")) == 188 * 32
    assert len(audit_log.read_static("tile/1/000.p/2")) == 64
    bundle = decode_bundle(audit_log.read_static("tile/entries/002.p/188"), 2)
    assert len(bundle) == 188 and LeafHeader.from_bytes(bundle[0]).seq == 512
    with pytest.raises(NotFoundError):
        audit_log.read_static("tile/0/003")
    with pytest.raises(NotFoundError):
        audit_log.read_static("tile/0/../../etc/passwd")
    assert audit_log.read_static("checkpoint") == cp.to_bytes()
    # Proofs computed from tiles alone equal the SQL proofs.
    reader = TileHashReader(_LogSource(audit_log), n)
    plan = consistency_plan(300, n)
    from_tiles = [fold(run, reader.nodes([x for x in run])) for run in plan]
    assert from_tiles == audit_log.consistency_proof(300, n)


def test_checkpoint_policy_batch_and_timer(engine):
    log = make_log(engine, checkpoint_every=50, checkpoint_interval=timedelta(seconds=30))
    log.append([event(i) for i in range(10)], now=T0)
    assert log.checkpoint_sizes() == [10]  # first checkpoint as soon as there is something
    log.append([event(i) for i in range(20)], now=T0 + timedelta(seconds=1))
    assert log.checkpoint_sizes() == [10]
    log.append([event(i) for i in range(30)], now=T0 + timedelta(seconds=2))
    assert log.checkpoint_sizes() == [10, 60]  # batch size reached
    log.append([event(0)], now=T0 + timedelta(seconds=3))
    assert log.maybe_checkpoint(now=T0 + timedelta(seconds=10)) is None
    assert log.maybe_checkpoint(now=T0 + timedelta(seconds=33)) is not None  # timer
    assert log.checkpoint_sizes() == [10, 60, 61]
    assert log.maybe_checkpoint(now=T0 + timedelta(hours=1)) is None  # nothing new
    assert log.checkpoint().checkpoint.size == 61  # idempotent per size


def test_no_checkpoint_yet(audit_log):
    with pytest.raises(LogStateError):
        audit_log.latest_checkpoint()


def test_entries_by_range_and_type(audit_log):
    audit_log.append(
        [event(0), event(1, EventType.ALERT_RAISED), event(2), event(3, EventType.ALERT_RAISED)],
        now=T0,
    )
    alerts = audit_log.entries(types=[EventType.ALERT_RAISED])
    assert [e.seq for e in alerts] == [1, 3]
    assert [e.seq for e in audit_log.entries(1, 3)] == [1, 2]
    assert [e.seq for e in audit_log.entries(0, types=["alert.raised"], limit=1)] == [1]


def test_retention_deletion_is_logged_and_keeps_hashes(audit_log):
    fill(audit_log, 30)
    receipts = audit_log.delete_payloads(
        [*range(5, 10), 20], actor="system", reason="retention:crossing-records", now=T0
    )
    assert [r.seq for r in receipts] == [30]
    deletion = audit_log.entries(30, 31)[0]
    assert deletion.header.type == "retention.delete"
    assert deletion.payload == {
        "deleted": [[5, 10], [20, 21]],
        "reason": "retention:crossing-records",
    }
    assert audit_log.entries(5, 6)[0].payload is None
    assert audit_log.entries(4, 5)[0].payload is not None
    # A retention event's own payload is never deleted.
    audit_log.delete_payloads([30], actor="system", reason="retention:again", now=T0)
    assert audit_log.entries(30, 31)[0].payload is not None


@pytest.mark.parametrize(
    "table", ["audit_entries", "audit_nodes", "audit_ranges", "audit_checkpoints"]
)
def test_database_refuses_update_and_delete(audit_log, engine, table):
    fill(audit_log, 10)
    audit_log.checkpoint(now=T0)
    col = {
        "audit_entries": "seq",
        "audit_nodes": "idx",
        "audit_ranges": "end_size",
        "audit_checkpoints": "tree_size",
    }[table]
    for stmt in (f"UPDATE {table} SET {col} = {col} + 100", f"DELETE FROM {table}"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(stmt))
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {table}"))
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.entries)).scalar_one() == 10
        )


def test_database_refuses_payload_update_but_allows_delete(audit_log, engine):
    fill(audit_log, 3)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_payloads SET blob = blob WHERE seq = 1"))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_payloads WHERE seq = 1"))

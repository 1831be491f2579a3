"""Tampering is detected and named: rows changed, deleted, reordered or inserted
directly in SQL (after the attacker disabled the append-only triggers), a fork served
to two verifiers, and truncation. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
import rfc8785
from sqlalchemy import text

from audit.errors import (
    EntryMissingError,
    EntryTamperedError,
    ForkError,
    PayloadError,
    RangeTamperedError,
    TruncationError,
    VerificationError,
)
from audit.export import export_log
from audit.rfc9162 import hash_leaf
from audit.sources import DirectorySource
from audit.verify import LogVerificationError, verify_log
from tests.audit.conftest import T0, disable_guards, event, fill, log_signer, make_log

SIZE = 600  # three entry bundles (256 + 256 + 88); checkpoints at 100 (first append), 300, 600


@pytest.fixture
def built(engine, tmp_path):
    log = make_log(engine)
    fill(log, 300)
    log.checkpoint(now=T0)
    fill(log, SIZE - 300, start=300)
    log.checkpoint(now=T0)
    return log


def _verify(log, tmp_path: Path, name: str, state: Path | None = None):
    out = tmp_path / name
    export_log(log, out)
    return verify_log(DirectorySource(out), log_signer().verifier(), state_path=state)


def _problems(log, tmp_path, name, state=None) -> list[VerificationError]:
    with pytest.raises(LogVerificationError) as info:
        _verify(log, tmp_path, name, state)
    return info.value.problems


def _leaf(engine, seq: int) -> bytes:
    with engine.connect() as conn:
        return bytes(
            conn.execute(
                text("SELECT leaf FROM audit_entries WHERE seq = :s"), {"s": seq}
            ).scalar_one()
        )


def _forged_leaf(engine, seq: int, **changes) -> bytes:
    obj = json.loads(_leaf(engine, seq))
    obj.update(changes)
    return rfc8785.dumps(obj)


def test_untouched_log_verifies(built, tmp_path):
    report = _verify(built, tmp_path, "ok")
    assert report.size == SIZE and report.entries_checked == SIZE
    assert report.payloads_present == SIZE and report.checkpoints_checked == 3


def test_changed_entry_is_named(built, engine, tmp_path):
    disable_guards(engine)
    forged = _forged_leaf(engine, 417, actor="officer:someone-else")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET leaf = :l WHERE seq = 417"), {"l": forged})
    problems = _problems(built, tmp_path, "changed")
    assert isinstance(problems[0], EntryTamperedError) and problems[0].seq == 417
    assert "changed after append" in str(problems[0])


def test_changed_entry_with_recomputed_leaf_hash_is_named_by_range(built, engine, tmp_path):
    disable_guards(engine)
    forged = _forged_leaf(engine, 417, type="admin")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_entries SET leaf = :l, leaf_hash = :h WHERE seq = 417"),
            {"l": forged, "h": hash_leaf(forged)},
        )
    problems = _problems(built, tmp_path, "changed2")
    ranges = [(p.start, p.end) for p in problems if isinstance(p, RangeTamperedError)]
    # The level-1 tile hash over entries [256, 512) no longer matches, and the signed
    # root of size 600 fails while the one of size 300 still holds.
    assert (256, 512) in ranges
    assert (300, 600) in ranges
    assert all(start <= 417 < end for start, end in ranges)


def test_deleted_entry_is_named(built, engine, tmp_path):
    disable_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entries WHERE seq = 123"))
    problems = _problems(built, tmp_path, "deleted")
    assert isinstance(problems[0], EntryMissingError) and problems[0].seq == 123


def test_reordered_entries_are_named(built, engine, tmp_path):
    disable_guards(engine)
    a, b = _leaf(engine, 200), _leaf(engine, 201)
    with engine.begin() as conn:
        for seq, leaf in ((200, b), (201, a)):
            conn.execute(
                text("UPDATE audit_entries SET leaf = :l, leaf_hash = :h WHERE seq = :s"),
                {"l": leaf, "h": hash_leaf(leaf), "s": seq},
            )
    problems = _problems(built, tmp_path, "reordered")
    assert isinstance(problems[0], EntryTamperedError) and problems[0].seq == 200
    assert "reordered" in str(problems[0])


def test_inserted_entry_is_named(built, engine, tmp_path):
    disable_guards(engine)
    forged = _forged_leaf(engine, 150, actor="officer:forger")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET seq = seq + 1000000 WHERE seq >= 150"))
        conn.execute(text("UPDATE audit_entries SET seq = seq - 999999 WHERE seq >= 1000000"))
        conn.execute(
            text(
                "INSERT INTO audit_entries (seq, event_type, leaf, leaf_hash) "
                "VALUES (150, 'admin', :l, :h)"
            ),
            {"l": forged, "h": hash_leaf(forged)},
        )
        conn.execute(text("UPDATE audit_head SET tree_size = tree_size + 1"))
    problems = _problems(built, tmp_path, "inserted")
    first = problems[0]
    assert isinstance(first, EntryTamperedError) and first.seq == 151
    assert "inserted at or before position 151" in str(first)
    ranges = [(p.start, p.end) for p in problems if isinstance(p, RangeTamperedError)]
    assert (100, 300) in ranges  # the checkpoint of size 100 still holds, 300 does not


def test_truncated_log_is_named(built, engine, tmp_path):
    disable_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entries WHERE seq >= 550"))
    problems = _problems(built, tmp_path, "truncated-rows")
    assert isinstance(problems[0], EntryMissingError) and problems[0].seq == 550
    assert "ends early" in str(problems[0])


def test_rollback_to_an_older_checkpoint_is_truncation(engine, tmp_path):
    log = make_log(engine)
    fill(log, 300)
    log.checkpoint(now=T0)
    export_log(log, tmp_path / "old")
    fill(log, 300, start=300)
    log.checkpoint(now=T0)
    state = tmp_path / "state.json"
    _verify(log, tmp_path, "new", state)
    # Later the log (or a man in the middle) serves the older, genuinely signed view.
    with pytest.raises(LogVerificationError) as info:
        verify_log(DirectorySource(tmp_path / "old"), log_signer().verifier(), state_path=state)
    problem = info.value.problems[0]
    assert isinstance(problem, TruncationError)
    assert (problem.seen, problem.served) == (600, 300)
    assert "log truncated: size 300 < previously seen size 600" in str(problem)


def _other_engine(engine, tmp_path):
    """A second database with the same schema: the attacker's alternative history."""
    from core.db import make_engine
    from core.migrate import upgrade
    from core.settings import load_settings

    other = make_engine(
        load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'fork.db'}")
    )
    upgrade(other)
    return other


def test_fork_same_size_is_named(built, engine, tmp_path):
    state_a = tmp_path / "verifier-a.json"
    _verify(built, tmp_path, "view-a", state_a)
    # The same log key signs a different history of the same size for verifier B...
    forked = make_log(_other_engine(engine, tmp_path))
    fill(forked, 299)
    forked.append([event(9999)], now=T0)
    fill(forked, SIZE - 300, start=300)
    forked.checkpoint(now=T0)
    # ...and each view verifies on its own, but verifier A (state from view A) sees the fork.
    _verify(forked, tmp_path, "view-b-fresh", tmp_path / "verifier-b.json")
    problems = _problems(forked, tmp_path, "view-b", state_a)
    assert isinstance(problems[0], ForkError) and problems[0].size == SIZE
    assert "two different signed roots" in str(problems[0])


def test_fork_that_is_not_an_extension_is_named(built, engine, tmp_path):
    state_a = tmp_path / "verifier-a.json"
    _verify(built, tmp_path, "view-a", state_a)
    forked = make_log(_other_engine(engine, tmp_path))
    fill(forked, SIZE + 10, start=1)  # different content from the start, bigger
    forked.checkpoint(now=T0)
    problems = _problems(forked, tmp_path, "view-b", state_a)
    assert isinstance(problems[0], ForkError) and problems[0].size == SIZE
    assert "not an extension of the checkpoint of size 600" in str(problems[0])


def test_payload_changed_or_silently_deleted_is_named(built, engine, tmp_path):
    disable_guards(engine)
    blob = json.dumps({"nonce": "00", "payload": {"n": 1}}).encode()
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_payloads SET blob = :b WHERE seq = 7"), {"b": blob})
        conn.execute(text("DELETE FROM audit_payloads WHERE seq = 9"))
    problems = _problems(built, tmp_path, "payloads")
    named = {(type(p), p.seq) for p in problems if isinstance(p, PayloadError)}
    assert named == {(PayloadError, 7), (PayloadError, 9)}
    assert "changed" in str(problems[0]) and "without a retention deletion event" in str(
        problems[1]
    )


def test_retention_deletion_still_verifies(built, tmp_path):
    built.delete_payloads(
        range(10, 40),
        actor="system",
        reason="retention:90d",
        retention_days=90,
        now=T0 + timedelta(days=91),
    )
    built.checkpoint(now=T0)
    report = _verify(built, tmp_path, "retention")
    assert report.payloads_deleted == 30
    assert report.payloads_present == SIZE + 1 - 30


def test_forged_checkpoint_signature_is_rejected(built, tmp_path):
    out = tmp_path / "forged"
    export_log(built, out)
    cp = (out / "checkpoint").read_bytes()
    lines = cp.split(b"\n")
    lines[1] = b"601"
    (out / "checkpoint").write_bytes(b"\n".join(lines))
    with pytest.raises(LogVerificationError) as info:
        verify_log(DirectorySource(out), log_signer().verifier())
    assert info.value.problems[0].where == "checkpoint"
    assert "does not verify" in str(info.value)


def test_payload_hash_is_salted(built):
    # A deleted low-entropy payload cannot be recovered by hashing guesses.
    entry = built.entries(3, 4)[0]
    guess = rfc8785.dumps({"payload": entry.payload})
    assert hashlib.sha256(guess).hexdigest() != entry.header.payload_sha256

"""A database writer cannot forge audit history (issue 18, item 1), on SQLite and PostgreSQL.

The attack as found: with ordinary write access (no dropped triggers, no signing key),
delete one ``alert.review`` payload, append a ``retention.delete`` covering it and a fake
``alert.review``; the next checkpoint signed it and the verifier said OK. Each variant
below is refused by the appender or checkpointer, or named by the verifier.
"""

from __future__ import annotations

import logging
import os
import stat
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import text

from audit import schema
from audit.appender import Appender, frontier_root, read_head
from audit.checkpoint import Checkpoint, SignedCheckpoint
from audit.errors import (
    KeyFormatError,
    PayloadError,
    RetentionViolationError,
    SequencerChainError,
    SequencerKeyError,
)
from audit.events import AuditEvent, EventType
from audit.export import export_log
from audit.keys import FileSequencerKey, HmacSequencerKey, load_or_create_sequencer_key
from audit.note import NoteSigner
from audit.sequencer import Range, insert_range, range_ending_at
from audit.sources import DirectorySource
from audit.verify import LogVerificationError, verify_log
from core.db import write_transaction
from tests.audit.conftest import ORIGIN, T0, disable_guards, event, fill, log_signer, make_log

SEQUENCER = HmacSequencerKey(bytes(range(32, 64)))
ATTACKER = HmacSequencerKey(b"\xaa" * 32)
POLICY = "sha256-policy-a"


def _review(officer: str = "o-1", verdict: str = "confirmed") -> AuditEvent:
    return AuditEvent(
        EventType.ALERT_REVIEW,
        f"officer:{officer}",
        ("alert:al-1",),
        {"verdict": verdict},
        policy_digest=POLICY,
        decision_id="d-review",
    )


def _deletion(seq: int) -> AuditEvent:
    return AuditEvent(
        EventType.RETENTION_DELETE,
        "system",
        payload={"deleted": [[seq, seq + 1]], "reason": "retention", "retention_days": 183},
        policy_digest=POLICY,
    )


def forge(engine, events, *, key=None, when=T0) -> None:
    """What a database writer can do with the project's own leaf code: entries, payloads,
    tree hashes and head, all consistent, but without the sequencer key check (and, with
    ``key``, a range tagged by that foreign key)."""
    writer = Appender(engine, ORIGIN, key or ATTACKER, log_signer().verifier())
    with write_transaction(engine) as conn:
        size, stack = read_head(conn)
        previous = range_ending_at(conn, size)
        writer._write_leaves(conn, size, stack, events, when)
        end = size + len(events)
        if key is not None:
            prev_tag = previous.tag if previous else b""
            root = frontier_root(end, stack)
            insert_range(conn, Range.seal(key, ORIGIN, size, prev_tag, end, root))
        conn.execute(
            schema.head.update()
            .where(schema.head.c.id == 1)
            .values(tree_size=end, frontier=b"".join(h for _, _, h in stack))
        )


@pytest.fixture
def log(engine):
    alarms: list[SequencerChainError] = []
    audit_log = make_log(engine, sequencer=SEQUENCER, on_alarm=alarms.append)
    audit_log.append([AuditEvent(EventType.POLICY_LOAD, "system", policy_digest=POLICY)], now=T0)
    fill(audit_log, 20)
    audit_log.alarms = alarms  # type: ignore[attr-defined]
    return audit_log


def _problems(log, tmp_path) -> list[Any]:
    export_log(log, tmp_path / "export")
    with pytest.raises(LogVerificationError) as info:
        verify_log(DirectorySource(tmp_path / "export"), log_signer().verifier())
    return info.value.problems


def test_the_reported_attack_is_refused_and_named(log, engine, tmp_path, caplog):
    [review] = log.append([_review()], now=T0 + timedelta(hours=1))
    signed = log.checkpoint(now=T0).checkpoint.size
    # The attacker deletes the review's payload (allowed: retention deletes payloads)...
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_payloads WHERE seq = :s"), {"s": review.seq})
    # ...cannot use the project's appender (it checks the head with its own key)...
    other = make_log(engine, sequencer=ATTACKER)
    with pytest.raises(SequencerChainError, match="not written by this sequencer"):
        other.append([_deletion(review.seq), _review(verdict="dismissed")], now=T0)
    assert log.tree_size() == signed
    # ...so writes the rows directly: a deletion covering it and a fake review.
    forge(engine, [_deletion(review.seq), _review(verdict="dismissed")])
    with (
        caplog.at_level(logging.ERROR, logger="veilmatch.audit"),
        pytest.raises(SequencerChainError) as refused,
    ):
        log.checkpoint(now=T0)
    assert (refused.value.start, refused.value.end) == (signed, signed + 2)
    assert "entries not written by this log's sequencer" in str(refused.value)
    assert log.alarms == [refused.value]
    assert any(getattr(r, "alarm", None) == "audit.sequencer_chain" for r in caplog.records)
    assert log.latest_checkpoint().checkpoint.size == signed
    # The service's own appender will not build on the forged head either.
    with pytest.raises(SequencerChainError):
        log.append([event(99)], now=T0)
    # The verifier sees the signed log: the review's payload vanished without a deletion.
    [problem] = _problems(log, tmp_path)
    assert isinstance(problem, PayloadError) and problem.seq == review.seq
    assert "missing without a retention deletion event" in str(problem)


def test_a_second_log_with_another_key_is_never_signed(log, engine):
    signed = log.checkpoint(now=T0).checkpoint.size
    # Even a writer that tags its range (with the only key it has) is refused.
    forge(engine, [_review(officer="o-2")], key=ATTACKER)
    with pytest.raises(SequencerChainError, match="range tag does not verify") as refused:
        log.checkpoint(now=T0)
    assert (refused.value.start, refused.value.end) == (signed, signed + 1)
    with pytest.raises(SequencerChainError, match="range tag does not verify"):
        log.append([event(99)], now=T0)


def test_direct_inserts_between_two_sequencer_batches_are_refused(log, engine):
    signed = log.checkpoint(now=T0).checkpoint.size
    log.append([event(50)], now=T0)  # authenticated, not yet signed
    forge(engine, [_review(officer="o-3")])
    with pytest.raises(SequencerChainError) as refused:
        log.checkpoint(now=T0)
    assert (refused.value.start, refused.value.end) == (signed + 1, signed + 2)
    # Nothing after the forged row is appended, so no genuine entry can cover it.
    with pytest.raises(SequencerChainError):
        log.append([event(51)], now=T0)
    assert log.tree_size() == signed + 2


def test_a_fake_entry_in_the_middle_of_a_batch_is_refused(log, engine):
    """A writer who may even drop triggers rewrites one entry of a tagged batch and
    rebuilds its tree hashes and the head consistently: the tagged root no longer matches."""
    log.checkpoint(now=T0)
    with engine.connect() as conn:
        start, frontier = conn.execute(
            sa.select(schema.head.c.tree_size, schema.head.c.frontier)
        ).one()
    batch = [event(i) for i in range(100, 105)]
    log.append(batch, now=T0)
    disable_guards(engine)
    with engine.begin() as conn:
        for table in (schema.entries, schema.payloads):
            conn.execute(table.delete().where(table.c.seq >= start))
        nodes = conn.execute(sa.select(schema.nodes.c.level, schema.nodes.c.idx)).all()
        for level, idx in nodes:
            if (idx + 1) << level > start:  # subtree hashes the batch completed
                conn.execute(
                    schema.nodes.delete().where(
                        schema.nodes.c.level == level, schema.nodes.c.idx == idx
                    )
                )
        conn.execute(schema.head.update().values(tree_size=start, frontier=frontier))
    forge(engine, [*batch[:2], _review(officer="o-4"), *batch[3:]])
    with pytest.raises(SequencerChainError, match="differ from the sequencer's root"):
        log.checkpoint(now=T0)
    with pytest.raises(SequencerChainError, match="differ from the sequencer's root"):
        log.append([event(106)], now=T0)


@pytest.mark.parametrize(
    ("keywords", "named"),
    [
        ({"retention_days": 183, "policy_digest": POLICY}, "before its retention period of 183"),
        ({"policy_digest": POLICY}, "no retention period recorded"),
        (
            {"retention_days": 1, "policy_digest": "sha256-policy-b"},
            "deleted under policy sha256-policy-b, but policy sha256-policy-a was in force",
        ),
    ],
)
def test_a_premature_retention_deletion_is_named(log, tmp_path, keywords, named):
    """Even the sequencer's own deletion is checked: a fresh review deleted 3 days after
    it was recorded, with a 183-day period (or no period, or under a policy not in force)."""
    [review] = log.append([_review()], now=T0)
    [deletion] = log.delete_payloads(
        [review.seq, 5], actor="system", reason="retention", now=T0 + timedelta(days=3), **keywords
    )
    log.checkpoint(now=T0)
    problems = _problems(log, tmp_path)
    assert all(isinstance(p, RetentionViolationError) for p in problems)
    named_seqs = sorted(p.seq for p in problems)
    assert named_seqs == [5, review.seq] and {p.deleted_by for p in problems} == {deletion.seq}
    fresh = next(p for p in problems if p.seq == review.seq)
    assert named in str(fresh)
    assert str(fresh).startswith(f"payload of entry {review.seq}: deleted by entry {deletion.seq}")


def test_a_deletion_after_the_period_verifies(log, tmp_path):
    [review] = log.append([_review()], now=T0)
    log.delete_payloads(
        [review.seq],
        actor="system",
        reason="retention",
        retention_days=183,
        policy_digest=POLICY,
        now=T0 + timedelta(days=184),
    )
    log.checkpoint(now=T0)
    export_log(log, tmp_path / "ok")
    report = verify_log(DirectorySource(tmp_path / "ok"), log_signer().verifier())
    assert report.payloads_deleted == 1


def test_a_log_from_before_the_chain_continues_from_its_signed_checkpoint(engine):
    """Upgrading: entries without ranges, covered by a signed checkpoint, are the anchor;
    unsigned entries without ranges are not."""
    legacy = make_log(engine, sequencer=SEQUENCER)
    fill(legacy, 10)
    legacy.checkpoint(now=T0)
    disable_guards(engine)
    with engine.begin() as conn:
        conn.execute(schema.ranges.delete())
    legacy.append([event(10)], now=T0)
    assert legacy.checkpoint(now=T0).checkpoint.size == 11
    forge(engine, [event(11)])
    with engine.begin() as conn:
        conn.execute(schema.ranges.delete())
    with pytest.raises(SequencerChainError, match=r"entries \[11, 12\)"):
        legacy.append([event(12)], now=T0)


def test_a_checkpoint_not_signed_by_the_log_is_no_anchor(log, engine):
    log.checkpoint(now=T0)
    forge(engine, [event(77)])
    size = log.tree_size()
    fake = SignedCheckpoint.sign(Checkpoint(ORIGIN, size, bytes(32)), NoteSigner.generate(ORIGIN))
    with engine.begin() as conn:  # a checkpoint row the writer inserted
        conn.execute(
            schema.checkpoints.insert().values(tree_size=size, note=fake.to_bytes(), issued_at=T0)
        )
    with pytest.raises(SequencerChainError, match="not signed by this log"):
        log.append([event(78)], now=T0)
    with pytest.raises(SequencerChainError, match="last checkpoint is not ours"):
        log.checkpoint(now=T0)


def test_sequencer_key_file(tmp_path):
    path = tmp_path / "keys" / "audit-sequencer.key"
    key = load_or_create_sequencer_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tag = key.tag(b"range")
    load_or_create_sequencer_key(path).verify(b"range", tag)  # same key on the next start
    with pytest.raises(SequencerKeyError):
        key.verify(b"other range", tag)
    with pytest.raises(SequencerKeyError):
        SEQUENCER.verify(b"range", tag)
    assert "VEILMATCH+SEQUENCER" not in repr(key) and tag.hex() not in repr(key)
    with pytest.raises(KeyFormatError, match="not overwriting"):
        FileSequencerKey.generate(path)
    os.chmod(path, 0o640)
    with pytest.raises(KeyFormatError, match="group or others"):
        FileSequencerKey.load(path)

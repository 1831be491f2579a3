"""The oversight computations on a real audit log, on both database backends:
filters and paging, server-side proof checks (including a wrong key and a checkpoint
from another log), checkpoint history with a witness cosignature, policy timeline and
per-day counts."""

from __future__ import annotations

import datetime as dt

import pytest

from audit.events import AuditEvent, EventType
from audit.log import AuditLog
from audit.note import COSIGNATURE_V1, NoteSigner
from service.console import auditview

T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def _event(kind: EventType, actor: str, *subjects: str, **payload: object) -> AuditEvent:
    return AuditEvent(kind, actor, tuple(subjects), dict(payload))


@pytest.fixture
def log(engine) -> AuditLog:
    """A log with three days of activity: queries, decisions, an alert, two reviews,
    a deletion and two policy loads."""
    audit = AuditLog(engine, NoteSigner.generate("console.test/log"))
    audit.append([_event(EventType.POLICY_LOAD, "system", engine="embedded")], now=T0)
    for day in range(3):
        when = T0 + day * DAY
        audit.append(
            [
                _event(EventType.MATCH_QUERY, "gate:gate-a", "gate:gate-a", n=day),
                _event(EventType.MATCH_QUERY, "gate:gate-b", "gate:gate-b", n=day),
                _event(EventType.MATCH_DECISION, "gate:gate-a", "query:q1", "watchlist:e1", hits=1),
            ],
            now=when,
        )
    audit.append(
        [
            _event(EventType.ALERT_RAISED, "system", "alert:a1", gate_id="gate-a"),
            _event(EventType.ALERT_REVIEW, "officer:o1", "alert:a1", verdict="confirm"),
            _event(EventType.ALERT_REVIEW, "officer:o2", "alert:a1", verdict="dismiss"),
        ],
        now=T0 + 2 * DAY,
    )
    audit.checkpoint(now=T0 + 2 * DAY)
    audit.delete_payloads([1], actor="system", reason="retention", now=T0 + 2 * DAY)
    audit.append([_event(EventType.POLICY_LOAD, "system", engine="http")], now=T0 + 2 * DAY)
    audit.checkpoint(now=T0 + 2 * DAY)
    return audit


def test_browse_filters_and_pages_newest_first(log):
    everything = auditview.browse(log, auditview.EntryFilter())
    seqs = [e.seq for e in everything.entries]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == log.tree_size()
    assert everything.older is None

    reviews = auditview.browse(log, auditview.EntryFilter(event_type="alert.review"))
    assert [e.header.actor for e in reviews.entries] == ["officer:o2", "officer:o1"]

    gate_b = auditview.browse(log, auditview.EntryFilter(gate="gate-b")).entries
    assert len(gate_b) == 3 and all(e.header.actor == "gate:gate-b" for e in gate_b)
    by_payload = auditview.browse(log, auditview.EntryFilter(gate="gate-a")).entries
    assert any(e.header.type == "alert.raised" for e in by_payload)  # gate_id in the payload

    day2 = auditview.EntryFilter(since=T0 + DAY - dt.timedelta(hours=1), until=T0 + DAY)
    assert {e.header.time[:10] for e in auditview.browse(log, day2).entries} == {"2025-03-02"}

    first = auditview.browse(log, auditview.EntryFilter(), limit=4)
    assert len(first.entries) == 4 and first.older == first.entries[-1].seq
    second = auditview.browse(log, auditview.EntryFilter(), before=first.older, limit=4)
    assert second.entries[0].seq == first.older - 1

    capped = auditview.browse(log, auditview.EntryFilter(gate="nowhere"), scan_limit=3)
    assert capped.exhausted and capped.scanned == 3 and not capped.entries


def test_filter_refuses_unknown_types_and_reversed_periods():
    with pytest.raises(ValueError):
        auditview.EntryFilter(event_type="no.such.type")
    with pytest.raises(ValueError, match="period"):
        auditview.EntryFilter(since=T0 + DAY, until=T0)


def test_proofs_verify_against_the_signed_checkpoint(log):
    status = auditview.latest_checkpoint(log, log.signer.verifier())
    assert status.verified and status.size == log.tree_size()
    for entry in log.entries():
        proof = auditview.prove(log, entry, status)
        assert proof.state == "verified", proof.problem
        assert proof.size == status.size

    # a newer entry is not covered yet
    log.append([_event(EventType.ADMIN, "system", note="late")], now=T0 + 3 * DAY)
    late = log.entries(log.tree_size() - 1)[0]
    assert auditview.prove(log, late, status).state == "pending"


def test_a_wrong_key_or_another_logs_checkpoint_fails(engine, log):
    wrong_key = NoteSigner.generate("console.test/log").verifier()
    status = auditview.latest_checkpoint(log, wrong_key)
    assert not status.verified and status.problem
    entry = log.entries(0, 1)[0]
    failed = auditview.prove(log, entry, status)
    assert failed.state == "failed" and "signature" in (failed.problem or "")

    # a validly signed checkpoint of a different tree: the proof does not reach its root
    other = AuditLog(engine, log.signer)
    good = auditview.latest_checkpoint(log, log.signer.verifier())
    forged_cp = auditview.CheckpointStatus(
        type(good.signed).sign(  # type: ignore[union-attr]
            type(good.signed.checkpoint)(  # type: ignore[union-attr]
                other.origin, good.size, bytes(32)
            ),
            log.signer,
        ),
        True,
        None,
    )
    mismatch = auditview.prove(log, entry, forged_cp)
    assert mismatch.state == "failed" and "root" in (mismatch.problem or "").lower()


def test_checkpoint_history_shows_witness_cosignatures(log):
    witness = NoteSigner.generate("witness.test/w1", COSIGNATURE_V1)
    latest = log.latest_checkpoint()
    stamp = int((T0 + 2 * DAY).timestamp())
    cosigned = latest.note.with_signatures([witness.sign(latest.note.text, timestamp=stamp)])
    log.add_cosignatures(cosigned.to_bytes(), [witness.verifier()])

    rows, total = auditview.checkpoint_history(log, log.signer.verifier(), [witness.verifier()])
    assert total == len(log.checkpoint_sizes()) >= 2 and rows[0].size > rows[1].size
    sigs = rows[0].signatures
    assert [(s["kind"], s["verified"]) for s in sigs] == [
        ("log signature", True),
        ("cosignature", True),
    ]
    assert sigs[1]["name"] == "witness.test/w1" and sigs[1]["time"].startswith("2025-03-03")
    # without the witness key the cosignature is listed but not checked
    unchecked, _ = auditview.checkpoint_history(log, log.signer.verifier(), [])
    assert unchecked[0].signatures[1]["verified"] is None


def test_policy_timeline_and_daily_counts(log):
    timeline = auditview.policy_timeline(log)
    assert [p["engine"] for p in timeline] == ["http", "embedded"]
    assert timeline[0]["until"] is None and timeline[1]["until"] == timeline[0]["from"]

    labels, series, partial = auditview.daily_counts(log, 4, T0 + 2 * DAY)
    assert labels == ["2025-02-28", "2025-03-01", "2025-03-02", "2025-03-03"] and not partial
    assert series["queries"] == [0, 2, 2, 2]
    assert series["hits"] == [0, 1, 1, 1]
    assert series["alerts"] == [0, 0, 0, 1]
    assert series["confirmations"] == [0, 0, 0, 1]
    assert series["dismissals"] == [0, 0, 0, 1]
    assert series["deletions"] == [0, 0, 0, 1]  # one payload deleted
    _, _, partial = auditview.daily_counts(log, 4, T0 + 2 * DAY, scan_limit=2)
    assert partial

"""Retention sweeps over real tables on SQLite and PostgreSQL, with a controlled clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, insert, select

from policy.embedded import EmbeddedEngine
from policy.errors import RetentionError
from policy.retention import RetentionBatch, sweep
from policy.retention_sql import SqlTableStore

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)

metadata = MetaData()
crossings = Table(
    "test_crossing",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("pseudonym", String(64), nullable=False),
    Column("state_since", DateTime(timezone=True), nullable=False),
)
alerts = Table(
    "test_alert",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("state_since", DateTime(timezone=True), nullable=False),
    Column("entry_id", String(40), nullable=True),
)
audit = Table(
    "test_audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event", String(10000), nullable=False),
)


@pytest.fixture
def db(engine: Engine) -> Engine:
    metadata.create_all(engine)  # test-only tables; the service's come from its migration
    return engine


def _ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def _seed(
    db: Engine, crossing_ages: dict[str, float], alert_rows: list[tuple[str, str, float]]
) -> None:
    with db.begin() as conn:
        if crossing_ages:
            conn.execute(
                insert(crossings),
                [
                    {"id": k, "pseudonym": "p-" + k, "state_since": _ago(a)}
                    for k, a in crossing_ages.items()
                ],
            )
        if alert_rows:
            conn.execute(
                insert(alerts),
                [
                    {"id": k, "state": s, "state_since": _ago(a), "entry_id": "wl-1"}
                    for k, s, a in alert_rows
                ],
            )


def _stores(db: Engine) -> list[SqlTableStore]:
    return [
        SqlTableStore(
            db, crossings, kind="crossing_record", state_column=None, fixed_state="recorded"
        ),
        SqlTableStore(db, alerts, kind="alert", redact={"entry_id": None}),
    ]


def _audit_writer(db: Engine):
    def on_batch(batch: RetentionBatch, conn: Any) -> None:
        conn.execute(insert(audit).values(event=json.dumps(batch.to_audit())))

    return on_batch


def _ids(db: Engine, table: Table) -> set[str]:
    with db.connect() as conn:
        return {row[0] for row in conn.execute(select(table.c.id))}


def _events(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return [
            json.loads(row[0]) for row in conn.execute(select(audit.c.event).order_by(audit.c.seq))
        ]


def test_sweep_deletes_and_redacts_what_the_policy_says_and_audits_each_batch(
    db: Engine, embedded: EmbeddedEngine
) -> None:
    _seed(
        db,
        {"c-fresh": 0.5, "c-old": 1.5, "c-older": 3},
        [
            ("a-conf-old", "confirmed", 400),
            ("a-conf-new", "confirmed", 10),
            ("a-dism", "dismissed", 31),
            ("a-open", "open", 5),
            ("a-red", "redacted", 900),
        ],
    )
    report = sweep(embedded, _stores(db), now=NOW, on_batch=_audit_writer(db))
    assert _ids(db, crossings) == {"c-fresh"}
    assert _ids(db, alerts) == {"a-conf-old", "a-conf-new", "a-open", "a-red"}
    with db.connect() as conn:
        redacted = conn.execute(
            select(alerts.c.state, alerts.c.entry_id).where(alerts.c.id == "a-conf-old")
        ).one()
    assert tuple(redacted) == ("redacted", None)
    assert (
        report.count("crossing_record", "delete"),
        report.count("alert", "delete"),
        report.count("alert", "redact"),
    ) == (2, 1, 1)
    events = _events(db)
    assert [(e["event"], e["kind"], e["state"], e["count"]) for e in events] == [
        ("retention.delete", "crossing_record", "recorded", 2),
        ("retention.redact", "alert", "confirmed", 1),
        ("retention.delete", "alert", "dismissed", 1),
    ]
    assert all(e["bundle_digest"] == embedded.bundle_digest for e in events)
    assert {r["id"] for e in events for r in e["records"]} == {
        "c-old",
        "c-older",
        "a-conf-old",
        "a-dism",
    }

    # Advance the clock: the fresh crossing expires; redacted alerts are never swept again.
    later = sweep(embedded, _stores(db), now=NOW + timedelta(days=1), on_batch=_audit_writer(db))
    assert _ids(db, crossings) == set() and later.count() == 1


def test_sweep_works_in_batches(db: Engine, embedded: EmbeddedEngine) -> None:
    _seed(db, {f"c-{i:02d}": 2 + i for i in range(7)} | {"c-keep": 0.1}, [])
    report = sweep(embedded, _stores(db)[:1], now=NOW, on_batch=_audit_writer(db), batch_size=3)
    assert [len(b.record_ids) for b in report.batches] == [3, 3, 1]
    assert [e["count"] for e in _events(db)] == [3, 3, 1]
    assert _ids(db, crossings) == {"c-keep"}


def test_dry_run_changes_nothing(db: Engine, embedded: EmbeddedEngine) -> None:
    _seed(db, {"c-old": 5}, [("a-dism", "dismissed", 60)])
    report = sweep(embedded, _stores(db), now=NOW, on_batch=_audit_writer(db), dry_run=True)
    assert report.count() == 2 and report.dry_run
    assert _ids(db, crossings) == {"c-old"} and _ids(db, alerts) == {"a-dism"} and _events(db) == []


def test_a_failing_audit_write_rolls_the_batch_back(db: Engine, embedded: EmbeddedEngine) -> None:
    _seed(db, {"c-old": 5}, [])

    def failing(batch: RetentionBatch, conn: Any) -> None:
        raise RuntimeError("audit log unavailable")

    with pytest.raises(RuntimeError, match="audit log unavailable"):
        sweep(embedded, _stores(db), now=NOW, on_batch=failing)
    assert _ids(db, crossings) == {"c-old"}


def test_unknown_kinds_are_reported_not_swept(db: Engine, embedded: EmbeddedEngine) -> None:
    _seed(db, {"c-old": 5}, [])
    store = SqlTableStore(db, crossings, kind="photo", state_column=None, fixed_state="recorded")
    report = sweep(embedded, [store], now=NOW, on_batch=_audit_writer(db))
    assert report.unknown_kinds == ["photo"] and _ids(db, crossings) == {"c-old"}


def test_sweep_preconditions(db: Engine, embedded: EmbeddedEngine) -> None:
    with pytest.raises(RetentionError, match="timezone-aware"):
        sweep(embedded, [], now=NOW.replace(tzinfo=None), on_batch=_audit_writer(db))
    with pytest.raises(RetentionError, match="batch_size"):
        sweep(embedded, [], now=NOW, on_batch=_audit_writer(db), batch_size=0)
    with pytest.raises(RetentionError, match="exactly one"):
        SqlTableStore(db, alerts, kind="alert", state_column="state", fixed_state="open")
    _seed(db, {"c-old": 5}, [])
    redacting = SqlTableStore(
        db, crossings, kind="crossing_record", state_column=None, fixed_state="recorded"
    )
    batch = RetentionBatch(
        "crossing_record", "recorded", "redact", ("c-old",), (("c-old", "d"),), "sha256:x", 1, NOW
    )
    with pytest.raises(RetentionError, match="redaction is not configured"):
        redacting.apply(batch, _audit_writer(db))
    assert _ids(db, crossings) == {"c-old"}

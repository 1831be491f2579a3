"""`veilmatch retention sweep` against a real database (SQLite, and PostgreSQL when
``VEILMATCH_TEST_POSTGRES_URL`` is set): a dry run reports the expired crossing records
and changes nothing; a sweep deletes them in audited batches, keeps the fresh one, and
the exported audit log still verifies offline. Expected failures print one line."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from audit.events import AuditEvent, EventType
from audit.export import export_log
from audit.keys import SEQUENCER_KEY_FILE, load_or_create_sequencer_key
from audit.log import AuditLog
from audit.sources import DirectorySource
from audit.verify import verify_log
from core.settings import Settings
from service.adapters import load_or_create_log_signer
from service.context import load_or_create_kek
from service.tables import crossings
from veilmatch.cli import app, main

runner = CliRunner()

#: Hours ago each crossing was recorded; the policy keeps crossing records for 1 day.
EXPIRED_H = {"crossing-a": 25, "crossing-b": 30, "crossing-c": 24 * 10}
FRESH = "crossing-fresh"


def _set_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path) -> None:
    monkeypatch.delenv("VEILMATCH_CONFIG", raising=False)
    monkeypatch.setenv("VEILMATCH_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VEILMATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VEILMATCH_KEY_DIR", str(tmp_path / "keys"))
    if settings.database_schema:
        monkeypatch.setenv("VEILMATCH_DATABASE_SCHEMA", settings.database_schema)


@pytest.fixture
def log(
    engine: Engine, db_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AuditLog:
    """A migrated database with the service's keys (as after a first start), four crossing
    records (three expired), and one audit entry not yet covered by a checkpoint."""
    _set_env(monkeypatch, db_settings, tmp_path)
    keys = tmp_path / "keys"
    load_or_create_kek(keys / "kek.bin")
    audit_log = AuditLog(
        engine,
        load_or_create_log_signer(keys / "audit-log.key"),
        sequencer=load_or_create_sequencer_key(keys / SEQUENCER_KEY_FILE),
    )
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        for record_id, hours in {**EXPIRED_H, FRESH: 1}.items():
            conn.execute(
                crossings.insert().values(
                    id=record_id,
                    doc_pseudonym="ab" * 32,
                    gate_id="gate-x",
                    at=now - dt.timedelta(hours=hours),
                )
            )
        audit_log.append_in(
            conn, [AuditEvent(EventType.ADMIN, "system", (), {"action": "account.bootstrap"})]
        )
    return audit_log


def _crossing_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(crossings.c.id)).scalars())


def _retention_events(log: AuditLog) -> list[object]:
    return list(log.entries(0, None, types=[EventType.RETENTION_DELETE], limit=10_000))


def _sweep(*args: str) -> list[str]:
    result = runner.invoke(app, ["retention", "sweep", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output.strip().splitlines()


def test_dry_run_reports_and_changes_nothing(engine: Engine, log: AuditLog) -> None:
    lines = _sweep("--dry-run", "--batch-size", "2")

    assert lines[-1] == "would remove 3 records in 2 batches"
    batches = [json.loads(line) for line in lines[:-1]]
    assert [(b["kind"], b["state"], b["count"]) for b in batches] == [
        ("crossing_record", "recorded", 2),
        ("crossing_record", "recorded", 1),
    ]
    assert _crossing_ids(engine) == {*EXPIRED_H, FRESH}
    assert _retention_events(log) == []
    # nothing written at all: no audit entry, not even a checkpoint
    assert log.tree_size() == 1 and log.checkpoint_sizes() == []


def test_sweep_deletes_expired_records_in_audited_batches(
    engine: Engine, log: AuditLog, tmp_path: Path
) -> None:
    lines = _sweep("--batch-size", "2")

    assert lines[-1] == "removed 3 records in 2 batches"
    batches = [json.loads(line) for line in lines[:-1]]
    assert _crossing_ids(engine) == {FRESH}
    events = _retention_events(log)
    assert len(events) == len(batches) == 2  # one retention.delete per batch
    payloads = [e.payload for e in events]  # type: ignore[attr-defined]
    assert [(p["kind"], p["action"], p["count"]) for p in payloads] == [
        ("crossing_record", "delete", 2),
        ("crossing_record", "delete", 1),
    ]
    assert [e.header.policy_digest for e in events] == [  # type: ignore[attr-defined]
        b["bundle_digest"] for b in batches
    ]
    # the sweep's events are covered by a signed checkpoint, and the log verifies offline
    assert log.latest_checkpoint().checkpoint.size == log.tree_size() == 3
    export_log(log, tmp_path / "export")
    report = verify_log(DirectorySource(tmp_path / "export"), log.signer.verifier()).to_dict()
    assert report["size"] == 3

    # nothing left to do: a second sweep removes and writes nothing
    assert _sweep()[-1] == "removed 0 records in 0 batches"
    assert log.tree_size() == 3 and len(log.checkpoint_sizes()) == 1


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the console entry point; its exit status and what it printed on stderr."""
    monkeypatch.setattr(sys, "argv", ["veilmatch", "retention", "sweep", "--dry-run"])
    with pytest.raises(SystemExit) as exited:
        main()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def test_unreachable_database_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VEILMATCH_CONFIG", raising=False)
    monkeypatch.setenv("VEILMATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VEILMATCH_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    code, err = _main(monkeypatch, capsys)
    assert code == 2
    assert err.startswith("configuration error: VEILMATCH_DATABASE_URL: cannot connect")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        pytest.param("bad-setting", "configuration error: VEILMATCH_POLICY_ENGINE", id="setting"),
        pytest.param(
            "unmigrated",
            "configuration error: VEILMATCH_DATABASE_URL: schema is not up to date",
            id="unmigrated",
        ),
        pytest.param("no-keys", "configuration error: VEILMATCH_KEY_DIR: ", id="no-keys"),
    ],
)
def test_bad_configuration_is_one_line(
    setup: str,
    expected: str,
    raw_engine: Engine,
    db_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _set_env(monkeypatch, db_settings, tmp_path)
    if setup == "bad-setting":
        monkeypatch.setenv("VEILMATCH_POLICY_ENGINE", "magic")
    if setup != "unmigrated":
        from core.migrate import upgrade

        upgrade(raw_engine)
    code, err = _main(monkeypatch, capsys)
    assert code == 2, err
    assert err.startswith(expected), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "keys").exists()  # a sweep never creates keys

"""Least-privilege PostgreSQL roles, on a real server: the schema is migrated by an owner
role, the grant script is applied by that owner, and a connection as the application
role can append to the audit log and sweep retention through the one SECURITY DEFINER
function, while every way of rewriting audit history is refused with SQLSTATE 42501."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from audit.events import AuditEvent, EventType
from audit.log import AuditLog
from audit.note import NoteSigner
from core.db import make_engine
from core.dbroles import apply_script, grant_script
from core.errors import ConfigurationError
from core.migrate import is_up_to_date, upgrade
from core.settings import Settings, load_settings
from service.accounts import create_account
from service.audit_retention import delete_expired_payloads_in
from service.lifecycle import build_context, housekeeping
from service.ports import ServiceEvent
from service.retention import run_sweep
from service.tables import crossings
from tests.conftest import POSTGRES_URL
from veilmatch.cli import app

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs VEILMATCH_TEST_POSTGRES_URL")

NOW = dt.datetime.now(dt.UTC)
INSUFFICIENT_PRIVILEGE = "42501"


@dataclass
class Roles:
    owner: str
    app: str
    schema: str
    owner_settings: Settings
    app_settings: Settings
    owner_engine: Engine
    app_engine: Engine


def _url_as(role: str, password: str) -> str:
    url = make_url(POSTGRES_URL).set(username=role, password=password)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[Roles]:
    """Fresh owner and application roles (unique names) and a schema owned by the owner,
    migrated and granted as the owner; everything dropped afterwards."""
    tag = uuid.uuid4().hex[:10]
    owner, app_role, schema = f"vm_owner_{tag}", f"vm_app_{tag}", f"roles_{tag}"
    owner_pw, app_pw = secrets.token_hex(12), secrets.token_hex(12)
    admin = create_engine(load_settings(database_url=POSTGRES_URL).sqlalchemy_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {owner} LOGIN PASSWORD '{owner_pw}'"))
        conn.execute(sa.text(f"CREATE ROLE {app_role} LOGIN PASSWORD '{app_pw}'"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema} AUTHORIZATION {owner}"))
    common = {"data_dir": tmp_path, "database_schema": schema, "key_dir": tmp_path / "keys"}
    owner_settings = load_settings(database_url=_url_as(owner, owner_pw), **common)
    app_settings = load_settings(
        database_url=_url_as(app_role, app_pw),
        database_migration_url=_url_as(owner, owner_pw),
        **common,
    )
    owner_engine, app_engine = make_engine(owner_settings), make_engine(app_settings)
    try:
        upgrade(owner_engine)
        apply_script(owner_engine, grant_script(app_role, owner, schema))
        yield Roles(owner, app_role, schema, owner_settings, app_settings, owner_engine, app_engine)
    finally:
        owner_engine.dispose()
        app_engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            for role in (app_role, owner):
                conn.execute(sa.text(f"DROP OWNED BY {role}"))
                conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def _log(engine: Engine) -> AuditLog:
    return AuditLog(engine, NoteSigner.from_seed("veilmatch.invalid/test-log", b"\x07" * 32))


def _append(log: AuditLog, note: str, days_ago: float) -> int:
    [receipt] = log.append(
        [AuditEvent(EventType.ADMIN, "system", payload={"note": note})],
        now=NOW - dt.timedelta(days=days_ago),
    )
    return receipt.seq


TAMPERING = {
    "update-entry": "UPDATE audit_entries SET event_type = 'alert.review'",
    "delete-entry": "DELETE FROM audit_entries",
    "truncate-entries": "TRUNCATE audit_entries",
    "update-node": "UPDATE audit_nodes SET hash = hash",
    "delete-checkpoint": "DELETE FROM audit_checkpoints",
    "truncate-checkpoints": "TRUNCATE audit_checkpoints",
    "delete-payload": "DELETE FROM audit_payloads",
    "update-payload": "UPDATE audit_payloads SET blob = blob",
    "truncate-payloads": "TRUNCATE audit_payloads",
    "truncate-head": "TRUNCATE audit_head",
    "delete-head": "DELETE FROM audit_head",
    "insert-second-head": "INSERT INTO audit_head (id, tree_size, frontier) VALUES (2, 0, '')",
    "move-head-row": "UPDATE audit_head SET id = 2",
    "drop-trigger": "DROP TRIGGER audit_entries_append_only ON audit_entries",
    "disable-triggers": "ALTER TABLE audit_entries DISABLE TRIGGER ALL",
    "alter-trigger": "ALTER TRIGGER audit_payloads_no_update ON audit_payloads RENAME TO x",
    "replica-mode": "SET session_replication_role = replica",
    "replace-function": (
        "CREATE OR REPLACE FUNCTION audit_delete_expired_payloads(bigint[], integer) "
        "RETURNS SETOF bigint LANGUAGE sql AS 'SELECT 1::bigint'"
    ),
    "drop-function": "DROP FUNCTION audit_delete_expired_payloads(bigint[], integer)",
    "create-table": "CREATE TABLE audit_shadow (seq bigint)",
    "become-owner": "SET ROLE {owner}",
    "below-floor": "SELECT * FROM audit_delete_expired_payloads(ARRAY[0]::bigint[], 0)",
}


@pytest.mark.parametrize("statement", list(TAMPERING.values()), ids=list(TAMPERING))
def test_application_role_cannot_rewrite_audit_history(roles: Roles, statement: str) -> None:
    log = _log(roles.app_engine)
    _append(log, "real", 300)
    log.checkpoint()
    with roles.app_engine.connect() as conn, pytest.raises(DBAPIError) as caught:
        conn.execute(sa.text(statement.format(owner=roles.owner)))
    assert caught.value.orig is not None
    assert getattr(caught.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE, caught.value
    with roles.owner_engine.connect() as conn:  # nothing changed
        assert conn.execute(sa.text("SELECT count(*) FROM audit_payloads")).scalar_one() == 1


def test_application_role_appends_and_checkpoints(roles: Roles) -> None:
    log = _log(roles.app_engine)
    seqs = [_append(log, f"n{i}", 0) for i in range(5)]
    assert seqs == list(range(5))
    signed = log.checkpoint()
    assert signed.checkpoint.size == 5
    assert [e.payload for e in log.entries(0, 5)] == [{"note": f"n{i}"} for i in range(5)]
    assert is_up_to_date(roles.app_engine)  # reading alembic_version is allowed


def test_retention_function_deletes_only_expired_payloads(roles: Roles) -> None:
    log = _log(roles.app_engine)
    old = [_append(log, f"old{i}", 200) for i in range(3)]
    young = _append(log, "young", 20)
    with roles.app_engine.begin() as conn:
        [retention] = log.append_in(
            conn,
            [AuditEvent(EventType.RETENTION_DELETE, "system", payload={"deleted": []})],
            now=NOW - dt.timedelta(days=400),
        )
    with roles.app_engine.begin() as conn:
        receipts = delete_expired_payloads_in(
            conn,
            log,
            [*old, young, retention.seq],
            retention_days=183,
            actor="system",
            reason="retention: audit_payload/recorded redact after 183 days",
            policy_digest="sha256:test",
            decision_id="d-1",
        )
    [event] = log.entries(receipts[0].seq, receipts[0].seq + 1)
    # exactly what the database deleted is logged: the young payload and the
    # retention event's own payload were not deleted, whatever the caller asked
    assert event.payload == {
        "deleted": [[old[0], old[-1] + 1]],
        "reason": "retention: audit_payload/recorded redact after 183 days",
        "retention_days": 183,
    }
    present = {e.seq: e.payload for e in log.entries(0, young + 1)}
    assert all(present[s] is None for s in old) and present[young] == {"note": "young"}
    assert log.entries(retention.seq, retention.seq + 1)[0].payload == {"deleted": []}
    # a caller claiming a 1-day period to delete the young payload is refused
    with roles.app_engine.begin() as conn, pytest.raises(DBAPIError) as caught:
        delete_expired_payloads_in(
            conn,
            log,
            [young],
            retention_days=1,
            actor="system",
            reason="x",
            policy_digest=None,
            decision_id=None,
        )
    assert getattr(caught.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE


def test_service_runs_as_the_application_role(roles: Roles) -> None:
    ctx = build_context(roles.app_settings, roles.app_engine)
    try:
        with ctx.transaction() as conn:
            create_account(conn, "officer9", "a-long-pw0rd", "officer", created_by=None, now=NOW)
            ctx.record(conn, ServiceEvent("admin", "system", ("account:officer9",), {"a": 1}))
            conn.execute(
                crossings.insert().values(
                    id="c-1", doc_pseudonym="ab" * 32, gate_id="g", at=NOW - dt.timedelta(days=9)
                )
            )
        log = ctx.audit.log  # type: ignore[attr-defined]
        old = _append(log, "old", 200)
        housekeeping(ctx)  # UPDATE and DELETE on the service's own tables
        run_sweep(ctx, now=ctx.now())
        with roles.app_engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(crossings)).scalar() == 0
        assert log.entries(old, old + 1)[0].payload is None
        deletions = [e for e in log.entries(0, None) if e.header.type == "retention.delete"]
        assert any(e.payload and [old, old + 1] in e.payload["deleted"] for e in deletions)
        ctx.audit.flush()
    finally:
        ctx.pool.close(wait=True)
        ctx.policy.engine.close()  # type: ignore[attr-defined]
        ctx.keys.close()


def test_grant_script_refuses_bad_names_and_a_shared_role() -> None:
    with pytest.raises(ConfigurationError):
        grant_script("app; DROP TABLE x", "owner", "public")
    with pytest.raises(ConfigurationError):
        grant_script("same", "same", "public")


def test_db_roles_prints_and_applies(roles: Roles, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILMATCH_DATABASE_URL", roles.app_settings.database_url)
    monkeypatch.setenv("VEILMATCH_DATABASE_MIGRATION_URL", roles.owner_settings.database_url)
    monkeypatch.setenv("VEILMATCH_DATABASE_SCHEMA", roles.schema)
    printed = CliRunner().invoke(
        app, ["db", "roles", "--app", roles.app, "--owner", roles.owner], catch_exceptions=False
    )
    assert printed.exit_code == 0
    assert f'GRANT EXECUTE ON FUNCTION "{roles.schema}".audit_delete_expired_payloads' in (
        printed.output
    )
    upgraded = CliRunner().invoke(app, ["db", "upgrade"], catch_exceptions=False)
    assert upgraded.exit_code == 0 and "already up to date" in upgraded.output
    applied = CliRunner().invoke(app, ["db", "roles", "--app", roles.app, "--apply"])
    assert applied.exit_code == 0, applied.output
    assert f"(owner {roles.owner})" in applied.output
    with roles.app_engine.connect() as conn, pytest.raises(DBAPIError):
        conn.execute(sa.text("DELETE FROM audit_payloads"))

"""The `veilmatch audit` commands end to end: keygen, checkpoint, entries, proofs,
export, witness, add-cosignatures and verify (exit codes and named failures)."""

from __future__ import annotations

import json
import stat

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from audit.keys import load_signer
from audit.log import AuditLog
from audit.rfc9162 import verify_consistency, verify_inclusion
from tests.audit.conftest import T0, disable_guards, event
from veilmatch.cli import app

runner = CliRunner()


@pytest.fixture
def env(engine, db_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("VEILMATCH_DATABASE_URL", db_settings.database_url)
    monkeypatch.setenv("VEILMATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VEILMATCH_KEY_DIR", str(tmp_path / "keys"))
    if db_settings.database_schema:
        monkeypatch.setenv("VEILMATCH_DATABASE_SCHEMA", db_settings.database_schema)
    return tmp_path


def _run(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_operator_and_oversight_workflow(env, engine):
    keys = env / "keys"
    out = _run("audit", "keygen", "--name", "veilmatch.test/cli").output
    assert "verifier key: veilmatch.test/cli+" in out
    private = keys / "audit-log.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "already exists" in str(_run("audit", "keygen", "--name", "x.y/z", ok=False).exception)
    _run(
        "audit",
        "keygen",
        "--name",
        "oversight.test/w1",
        "--kind",
        "witness",
        "--key-dir",
        str(env / "wk"),
    )

    log = AuditLog(engine, load_signer(private), checkpoint_every=10**9)
    log.append([event(i) for i in range(40)], now=T0)
    cp_text = _run("audit", "checkpoint").output
    assert cp_text.startswith("veilmatch.test/cli\n40\n")

    lines = _run("audit", "entries", "--start", "3", "--end", "6").output.strip().split("\n")
    assert [json.loads(x)["seq"] for x in lines] == [3, 4, 5]
    proof = json.loads(_run("audit", "prove-inclusion", "7").output)
    cp = log.latest_checkpoint().checkpoint
    import base64

    verify_inclusion(
        7,
        40,
        base64.b64decode(proof["leaf_hash"]),
        [base64.b64decode(h) for h in proof["proof"]],
        cp.root,
    )
    log.append([event(i) for i in range(40, 50)], now=T0)
    log.checkpoint(now=T0)
    cons = json.loads(_run("audit", "prove-consistency", "40").output)
    verify_consistency(
        40,
        50,
        cp.root,
        log.latest_checkpoint().checkpoint.root,
        [base64.b64decode(h) for h in cons["proof"]],
    )

    export = env / "export"
    assert "exported size 50" in _run("audit", "export", str(export)).output
    log_vkey = str(keys / "audit-log.vkey")
    w_key, w_vkey = env / "wk" / "audit-witness.key", str(env / "wk" / "audit-witness.vkey")
    cosigned = env / "cosigned"
    _run(
        "audit",
        "witness",
        str(export),
        "--log-key",
        log_vkey,
        "--key",
        str(w_key),
        "--state",
        str(env / "witness-state.json"),
        "--out",
        str(cosigned),
    )
    assert (
        "oversight.test/w1"
        in _run("audit", "add-cosignatures", str(cosigned), "--witness-key", w_vkey).output
    )
    _run("audit", "export", str(export))
    state = env / "verifier-state.json"
    ok = json.loads(
        _run(
            "audit",
            "verify",
            str(export),
            "--log-key",
            log_vkey,
            "--witness-key",
            w_vkey,
            "--state",
            str(state),
        ).output
    )
    assert ok["ok"] and ok["size"] == 50 and ok["witnesses"]
    assert json.loads(state.read_text())["size"] == 50

    # Tamper with entry 12 and re-export: verify exits 1 and names it.
    disable_guards(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET leaf = :l WHERE seq = 12"), {"l": b'{"v":1}'})
    _run("audit", "export", str(export))
    bad = _run(
        "audit", "verify", str(export), "--log-key", log_vkey, "--state", str(state), ok=False
    )
    assert bad.exit_code == 1
    assert "FAIL entry 12: not a valid canonical leaf header" in bad.output

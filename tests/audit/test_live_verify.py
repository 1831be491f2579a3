"""The documented live verification (issue 18, item 2) against a real service over TLS:
``veilmatch audit verify https://…/api/v1/audit/tiles`` with an oversight account's
read-only token. Without a token, or with a role that may not read the log, it fails with
a line saying why; a token is never sent over plain HTTP."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.errors import SourceError
from audit.keys import SEQUENCER_KEY_FILE
from audit.sources import HttpSource
from tests.service.conftest import RunningService, run_service
from veilmatch.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    yield from run_service("sqlite", tmp_path_factory.mktemp("live-verify"))


def _verify(service: RunningService, tmp_path: Path, *extra: str, env=None):
    service.ctx.audit.flush()
    tiles = f"{service.staff_url}/api/v1/audit/tiles"
    assert service.settings.key_dir is not None
    log_key = Path(service.settings.key_dir) / "audit-log.pub"
    args = ["audit", "verify", tiles, "--log-key", str(log_key)]
    args += ["--state", str(tmp_path / "state.json"), "--ca", str(service.pki.ca_cert), *extra]
    return runner.invoke(app, args, env={"VEILMATCH_AUDIT_TOKEN": "", **(env or {})})


def test_verify_over_https_with_an_oversight_token(service, tmp_path):
    result = _verify(service, tmp_path, env={"VEILMATCH_AUDIT_TOKEN": service.token("oversight1")})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["size"] == service.ctx.audit.log.tree_size()
    assert report["entries_checked"] == report["size"] > 0


def test_token_from_a_file(service, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(service.token("oversight1") + "\n")
    result = _verify(service, tmp_path, "--token-file", str(token_file))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("user", "status"), [(None, 401), ("officer1", 403)])
def test_without_a_reader_token_it_fails_and_says_why(service, tmp_path, user, status):
    env = {"VEILMATCH_AUDIT_TOKEN": service.token(user)} if user else {}
    result = _verify(service, tmp_path, env=env)
    assert result.exit_code == 1
    assert f"FAIL checkpoint: checkpoint: HTTP {status}" in result.output
    assert "oversight account's token" in result.output
    assert not (tmp_path / "state.json").exists()


def test_a_token_is_never_sent_over_plain_http():
    with pytest.raises(SourceError, match="only sent over https"):
        HttpSource("http://127.0.0.1:9/api/v1/audit/tiles", token="t")


def test_the_service_bootstrap_created_the_sequencer_key(service):
    assert service.settings.key_dir is not None
    path = Path(service.settings.key_dir) / SEQUENCER_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert service.ctx.metrics.audit_alarms._value.get() == 0

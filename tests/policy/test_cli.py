"""`veilmatch policy …` and `veilmatch retention …` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policy.bundles import default_bundle_dir
from veilmatch.cli import app

runner = CliRunner()


@pytest.fixture
def broken_dir(tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(default_bundle_dir(), target)
    rego = target / "veilmatch" / "match" / "match.rego"
    rego.write_text(rego.read_text().replace("< limit", "<= limit"))
    return target


def test_policy_test_passes_on_the_shipped_bundle() -> None:
    result = runner.invoke(app, ["policy", "test"])
    assert result.exit_code == 0, result.output
    assert result.output.count("coverage: 100.00% of policy lines") == 3
    for profile in ("cn-mainland", "eu", "hk"):
        assert f"profile {profile}\n" in result.output


def test_policy_test_fails_on_a_broken_rule(broken_dir: Path) -> None:
    result = runner.invoke(app, ["policy", "test", "--dir", str(broken_dir)])
    assert result.exit_code == 1
    assert "case failed: the 31st search within a minute is refused" in result.output


def test_policy_docs_check_detects_staleness(tmp_path: Path) -> None:
    out = tmp_path / "policies.md"
    one = ["policy", "docs", "--profile", "hk", "--out", str(out)]
    assert runner.invoke(app, [*one, "--check"]).exit_code == 1
    assert runner.invoke(app, one).exit_code == 0
    assert runner.invoke(app, [*one, "--check"]).exit_code == 0
    assert "**Jurisdiction profile:** `hk`" in out.read_text()


def test_policy_docs_writes_one_document_per_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["policy", "docs"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == [
        "policies-cn-mainland.md",
        "policies-hk.md",
        "policies.md",
    ]
    assert runner.invoke(app, ["policy", "docs", "--check"]).exit_code == 0
    (tmp_path / "docs" / "policies-hk.md").write_text("stale")
    stale = runner.invoke(app, ["policy", "docs", "--check"])
    assert stale.exit_code == 1 and "policies-hk.md is stale" in stale.output
    both = runner.invoke(app, ["policy", "docs", "--out", "x.md"])
    assert both.exit_code == 2 and "--out needs --profile" in both.output


def test_an_unknown_profile_is_a_clear_error() -> None:
    for command in (["docs"], ["test"], ["digest"]):
        result = runner.invoke(app, ["policy", *command, "--profile", "mars"])
        assert result.exit_code == 2
        assert "unknown policy profile 'mars'" in result.output
        assert "Traceback" not in result.output
    diff = runner.invoke(app, ["policy", "diff", "policy/bundle#mars", "policy/bundle"])
    assert diff.exit_code == 2 and "defines cn-mainland, eu, hk" in diff.output


def test_policy_diff_and_digest(broken_dir: Path) -> None:
    result = runner.invoke(app, ["policy", "diff", str(default_bundle_dir()), str(broken_dir)])
    assert result.exit_code == 0, result.output
    assert "~ rule     veilmatch.match._within_rate: definition changed" in result.output
    digest = runner.invoke(app, ["policy", "digest", "--dir", str(broken_dir)])
    assert digest.output.startswith("sha256:") and "params/match/data.json" in digest.output
    assert digest.output.rstrip().endswith("profile eu")


def test_policy_eval_and_retention_periods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILMATCH_DATA_DIR", str(tmp_path))
    doc = json.dumps({"kind": "crossing_record", "state": "recorded", "age_days": 2})
    result = runner.invoke(app, ["policy", "eval", "veilmatch.retention.decision", "--input", doc])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["result"]["action"] == "delete" and body["bundle_digest"].startswith("sha256:")
    periods = runner.invoke(app, ["retention", "periods"])
    assert "crossing_record    recorded               1 days  then delete" in periods.output

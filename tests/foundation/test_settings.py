import json

import pytest
from typer.testing import CliRunner

from core.errors import ConfigurationError
from core.settings import load_settings
from veilmatch.cli import app


def test_defaults_use_sqlite_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.database_url == "sqlite:///var/veilmatch.db"
    assert str(settings.tls_cert) == "var/keys/server.crt"
    assert settings.policy_engine == "embedded"


def test_environment_overrides_with_prefix(monkeypatch):
    monkeypatch.setenv("VEILMATCH_MATCH_THRESHOLD", "0.5")
    monkeypatch.setenv("VEILMATCH_POLICY_ENGINE", "http")
    settings = load_settings()
    assert settings.match_threshold == 0.5
    assert settings.policy_engine == "http"


def test_toml_file_is_read_and_env_wins(tmp_path, monkeypatch):
    config = tmp_path / "site.toml"
    config.write_text('staff_port = 9443\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("VEILMATCH_CONFIG", str(config))
    monkeypatch.setenv("VEILMATCH_LOG_LEVEL", "WARNING")
    settings = load_settings()
    assert settings.staff_port == 9443
    assert settings.log_level == "WARNING"


@pytest.mark.parametrize(
    ("env", "value", "setting"),
    [
        ("VEILMATCH_DATABASE_URL", "mysql://x/y", "VEILMATCH_DATABASE_URL"),
        ("VEILMATCH_DATABASE_URL", "not a url", "VEILMATCH_DATABASE_URL"),
        ("VEILMATCH_STAFF_PORT", "70000", "VEILMATCH_STAFF_PORT"),
        ("VEILMATCH_POLICY_ENGINE", "magic", "VEILMATCH_POLICY_ENGINE"),
        ("VEILMATCH_CONFIG", "/does/not/exist.toml", "VEILMATCH_CONFIG"),
    ],
)
def test_wrong_setting_names_the_setting(monkeypatch, env, value, setting):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert info.value.setting == setting
    assert setting in str(info.value)


def test_dev_config_redacts_secrets(monkeypatch):
    monkeypatch.setenv("VEILMATCH_ADMIN_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("VEILMATCH_DATABASE_URL", "postgresql://u:pw-secret@db/x")
    result = CliRunner().invoke(app, ["dev", "config"])
    assert result.exit_code == 0, result.output
    assert "hunter2-secret" not in result.output
    assert "pw-secret" not in result.output
    shown = json.loads(result.output)
    assert shown["admin_password"] == "**********"
    assert shown["database_url"].startswith("postgresql://u:***@db")


def test_help_lists_component_groups():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for group in ("gate", "serve", "audit", "policy", "db", "dev"):
        assert group in result.output

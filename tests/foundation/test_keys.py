"""The service's keys from files (development default) or from a PKCS#11 token (real
SoftHSM2): the same service code signs checkpoints, seals watchlist data and issues
staff tokens with either, and the token's keys survive a restart."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.events import AuditEvent, EventType
from audit.keys import load_verifier
from audit.note import verify_note
from core.db import make_engine
from core.errors import ConfigurationError
from core.migrate import upgrade
from core.settings import Settings, load_settings
from crypto.atrest import open_sealed, seal
from service.accounts import Principal, TokenIssuer
from service.errors import AuthenticationError
from service.keys import load_service_keys
from service.lifecycle import build_context
from tests.softhsm_fixtures import soft_token, softhsm_config  # noqa: F401 - fixtures
from veilmatch.cli import app
from veilmatch.softhsm import SoftToken

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def _hsm_settings(tmp_path: Path, token: SoftToken, **extra: object) -> Settings:
    return load_settings(
        data_dir=tmp_path,
        key_provider="pkcs11",
        pkcs11_module=token.module,
        pkcs11_token_label=token.label,
        pkcs11_pin=token.pin,
        **extra,
    )


def test_file_keys_are_created_once_and_a_tool_creates_none(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="VEILMATCH_KEY_DIR"):
        load_service_keys(settings, create=False)
    first = load_service_keys(settings)
    again = load_service_keys(settings, create=False)
    assert first.provider == "file"
    # the sequencer key is a file beside the log key, read back unchanged
    assert again.sequencer.tag(b"range") == first.sequencer.tag(b"range")
    assert again.log_signer.verifier() == first.log_signer.verifier()
    assert again.kek.key_id == first.kek.key_id
    # no token secret configured: a random one per process, as before
    assert first.token_mac.key_id != again.token_mac.key_id


def test_short_token_secret_is_a_configuration_error(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, token_secret="too short")
    with pytest.raises(ConfigurationError, match="VEILMATCH_TOKEN_SECRET"):
        load_service_keys(settings)


def test_pkcs11_keys_sign_seal_and_mac_and_survive_a_restart(
    tmp_path: Path,
    soft_token: SoftToken,  # noqa: F811
) -> None:
    settings = _hsm_settings(tmp_path, soft_token)
    with pytest.raises(ConfigurationError, match="hsm-init"):
        load_service_keys(settings, create=False)  # a tool never generates keys
    keys = load_service_keys(settings)
    assert keys.provider == "pkcs11" and keys.sequencer is not None
    published = load_verifier(str(tmp_path / "keys" / "audit-log.pub"))
    assert published == keys.log_signer.verifier()
    blob = seal(keys.kek, b"template", b"watchlist:1")
    token, _ = TokenIssuer(keys.token_mac).issue(Principal("officer1", "officer"), NOW)
    tag = keys.sequencer.tag(b"range 0..5")
    keys.close()

    restarted = load_service_keys(settings, create=False)
    try:
        assert restarted.log_signer.verifier() == published
        assert open_sealed(restarted.kek, blob, b"watchlist:1") == b"template"
        issuer = TokenIssuer(restarted.token_mac)
        assert issuer.verify(token, NOW) == Principal("officer1", "officer")
        with pytest.raises(AuthenticationError):
            issuer.verify(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], NOW)
        assert restarted.sequencer is not None
        restarted.sequencer.verify(b"range 0..5", tag)
    finally:
        restarted.close()


def test_service_signs_checkpoints_with_the_token_key(
    tmp_path: Path,
    soft_token: SoftToken,  # noqa: F811
) -> None:
    settings = _hsm_settings(tmp_path, soft_token, database_url=f"sqlite:///{tmp_path}/t.db")
    engine = make_engine(settings)
    upgrade(engine)
    ctx = build_context(settings, engine)
    try:
        log = ctx.audit.log  # type: ignore[attr-defined]
        log.append([AuditEvent(EventType.ADMIN, "system", payload={"n": 1})])
        signed = log.checkpoint()
        verifier = load_verifier(str(tmp_path / "keys" / "audit-log.pub"))
        [(signer, _)] = verify_note(signed.note, [verifier])
        assert signer == verifier
        assert not (tmp_path / "keys" / "audit-log.key").exists()  # no key file at all
        assert not (tmp_path / "keys" / "kek.bin").exists()
    finally:
        ctx.pool.close(wait=True)
        ctx.policy.engine.close()  # type: ignore[attr-defined]
        ctx.keys.close()
        engine.dispose()


def test_dev_config_redacts_the_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILMATCH_KEY_PROVIDER", "pkcs11")
    monkeypatch.setenv("VEILMATCH_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
    monkeypatch.setenv("VEILMATCH_PKCS11_PIN", "846213579")
    result = CliRunner().invoke(app, ["dev", "config"])
    assert result.exit_code == 0, result.output
    assert "846213579" not in result.output
    assert json.loads(result.output)["pkcs11_pin"] == "**********"


def test_dev_hsm_init_makes_a_token_the_service_can_use(tmp_path: Path) -> None:
    # A subprocess: the PKCS#11 library reads SOFTHSM2_CONF when a process first loads it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VEILMATCH_", "SOFTHSM"))}
    env |= {"VEILMATCH_DATA_DIR": str(tmp_path), "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "veilmatch", "dev", "hsm-init"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "softhsm" / "pin").stat().st_mode & 0o077 == 0
    exports = dict(
        line.strip().removeprefix("export ").split("=", 1)
        for line in done.stdout.splitlines()
        if line.strip().startswith("export ")
    )
    pin = (tmp_path / "softhsm" / "pin").read_text().strip()
    assert pin not in done.stdout
    verifier = done.stdout.split("audit log verifier key: ")[1].split()[0]
    assert (tmp_path / "keys" / "audit-log.pub").read_text().strip() == verifier
    # a second run refuses to make a second token with the same label
    again = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "already holds a token" in again.stderr
    # the printed environment points a new process at the keys (not generating new ones)
    check = (
        "from core.settings import load_settings; from service.keys import load_service_keys;"
        "k = load_service_keys(load_settings(), create=False);"
        "print(k.log_signer.verifier().to_string()); k.close()"
    )
    shown = subprocess.run(
        [sys.executable, "-c", check],
        env=env | exports,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == verifier

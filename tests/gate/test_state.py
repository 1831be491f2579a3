"""``veilmatch gate init`` and the state directory: secrets 0600 and refused if looser,
the CSR signed by the CA holder's command, ``gate status`` without a service."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from crypto.devcerts import load_ca, make_dev_pki, sign_gate_csr
from gate.errors import GateStateError, InsecureSecretError
from gate.secretfile import read_secret, write_secret
from gate.state import GateConfig, GateState, init_state
from gate.tlsreq import certificate_info, make_key_and_csr
from veilmatch.cli import app

SECRETS = ("state.kek", "signing.key", "he-keys.sealed", "tls.key", "pseudonym.key")


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gate") / "state"
    config = GateConfig.new("lo-wu-07", "lo-wu", "https://127.0.0.1:9/")
    init_state(root, config, pseudonym_key=b"p" * 32)
    return root


def test_init_writes_every_secret_0600(state_dir: Path):
    assert os.stat(state_dir).st_mode & 0o777 == 0o700
    for name in SECRETS:
        assert os.stat(state_dir / name).st_mode & 0o777 == 0o600, name
    config = json.loads((state_dir / "gate.json").read_text())
    assert config["gate_id"] == "lo-wu-07" and config["service_url"] == "https://127.0.0.1:9"
    csr = x509.load_pem_x509_csr((state_dir / "tls.csr").read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string().startswith("CN=lo-wu-07")
    gate = GateState.load(state_dir)
    assert gate.pseudonym("E 1234567 ") == gate.pseudonym("e1234567")  # normalised
    assert len(gate.pseudonym("E1234567")) == 64


@pytest.mark.parametrize("name", SECRETS)
def test_a_group_readable_secret_is_refused(state_dir: Path, name: str):
    path = state_dir / name
    os.chmod(path, 0o640)
    try:
        with pytest.raises(InsecureSecretError, match="0640"):
            GateState.load(state_dir)
    finally:
        os.chmod(path, 0o600)
    GateState.load(state_dir)


def test_a_loose_state_directory_is_refused(state_dir: Path):
    os.chmod(state_dir, 0o755)
    try:
        with pytest.raises(GateStateError, match="0700"):
            GateState.load(state_dir)
    finally:
        os.chmod(state_dir, 0o700)


def test_a_symlinked_secret_is_refused(tmp_path: Path):
    target = tmp_path / "real"
    write_secret(target, b"k" * 32)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(InsecureSecretError, match="regular file"):
        read_secret(tmp_path / "link")
    with pytest.raises(GateStateError, match="already exists"):
        write_secret(target, b"other")


def test_init_refuses_what_it_must(tmp_path: Path, state_dir: Path):
    config = GateConfig.new("g-1", "s", "https://h:1")
    with pytest.raises(GateStateError, match="not empty"):
        init_state(state_dir, config, pseudonym_key=b"p" * 32)
    with pytest.raises(GateStateError, match="32 bytes"):
        init_state(tmp_path / "short", config, pseudonym_key=b"p" * 31)
    with pytest.raises(GateStateError, match="https"):
        GateConfig.new("g-1", "s", "http://h:1")
    with pytest.raises(GateStateError):
        GateConfig.new("g/1", "s", "https://h:1")
    with pytest.raises(GateStateError, match="parameter set"):
        GateConfig.new("g-1", "s", "https://h:1", "ckks-v9")


def test_a_client_needs_the_certificate(state_dir: Path):
    with pytest.raises(GateStateError, match=r"tls\.csr"):
        GateState.load(state_dir).client()


def test_sign_csr_checks_the_request(tmp_path: Path):
    pki = make_dev_pki(tmp_path / "ca", [])
    ca_cert, ca_key = load_ca(tmp_path / "ca")
    key, csr = make_key_and_csr("lo-wu-07")
    pem = sign_gate_csr(csr, ca_cert, ca_key, gate_id="lo-wu-07")
    info = certificate_info(pem, key)
    assert info.common_name == "lo-wu-07" and info.matches_key
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()))
    with pytest.raises(ValueError, match="not 'lo-wu-08'"):
        sign_gate_csr(csr, ca_cert, ca_key, gate_id="lo-wu-08")
    with pytest.raises(ValueError, match="PEM"):
        sign_gate_csr(b"junk", ca_cert, ca_key)
    other_key, _ = make_key_and_csr("lo-wu-07")
    assert not certificate_info(pem, other_key).matches_key


def test_cli_init_sign_status(tmp_path: Path, model_dir: Path, monkeypatch):
    monkeypatch.setenv("VEILMATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VEILMATCH_MODEL_DIR", str(model_dir))
    monkeypatch.delenv("VEILMATCH_CONFIG", raising=False)
    runner = CliRunner()
    key_file = tmp_path / "pseudonym.key"
    key_file.write_bytes(b"q" * 32)
    key_file.chmod(0o644)
    state = tmp_path / "state"
    args = ["gate", "init", "--gate-id", "g-7", "--site", "lo-wu", "--service", "https://x:1"]
    args += ["--dir", str(state), "--pseudonym-key", str(key_file)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "0644" in refused.output  # a loose key is not taken
    assert not state.exists()
    key_file.chmod(0o600)
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "compiling the decryption kernels: done" in done.output
    assert "sign-csr" in done.output
    assert runner.invoke(app, ["dev", "certs", "--gate", "unused"]).exit_code == 0
    signed = runner.invoke(
        app,
        [
            "dev",
            "sign-csr",
            str(state / "tls.csr"),
            "--gate-id",
            "g-7",
            "--out",
            str(state / "tls.crt"),
        ],
    )
    assert signed.exit_code == 0, signed.output
    report = runner.invoke(app, ["gate", "status", "--dir", str(state), "--json", "--offline"])
    assert report.exit_code == 0, report.output
    data = json.loads(report.stdout)
    assert data["certificate"]["state"] == "ok" and data["offline_queue"]["items"] == 0
    assert "service" not in data

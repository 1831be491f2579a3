"""The service over real TLS, started as a real process."""

import json
import os
import signal
import ssl
import subprocess
import sys
import time

import httpx
import pytest

from crypto.devcerts import make_dev_pki
from veilmatch.localrun import free_port


def wait_healthy(url: str, ca, timeout_s: float = 60.0) -> dict[str, object]:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, verify=context, timeout=2.0)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILMATCH_")}
    env.update({"VEILMATCH_DATA_DIR": str(tmp_path / "var")}, **extra)
    return env


def test_serves_https_health_with_request_id_and_json_logs(tmp_path):
    pki = make_dev_pki(tmp_path / "var" / "keys", ["g1"])
    port = free_port()
    log_path = tmp_path / "serve.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "veilmatch",
            "serve",
            "--port",
            str(port),
            "--gate-port",
            str(free_port()),
        ],
        env=_env(tmp_path),
        stderr=log_file,  # a file, not a pipe: an undrained pipe would block the server
    )
    try:
        health = wait_healthy(f"https://127.0.0.1:{port}/healthz", pki.ca_cert)
        assert health["status"] == "ok" and health["schema"] == "current"
        response = httpx.post(
            f"https://127.0.0.1:{port}/healthz",
            verify=ssl.create_default_context(cafile=str(pki.ca_cert)),
            content=b"SECRET-BODY-MARKER",
            headers={"X-Request-ID": "req-abc-123"},
        )
        assert response.headers["x-request-id"] == "req-abc-123"
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log_file.close()
    stderr = log_path.read_text()
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(entry.get("request_id") == "req-abc-123" for entry in lines)
    assert "SECRET-BODY-MARKER" not in stderr


def test_missing_certificate_is_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "veilmatch", "serve"],
        env=_env(tmp_path, VEILMATCH_TLS_CERT=str(tmp_path / "missing.crt")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "VEILMATCH_TLS_CERT" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_database_is_one_clear_line(tmp_path):
    make_dev_pki(tmp_path / "var" / "keys", [])
    result = subprocess.run(
        [sys.executable, "-m", "veilmatch", "db", "upgrade"],
        env=_env(tmp_path, VEILMATCH_DATABASE_URL="postgresql://postgres@127.0.0.1:1/none"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "VEILMATCH_DATABASE_URL" in result.stderr and "Traceback" not in result.stderr

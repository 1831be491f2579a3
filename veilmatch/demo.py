"""``make demo``: the main job on embedded defaults.

For now: make development certificates, start the HTTPS service, check its health
endpoint over verified TLS, and stop it cleanly. Later stages (gates, watchlist,
alerts, audit verification) extend this story.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from crypto.devcerts import make_dev_pki
from veilmatch.settings import load_settings


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, ca: Path, timeout_s: float = 30.0) -> dict[str, object]:
    """Poll ``url`` until it answers 200 over TLS verified against ``ca``."""
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, verify=context, timeout=2.0)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"service did not become healthy at {url}: {last}")


def main() -> int:
    """Run the demo; returns the process exit status."""
    started = time.perf_counter()
    settings = load_settings()
    assert settings.key_dir is not None and settings.tls_ca is not None
    print("veilmatch demo (embedded defaults: SQLite, embedded OPA)")
    pki = make_dev_pki(Path(settings.key_dir), ["shenzhen-bay-1", "lo-wu-1"])
    print(f"  1. development PKI ready in {settings.key_dir} (CA, server, 2 gate certificates)")
    port = free_port()
    env = dict(os.environ, VEILMATCH_STAFF_PORT=str(port))
    server = subprocess.Popen([sys.executable, "-m", "veilmatch", "serve"], env=env)
    try:
        health = wait_healthy(f"https://127.0.0.1:{port}/healthz", pki.ca_cert)
        print(
            f"  2. HTTPS service answered its health check on port {port}: "
            f"status={health['status']} database={health['database']} schema={health['schema']}"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
    # uvicorn re-raises the signal after a graceful shutdown, so -SIGTERM is clean.
    clean = code in (0, -signal.SIGTERM)
    print(f"  3. service {'stopped cleanly' if clean else 'failed'} (exit {code})")
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())

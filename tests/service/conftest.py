"""A real service per test module: both TLS listeners on free ports, real database.

The service runs in a background thread with its own event loop, so tests can reach
its context (clock, pool, audit log). Parametrised over SQLite and, when
``VEILMATCH_TEST_POSTGRES_URL`` is set, PostgreSQL with a fresh schema.

The service clock is shifted so that local time at the checkpoints (UTC+8) is noon
when the module starts: the match policy only allows searches in opening hours.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from core.db import make_engine
from core.logs import configure_logging
from core.migrate import upgrade
from core.settings import Settings, load_settings
from crypto.devcerts import DevPki, issue_gate_cert, make_dev_pki
from service.context import ServiceContext
from service.enrol_photos import PhotoEmbedder
from service.lifecycle import build_context, start
from service.server import Listeners
from tests.conftest import BACKENDS, POSTGRES_URL

ADMIN_PASSWORD = "admin-password-for-tests"
STAFF_PASSWORD = "staff-password-for-tests"
GATES = ["gate-a", "gate-b", "gate-c", "gate-d", "gate-e"]


def raise_test_alert(conn: Any, name: str, raised: dt.datetime) -> str:
    """An ``open`` alert for query ``q-{name}`` raised at ``raised``, with placeholder
    decision, bundle and gallery fields (retention and review tests); returns its id."""
    from service.alerts import create_alert

    return create_alert(
        conn,
        gate_id="gate-x",
        query_id=f"q-{name}",
        entry_ids=["wl-1"],
        reason="r",
        severity="medium",
        decision_id="d",
        bundle_digest="b",
        gallery_version="g",
        now=raised,
    )


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shifted_clock() -> tuple[Any, float]:
    """A clock whose HK local time starts at 12:00 today, and its offset in seconds."""
    now = dt.datetime.now(dt.UTC)
    target = now.replace(hour=4, minute=0, second=0, microsecond=0)  # 12:00 at UTC+8
    offset = (target - now).total_seconds()
    return (lambda: dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)), offset


@dataclass
class RunningService:
    settings: Settings
    ctx: ServiceContext
    pki: DevPki
    rogue_pki: DevPki
    staff_url: str
    gate_url: str
    offset_s: float
    log_stream: io.StringIO
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def ca_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def gate_time(self) -> float:
        return time.time() + self.offset_s

    def staff(self, role_user: str | None = None) -> httpx.Client:
        headers = {}
        if role_user is not None:
            headers["Authorization"] = f"Bearer {self.token(role_user)}"
        return httpx.Client(
            base_url=self.staff_url, verify=self.ca_context, headers=headers, timeout=60
        )

    def token(self, username: str) -> str:
        if username not in self.tokens:
            password = ADMIN_PASSWORD if username == "admin" else STAFF_PASSWORD
            with httpx.Client(base_url=self.staff_url, verify=self.ca_context) as client:
                response = client.post(
                    "/api/v1/auth/token", json={"username": username, "password": password}
                )
            assert response.status_code == 200, response.text
            self.tokens[username] = response.json()["access_token"]
        return self.tokens[username]

    def gate_http(self, gate_id: str, rogue: bool = False) -> httpx.Client:
        pki = self.rogue_pki if rogue else self.pki
        cert, key = pki.gate_certs[gate_id]
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(cert), str(key))
        return httpx.Client(base_url=self.gate_url, verify=context, timeout=120)

    def approved_gate(self, gate_id: str, site: str) -> Any:
        """A gate client with fresh Ed25519 and SEAL keys, registered and approved by
        the admin. The caller closes it."""
        from crypto.signing import SigningKey
        from gate.client import GateClient, SealGateCrypto

        cert, key = self.pki.gate_certs[gate_id]
        client = GateClient(
            self.gate_url,
            gate_id=gate_id,
            cert=cert,
            key=key,
            ca=self.pki.ca_cert,
            signing_key=SigningKey.generate(),
            he=SealGateCrypto.generate(),
            clock=self.gate_time,
        )
        client.register(site=site)
        with self.staff("admin") as admin:
            assert admin.post(f"/api/v1/gates/{gate_id}/approve").status_code == 200
        return client

    def scrape_token(self) -> str:
        """The deployment's ``/metrics`` scrape token (created in key_dir on start)."""
        from service.metrics import SCRAPE_TOKEN_FILE

        return (Path(self.settings.key_dir or ".") / SCRAPE_TOKEN_FILE).read_text().strip()

    def metrics(self) -> httpx.Response:
        """``GET /metrics`` as the Prometheus scraper (with the scrape token)."""
        with self.staff() as client:
            return client.get(
                "/metrics", headers={"Authorization": f"Bearer {self.scrape_token()}"}
            )

    def denied_codes(self, actor: str = "system") -> list[str]:
        """Codes of every ``access.denied`` by ``actor``, unauthenticated refusals
        included: their counters are audited first (``service.denials.flush_all``), and
        an aggregate entry contributes each code it counted."""
        from service.denials import AGGREGATE_CODE, flush_all

        flush_all(self.ctx)
        codes: list[str] = []
        for entry in self.audit_entries(types=["access.denied"]):
            if entry.header.actor != actor or not entry.payload:
                continue
            if entry.payload["code"] == AGGREGATE_CODE:
                codes += [line["code"] for line in entry.payload["denials"]]
            else:
                codes.append(entry.payload["code"])
        return codes

    def audit_entries(self, **kwargs: Any) -> list[Any]:
        log: Any = self.ctx.audit.log  # type: ignore[attr-defined]
        return list(log.entries(0, None, limit=100_000, **kwargs))


def _backend_settings(backend: str, tmp: Path, **overrides: Any) -> tuple[Settings, Any]:
    if backend == "sqlite":
        settings = load_settings(
            data_dir=tmp, database_url=f"sqlite:///{tmp / 'svc.db'}", **overrides
        )
        return settings, None
    schema = f"svc_{uuid.uuid4().hex[:12]}"
    admin = create_engine(load_settings(database_url=POSTGRES_URL).sqlalchemy_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    settings = load_settings(
        data_dir=tmp, database_url=POSTGRES_URL, database_schema=schema, **overrides
    )

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return settings, drop


def run_service(backend: str, tmp: Path, **overrides: Any) -> Iterator[RunningService]:
    """Start a service; yields it; stops it and cleans the database afterwards."""
    pki = make_dev_pki(tmp / "keys", GATES)
    rogue = make_dev_pki(tmp / "rogue", ["gate-a"])
    staff_port, gate_port = free_port(), free_port()
    settings, cleanup = _backend_settings(
        backend,
        tmp,
        key_dir=tmp / "keys",
        admin_password=ADMIN_PASSWORD,
        staff_port=staff_port,
        gate_port=gate_port,
        **{"match_workers": 1, **overrides},
    )
    stream = io.StringIO()
    configure_logging("INFO", stream)
    engine = make_engine(settings)
    upgrade(engine)
    clock, offset = shifted_clock()
    ctx = build_context(settings, engine, clock=clock, face_embedder=PhotoEmbedder(settings))
    start(ctx)
    listeners = Listeners(ctx, staff_port=staff_port, gate_port=gate_port)
    thread = threading.Thread(target=lambda: asyncio.run(listeners.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not listeners.started:
        assert time.monotonic() < deadline, "service did not start"
        time.sleep(0.05)
    running = RunningService(
        settings,
        ctx,
        pki,
        rogue,
        f"https://127.0.0.1:{staff_port}",
        f"https://127.0.0.1:{gate_port}",
        offset,
        stream,
    )
    _make_staff(running)
    try:
        yield running
    finally:
        listeners.request_exit()
        thread.join(timeout=60)
        engine.dispose()
        logging.getLogger().handlers.clear()
        if cleanup is not None:
            cleanup()


STAFF = {
    "officer1": "officer",
    "officer2": "officer",
    "supervisor1": "supervisor",
    "supervisor2": "supervisor",
    "oversight1": "oversight",
    "legal1": "legal",
    "admin2": "admin",
}


def _make_staff(service: RunningService) -> None:
    with service.staff("admin") as client:
        for username, role in STAFF.items():
            response = client.post(
                "/api/v1/accounts",
                json={"username": username, "password": STAFF_PASSWORD, "role": role},
            )
            assert response.status_code == 201, response.text


@pytest.fixture(scope="module", params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    yield from run_service(request.param, tmp_path_factory.mktemp(f"svc-{request.param}"))


def problem(response: httpx.Response) -> dict[str, Any]:
    """The problem+json body, checking the media type."""
    assert response.headers["content-type"].startswith("application/problem+json"), (
        response.status_code,
        response.text[:300],
    )
    return dict(json.loads(response.text))


__all__ = ["GATES", "STAFF", "RunningService", "issue_gate_cert", "problem", "run_service"]

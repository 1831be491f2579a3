"""Run a whole local deployment for the demo, the gate simulator, load and fault tests.

A :class:`LocalStack` is one ``veilmatch`` service in a child process (both listeners,
real TLS and mutual TLS, the configured database), with a fresh data directory,
development PKI and a bootstrap admin. Helpers seed a watchlist (the same functions
the staff API uses, with their audit events, in bulk), create staff accounts and
register gates through the gate API with an admin's approval.

The service clock can be shifted by a fixed offset (``clock_offset_s``): the match
policy only allows searches while the checkpoints are open (06:30-24:00 Hong Kong
time), so runs at other hours pin the service and the gates to a chosen local time
(noon by default). The offset is the same for the service and every gate, so request
signatures stay fresh. Everything else is real: the child is ``python -m
veilmatch.localrun serve``, the same wiring as ``veilmatch serve`` plus the clock.

Usage::

    stack = LocalStack.create(Path("var/demo"), gates=["shenzhen-bay-1"], wipe=True)
    seed_watchlist(stack.settings, templates, now=stack.now())
    stack.start()
    ...
    stack.stop()
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from audit.keys import SEQUENCER_KEY_FILE, load_or_create_sequencer_key
from core.db import make_engine
from core.errors import VeilmatchError
from core.migrate import upgrade
from core.settings import Settings, load_settings
from crypto.devcerts import DevPki, make_dev_pki
from crypto.signing import SigningKey
from gate.client import GateClient
from service import watchlist
from service.adapters import AuditLogAdapter, load_or_create_log_signer
from service.context import load_or_create_kek
from service.ports import ServiceEvent
from service.server import serve

__all__ = [
    "LocalStack",
    "StackError",
    "free_port",
    "hk_noon_offset",
    "seed_watchlist",
]

#: Local time at the checkpoints (Hong Kong and Shenzhen are UTC+8, no daylight saving).
HK_UTC_OFFSET = dt.timedelta(hours=8)
SERVICE_STOP_TIMEOUT_S = 60.0


class StackError(VeilmatchError):
    """The local deployment could not be started, reached or stopped."""


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hk_noon_offset(
    local_time: dt.time = dt.time(12, 0), *, now: dt.datetime | None = None
) -> float:
    """Seconds to add to the real clock so Hong Kong local time reads ``local_time`` today."""
    now = now or dt.datetime.now(dt.UTC)
    local = now + HK_UTC_OFFSET
    target = dt.datetime.combine(local.date(), local_time, tzinfo=dt.UTC) - HK_UTC_OFFSET
    return (target - now).total_seconds()


@dataclass
class LocalStack:
    """One service child process and everything needed to talk to it."""

    settings: Settings
    pki: DevPki
    admin_password: str
    staff_port: int
    gate_port: int
    clock_offset_s: float
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    # --- construction -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        data_dir: Path,
        *,
        gates: Sequence[str] = (),
        wipe: bool = False,
        database_url: str = "",
        database_schema: str | None = None,
        clock_offset_s: float | None = None,
        match_workers: int = 2,
        extra_env: dict[str, str] | None = None,
    ) -> LocalStack:
        """Prepare a data directory, development PKI and settings (nothing started yet).

        With ``wipe`` the directory is deleted first so every run starts from nothing.
        ``clock_offset_s`` defaults to the offset that makes it noon in Hong Kong.
        """
        data_dir = Path(data_dir)
        if wipe and data_dir.exists():
            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        key_dir = data_dir / "keys"
        pki = make_dev_pki(key_dir, list(gates))
        admin_password = secrets.token_urlsafe(18)
        staff_port, gate_port = free_port(), free_port()
        env = {
            "VEILMATCH_DATA_DIR": str(data_dir),
            "VEILMATCH_DATABASE_URL": database_url,
            "VEILMATCH_ADMIN_PASSWORD": admin_password,
            "VEILMATCH_TOKEN_SECRET": secrets.token_urlsafe(32),
            "VEILMATCH_METRICS_TOKEN": secrets.token_urlsafe(32),
            "VEILMATCH_STAFF_PORT": str(staff_port),
            "VEILMATCH_GATE_PORT": str(gate_port),
            "VEILMATCH_MATCH_WORKERS": str(match_workers),
            "VEILMATCH_LOG_LEVEL": "WARNING",
        }
        if database_schema:
            env["VEILMATCH_DATABASE_SCHEMA"] = database_schema
        env.update(extra_env or {})
        settings = load_settings(**_settings_kwargs(env))
        offset = hk_noon_offset() if clock_offset_s is None else clock_offset_s
        return cls(settings, pki, admin_password, staff_port, gate_port, offset, env)

    # --- clocks and clients -------------------------------------------------------

    def now(self) -> dt.datetime:
        """The service's clock (UTC)."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.clock_offset_s)

    def gate_time(self) -> float:
        """The gates' clock (POSIX seconds), shifted like the service's."""
        return time.time() + self.clock_offset_s

    @property
    def staff_url(self) -> str:
        return f"https://127.0.0.1:{self.staff_port}"

    @property
    def gate_url(self) -> str:
        return f"https://127.0.0.1:{self.gate_port}"

    def tls_context(self) -> ssl.SSLContext:
        """Verifies the service against the development CA."""
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def staff(self, username: str | None = None, timeout_s: float = 120.0) -> httpx.Client:
        """A staff API client, logged in as ``username`` when given."""
        headers = {}
        if username is not None:
            headers["Authorization"] = f"Bearer {self.tokens[username]}"
        return httpx.Client(
            base_url=self.staff_url, verify=self.tls_context(), headers=headers, timeout=timeout_s
        )

    def scrape_metrics(self) -> str:
        """``GET /metrics`` as the deployment's Prometheus scraper (its scrape token)."""
        token = self.env["VEILMATCH_METRICS_TOKEN"]
        with self.staff() as client:
            response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        _expect(response, 200, "scrape /metrics")
        return response.text

    def login(self, username: str, password: str) -> str:
        """Get and remember a bearer token for ``username``."""
        with self.staff() as client:
            response = client.post(
                "/api/v1/auth/token", json={"username": username, "password": password}
            )
        _expect(response, 200, f"login as {username}")
        token = str(response.json()["access_token"])
        self.tokens[username] = token
        return token

    def create_accounts(self, accounts: dict[str, tuple[str, str]]) -> None:
        """Create staff accounts ``{username: (role, password)}`` as the admin, then log in."""
        if "admin" not in self.tokens:
            self.login("admin", self.admin_password)
        with self.staff("admin") as client:
            for username, (role, password) in accounts.items():
                response = client.post(
                    "/api/v1/accounts",
                    json={"username": username, "password": password, "role": role},
                )
                _expect(response, 201, f"create account {username}")
        for username, (_role, password) in accounts.items():
            self.login(username, password)

    # --- gates --------------------------------------------------------------------

    def gate_client(self, gate_id: str, he: Any, signing_key: Any = None) -> Any:
        """A :class:`gate.client.GateClient` for ``gate_id`` (its dev certificate, our clock)."""
        cert, key = self.pki.gate_certs[gate_id]
        return GateClient(
            self.gate_url,
            gate_id=gate_id,
            cert=cert,
            key=key,
            ca=self.pki.ca_cert,
            signing_key=signing_key or SigningKey.generate(),
            he=he,
            clock=self.gate_time,
            timeout_s=120.0,
        )

    def register_gates(
        self, gates: Sequence[tuple[str, str]], he_factory: Callable[[], Any]
    ) -> dict[str, Any]:
        """Register ``(gate_id, site)`` pairs with fresh keys and approve them as the admin."""
        if "admin" not in self.tokens:
            self.login("admin", self.admin_password)
        clients: dict[str, Any] = {}
        with self.staff("admin") as admin:
            for gate_id, site in gates:
                client = self.gate_client(gate_id, he_factory())
                client.register(site=site)
                _expect(admin.post(f"/api/v1/gates/{gate_id}/approve"), 200, f"approve {gate_id}")
                clients[gate_id] = client
        return clients

    # --- process lifecycle --------------------------------------------------------

    def start(self, timeout_s: float = 180.0) -> float:
        """Start the service child and wait until it is ready; returns seconds taken."""
        if self.process is not None and self.process.poll() is None:
            raise StackError("the service is already running")
        started = time.perf_counter()
        assert self.settings.data_dir is not None
        self.log_path = Path(self.settings.data_dir) / "service.log"
        env = dict(os.environ, **self.env, PYTHONUNBUFFERED="1")
        env.pop("VEILMATCH_CONFIG", None)
        command = [
            sys.executable,
            "-m",
            "veilmatch.localrun",
            "serve",
            "--clock-offset-s",
            repr(self.clock_offset_s),
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self.wait_ready(timeout_s)
        except StackError:
            self.kill()  # never leave a half-started service (and its workers) behind
            raise
        self.tokens.clear()
        return time.perf_counter() - started

    def wait_ready(self, timeout_s: float) -> None:
        """Poll ``/readyz`` until the service answers ready (or the child dies)."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        with httpx.Client(verify=self.tls_context(), timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise StackError(
                        f"service exited with status {self.process.returncode} during start; "
                        f"see {self.log_path}"
                    )
                try:
                    response = client.get(f"{self.staff_url}/readyz")
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.2)
        raise StackError(f"service not ready after {timeout_s:.0f} s ({last}); see {self.log_path}")

    def stop(self) -> int:
        """SIGTERM the service (graceful: drains matches, final checkpoint); its exit code.

        A clean stop is 0 or -SIGTERM (uvicorn may re-raise the signal after shutdown).
        """
        process = self.process
        if process is None:
            return 0
        code = terminate(process, SERVICE_STOP_TIMEOUT_S)
        self.process = None
        _reap_group(process)
        return code

    def kill(self) -> None:
        """SIGKILL the service and its worker processes (a crash, for fault tests)."""
        process = self.process
        if process is None:
            return
        _kill_group(process)
        process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self.process is not None and self.process.poll() is None

    def engine(self) -> Any:
        """A new SQLAlchemy engine on the stack's database (caller disposes it)."""
        return make_engine(self.settings)

    @contextmanager
    def running_service(self) -> Iterator[LocalStack]:
        """Start, yield, and always stop."""
        self.start()
        try:
            yield self
        finally:
            self.stop()


def terminate(process: subprocess.Popen[Any], timeout_s: float) -> int:
    """SIGTERM a child started in its own process group, SIGKILL the group if it has not
    exited after ``timeout_s`` seconds; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()
    return int(process.returncode)


def _kill_group(process: subprocess.Popen[Any]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _reap_group(process: subprocess.Popen[Any]) -> None:
    """Kill leftover members of the child's process group (HE workers) after it exited."""
    try:
        os.killpg(process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return
    _kill_group(process)


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise StackError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")


def _settings_kwargs(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        key = name.removeprefix("VEILMATCH_").lower()
        if key in Settings.model_fields:
            out[key] = value
    return out


# --- watchlist seeding ----------------------------------------------------------------


@dataclass(frozen=True)
class SeedLabels:
    """Who enrols and approves bulk-seeded entries, and what the entries say."""

    subject_prefix: str = "synthetic"
    officer: str = "seed-officer"
    supervisor: str = "seed-supervisor"
    legal_basis: str = "hk-cap60"
    category: str = "parallel_trading"
    validity: dt.timedelta = dt.timedelta(days=90)


SEED_LABELS = SeedLabels()


def _seed_events(entry_id: str, labels: SeedLabels) -> list[ServiceEvent]:
    """The ``watchlist.enrol`` and ``watchlist.approve`` events the staff API would write."""
    subjects = (f"watchlist:{entry_id}",)
    enrol = {
        "source": "bulk-seed",
        "legal_basis": labels.legal_basis,
        "category": labels.category,
        "status": "pending",
    }
    approve = {"legal_basis": labels.legal_basis}
    return [
        ServiceEvent("watchlist.enrol", f"officer:{labels.officer}", subjects, enrol),
        ServiceEvent("watchlist.approve", f"supervisor:{labels.supervisor}", subjects, approve),
    ]


def seed_watchlist(
    settings: Settings,
    templates: npt.NDArray[np.float32],
    *,
    now: dt.datetime,
    labels: SeedLabels = SEED_LABELS,
    batch: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Enrol and approve ``templates`` (rows, unit norm) offline, before the service starts.

    Uses the service's own ``watchlist.enrol_template``/``approve_entry`` (sealed at rest
    with the service's KEK) and writes the same ``watchlist.enrol`` and
    ``watchlist.approve`` audit events as the staff API, in one transaction per batch.
    This is the bulk path for load tests: through the API each approval rebuilds the
    gallery. Returns the entry ids in row order.
    """
    assert settings.key_dir is not None and settings.kek_file is not None
    engine = make_engine(settings)
    try:
        upgrade(engine)
        kek = load_or_create_kek(Path(settings.kek_file))
        audit = AuditLogAdapter(
            engine,
            load_or_create_log_signer(Path(settings.key_dir) / "audit-log.key"),
            sequencer=load_or_create_sequencer_key(Path(settings.key_dir) / SEQUENCER_KEY_FILE),
        )
        ids: list[str] = []
        expires = now + labels.validity
        for start in range(0, len(templates), batch):
            with engine.begin() as conn:
                events: list[ServiceEvent] = []
                for row in range(start, min(start + batch, len(templates))):
                    template = watchlist.normalise_template(templates[row].tolist())
                    entry_id = watchlist.enrol_template(
                        conn,
                        kek,
                        template,
                        f"{labels.subject_prefix}-{row:07d}",
                        labels.legal_basis,
                        labels.category,
                        expires,
                        officer=labels.officer,
                        now=now,
                    )
                    watchlist.approve_entry(conn, entry_id, labels.supervisor, now)
                    ids.append(entry_id)
                    events += _seed_events(entry_id, labels)
                audit.append_in(conn, events)
            if progress is not None:
                progress(len(ids))
        audit.flush()
        return ids
    finally:
        engine.dispose()


# --- the child process ------------------------------------------------------------------


def _serve_child(clock_offset_s: float) -> None:
    """``veilmatch serve`` with a shifted clock (runs in the child process)."""
    offset = dt.timedelta(seconds=clock_offset_s)

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + offset

    serve(load_settings(), clock=clock)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m veilmatch.localrun serve --clock-offset-s S``."""
    parser = argparse.ArgumentParser(prog="veilmatch.localrun")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--clock-offset-s", type=float, default=0.0)
    args = parser.parse_args(argv)
    _serve_child(args.clock_offset_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())

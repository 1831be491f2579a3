"""Fault tests under load, with real encrypted probes over mutual TLS:

- the service is SIGKILLed mid-load and restarted: no acknowledged audit entry is lost,
  the log verifies, gates drain their offline queues;
- the database is briefly unavailable: requests fail with clean problem responses,
  nothing is half-written, service recovers;
- a broken policy is loaded under load: the load is refused, the old policy keeps
  serving every decision.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import create_engine, text

from crypto.atrest import FileKek
from gate.offline_queue import OfflineQueue
from tests.conftest import POSTGRES_URL
from tests.e2e.conftest import Fleet, Traffic
from veilmatch.reconcile import reconcile


def _audit_query_ids(settings: Any) -> set[str]:
    """Query ids with a ``match.query`` entry (read straight from the log)."""
    from audit.keys import LOG_KEY_FILE, load_signer
    from audit.log import AuditLog
    from core.db import make_engine

    engine = make_engine(settings)
    try:
        log = AuditLog(engine, load_signer(Path(settings.key_dir) / LOG_KEY_FILE))
        return {
            s.removeprefix("query:")
            for e in log.entries(0, None, types=["match.query"], limit=1_000_000)
            for s in e.header.subjects
            if s.startswith("query:")
        }
    finally:
        engine.dispose()


def _pending_ids(settings: Any) -> set[str]:
    from core.db import make_engine
    from service.tables import pending_queries

    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            return {str(r.id) for r in conn.execute(sa.select(pending_queries.c.id))}
    finally:
        engine.dispose()


def test_sigkill_mid_load_then_restart(fleet: Fleet, tmp_path: Path) -> None:
    kek = FileKek.generate(tmp_path / "gate-queue.kek")
    queues = {g: OfflineQueue(tmp_path / f"queue-{g}.sqlite3", kek) for g in fleet.clients}
    traffic = Traffic(fleet, queues=queues).start()
    try:
        traffic.wait_for(6)
        fleet.stack.kill()
        acknowledged_before_kill = dict(traffic.outcomes)
        deadline = time.monotonic() + 60
        while traffic.queued < len(fleet.clients):
            assert time.monotonic() < deadline, "lanes did not fall back to their queues"
            time.sleep(0.1)
    finally:
        traffic.stop()
    backlog = sum(len(q) for q in queues.values())
    assert backlog >= len(fleet.clients)

    fleet.stack.start()
    drained = 0
    for gate, client in fleet.clients.items():
        report = client.drain(queues[gate], traffic.record)
        assert report.error is None and report.remaining == 0, (gate, report)
        drained += report.sent
    assert drained == backlog
    fleet.close()  # an idle keep-alive connection holds up the graceful stop for 30 s
    assert fleet.stack.stop() in (0, -15)

    check = reconcile(
        fleet.stack.settings,
        set(traffic.outcomes),
        traffic.outcomes,
        export_dir=tmp_path / "export",
    )
    assert check.ok, check.problems
    assert set(acknowledged_before_kill) <= _audit_query_ids(fleet.stack.settings)
    assert check.audit_match_decisions >= len(traffic.outcomes)


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True)


def _sqlite_outage(fleet: Fleet, seconds: float) -> None:
    """Make the database and its WAL immutable (refused even to root), then restore."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not available to make the database unwritable")
    db = Path(fleet.stack.settings.data_dir) / "veilmatch.db"
    files = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]
    try:
        _chattr("+i", *files)
    except subprocess.CalledProcessError:
        pytest.skip("cannot set the immutable attribute here")
    try:
        time.sleep(seconds)
    finally:
        _chattr("-i", *files)


def _postgres_outage(fleet: Fleet, seconds: float) -> None:
    """Terminate the service's backends (by its unique application_name) repeatedly."""
    admin = create_engine(POSTGRES_URL)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with admin.begin() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": fleet.application_name},
                )
            time.sleep(0.1)
    finally:
        admin.dispose()


def test_database_briefly_unavailable(fleet: Fleet, tmp_path: Path) -> None:
    traffic = Traffic(fleet).start()
    try:
        traffic.wait_for(3)
        if fleet.backend == "sqlite":
            _sqlite_outage(fleet, 4.0)
        else:
            _postgres_outage(fleet, 4.0)
        after_outage = len(traffic.outcomes)
        traffic.wait_for(after_outage + 3)  # the service recovered by itself
    finally:
        traffic.stop()
        fleet.close()
    assert traffic.unreachable == 0, "the service dropped connections instead of answering"
    # Every refusal was a problem+json response with a stable code.
    assert all(code not in ("unknown", "None") for _status, code in traffic.refused)
    assert fleet.stack.stop() in (0, -15)

    # Nothing half-written: every pending-query row has its audit leaf and vice versa,
    # every decision a gate received is recorded, and the log verifies.
    assert _pending_ids(fleet.stack.settings) == _audit_query_ids(fleet.stack.settings)
    check = reconcile(
        fleet.stack.settings, set(traffic.outcomes), traffic.outcomes, export_dir=tmp_path / "x"
    )
    assert check.ok, check.problems
    statuses = {status for status, _code in traffic.refused}
    assert statuses == {503}, traffic.refused  # the outage was felt, and only as 503


def test_broken_policy_reload_under_load_keeps_old_policy(tmp_path: Path) -> None:
    from policy.bundles import PolicyBundle, default_bundle_dir
    from policy.errors import PolicyLoadError
    from tests.service.conftest import run_service
    from veilmatch.simulator import SyntheticPopulation

    service_gen = run_service("sqlite", tmp_path)
    service = next(service_gen)
    try:
        population = SyntheticPopulation.generate(
            5, rng=np.random.default_rng(9), threshold=service.settings.match_threshold
        )
        with service.staff("officer1") as officer, service.staff("supervisor1") as sup:
            for i, template in enumerate(population.watchlist):
                entry = officer.post(
                    "/api/v1/watchlist",
                    json={
                        "subject_ref": f"synthetic-{i}",
                        "template": template.tolist(),
                        "legal_basis": "hk-cap60",
                        "category": "parallel_trading",
                        "expires_at": (service.ctx.now() + dt.timedelta(days=30)).isoformat(),
                    },
                )
                assert entry.status_code == 201, entry.text
                assert sup.post(f"/api/v1/watchlist/{entry.json()['id']}/approve").is_success
        clients = {}
        with service.staff("admin") as admin:
            for gate in ("gate-a", "gate-b"):
                client = _in_process_client(service, gate)
                client.register(site="lo-wu")
                assert admin.post(f"/api/v1/gates/{gate}/approve").is_success
                clients[gate] = client
        lanes = SimpleNamespace(clients=clients, population=population)
        engine = service.ctx.policy.engine  # type: ignore[attr-defined]
        digest = engine.bundle_digest
        broken = PolicyBundle.from_dir(default_bundle_dir()).with_file(
            "veilmatch/match/match.rego", b"package veilmatch.match\n\ndecision := {\n"
        )
        traffic = Traffic(lanes, hit_rate=0.3).start()
        try:
            traffic.wait_for(3)
            with pytest.raises(PolicyLoadError):
                engine.load(broken)
            before = len(traffic.outcomes)
            traffic.wait_for(before + 4)
        finally:
            traffic.stop()
            for client in clients.values():
                client.close()
        assert engine.bundle_digest == digest
        assert not traffic.refused and traffic.unreachable == 0
        decisions = service.audit_entries(types=["match.decision"])
        assert len(decisions) >= before + 4
        assert {e.header.policy_digest for e in decisions} == {digest}
    finally:
        for _ in service_gen:
            pass


def _in_process_client(service: Any, gate: str) -> Any:
    from crypto.signing import SigningKey
    from gate.client import GateClient
    from veilmatch.simulator import HeGateCrypto

    cert, key = service.pki.gate_certs[gate]
    return GateClient(
        service.gate_url,
        gate_id=gate,
        cert=cert,
        key=key,
        ca=service.pki.ca_cert,
        signing_key=SigningKey.generate(),
        he=HeGateCrypto.generate(),
        clock=service.gate_time,
    )

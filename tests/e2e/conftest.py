"""End-to-end fixtures: a real service in a child process (``veilmatch.localrun``), a small
synthetic watchlist, registered gates, and lanes that keep sending real encrypted
probes while a test breaks something.

Parametrised over SQLite and, when ``VEILMATCH_TEST_POSTGRES_URL`` is set, PostgreSQL
with a fresh schema whose connections carry a unique ``application_name`` (so a test
can terminate exactly the service's backends and nobody else's).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from gate.client import MatchOutcome, ServiceRefusedError, ServiceUnreachableError
from policy.bundles import default_bundle_dir
from tests.conftest import BACKENDS, POSTGRES_URL
from veilmatch.localrun import LocalStack, seed_watchlist
from veilmatch.simulator import HeGateCrypto, SyntheticPopulation

WATCHLIST_SIZE = 300
GATES = [("sb-01", "shenzhen-bay"), ("lw-01", "lo-wu"), ("sb-02", "shenzhen-bay")]


@dataclass
class Fleet:
    """A started stack with registered gate clients and the synthetic population."""

    stack: LocalStack
    population: SyntheticPopulation
    clients: dict[str, Any]
    backend: str
    application_name: str | None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _make_fleet(backend: str, tmp: Path) -> Iterator[Fleet]:
    schema = app_name = None
    database_url = ""
    admin = None
    if backend == "postgres":
        schema = f"e2e_{uuid.uuid4().hex[:10]}"
        app_name = f"vm-{schema}"
        admin = create_engine(POSTGRES_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in POSTGRES_URL else "?"
        database_url = f"{POSTGRES_URL}{sep}application_name={app_name}"
    stack = LocalStack.create(
        tmp / "stack",
        gates=[g for g, _ in GATES],
        database_url=database_url,
        database_schema=schema,
        match_workers=1,
    )
    population = SyntheticPopulation.generate(
        WATCHLIST_SIZE, rng=np.random.default_rng(5), threshold=stack.settings.match_threshold
    )
    seed_watchlist(stack.settings, population.watchlist, now=stack.now())
    stack.start()
    fleet = None
    try:
        clients = stack.register_gates(GATES, HeGateCrypto.generate)
        fleet = Fleet(stack, population, clients, backend, app_name)
        yield fleet
    finally:
        if fleet is not None:
            fleet.close()
        stack.stop()
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()


@pytest.fixture(params=BACKENDS)
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    yield from _make_fleet(request.param, tmp_path)


class HasLanes(Protocol):
    """What :class:`Traffic` needs: gate clients and travellers to send."""

    clients: dict[str, Any]
    population: SyntheticPopulation


def gate_rate_limit() -> int:
    """The match policy's searches per gate per minute (shipped bundle parameters)."""
    data = default_bundle_dir() / "params" / "match" / "data.json"
    return int(json.loads(data.read_text())["rate_limit_per_minute"])


#: Each lane starts at most this many searches in any 60 s: below the policy's limit
#: whatever the machine's speed (a fast machine finishing a search in 50 ms would
#: otherwise reach the limit and see 429s that have nothing to do with the test).
LANE_PER_MINUTE = gate_rate_limit() - 6


@dataclass
class Traffic:
    """Lanes sending probes until stopped; records what each gate saw.

    Each lane is one gate; it starts a search at most every ``60 / per_minute`` seconds
    (paced by start times, so slow answers never cause a catch-up burst).
    ``queues``: when given (gate id → OfflineQueue), a lane keeps a probe it could not
    deliver in its gate's offline queue (``GateClient.check_or_queue``).
    """

    fleet: HasLanes
    queues: dict[str, Any] | None = None
    hit_rate: float = 0.1
    per_minute: int = LANE_PER_MINUTE
    outcomes: dict[str, str] = field(default_factory=dict)
    refused: list[tuple[int, str]] = field(default_factory=list)
    unreachable: int = 0
    queued: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Traffic:
        for index, gate in enumerate(self.fleet.clients):
            thread = threading.Thread(target=self._lane, args=(gate, index), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _lane(self, gate: str, index: int) -> None:
        client = self.fleet.clients[gate]
        rng = np.random.default_rng(100 + index)
        interval_s = 60.0 / self.per_minute
        next_start = time.monotonic()
        while not self._stop.wait(max(0.0, next_start - time.monotonic())):
            next_start = time.monotonic() + interval_s
            traveller = self.fleet.population.traveller(bool(rng.random() < self.hit_rate), rng)
            try:
                if self.queues is not None:
                    outcome = client.check_or_queue(traveller.template, self.queues[gate])
                else:
                    outcome = client.check(traveller.template)
                with self._lock:
                    if outcome is None:
                        self.queued += 1
                    else:
                        self.record(outcome)
            except ServiceRefusedError as exc:
                with self._lock:
                    self.refused.append((exc.status, exc.code))
            except ServiceUnreachableError:
                with self._lock:
                    self.unreachable += 1

    def record(self, outcome: MatchOutcome) -> None:
        """Remember a decision a gate received."""
        self.outcomes[outcome.query_id] = outcome.outcome

    def wait_for(self, decisions: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.outcomes) < decisions:
            assert time.monotonic() < deadline, f"only {len(self.outcomes)} decisions"
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=180)

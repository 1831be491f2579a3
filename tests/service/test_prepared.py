"""Prepared queries: a gate commits the seed of its next probe with each match, an idle
scoring worker does that query's template-independent half, and the next match only
does the rest (single-ciphertext sets, ckks-v2).

Three layers: the worker functions in this process (real SEAL, a 4-row gallery); the
pool's routing with thread executors standing in for the worker processes (which
worker gets a preparation, which a query, when preparing is skipped, and a dead worker
skipped while it is replaced); and the real service over mutual TLS with real worker
processes, on each database backend.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from crypto.he import GateKeyBundle, MaskedResult, encrypt_probe, get_parameter_set, resolve, reveal
from protocol.wire import MATCH_REQUEST_TYPE
from protocol.wire import encode_frame as _frame
from service import he_worker
from service.errors import UnavailableError
from service.gates import key_id_for
from service.scoring.inprocess import InProcessBackend
from service.scoring.routing import WAIT_FOR_PREPARED
from service.scoring.workers import GalleryHandle
from service.tables import idempotency_keys, pending_queries
from tests.service.conftest import problem

# --- the worker, in this process ----------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> GateKeyBundle:
    return GateKeyBundle.generate(get_parameter_set("ckks-v2"))


def _row(i: int) -> np.ndarray:
    row: np.ndarray = np.eye(1, 128, i, dtype=np.float64)[0]
    return row


def _score(keys: GateKeyBundle, key_ref: str, template: np.ndarray, seed: bytes | None):
    """(rows over the threshold, whether the worker used a preparation)."""
    probe = encrypt_probe(keys, template, seed=seed).to_bytes()
    masked, mapping, _, used = he_worker.score(probe, key_ref, None, 0.5)
    return resolve(reveal(keys, MaskedResult.from_bytes(masked)), mapping), used


def test_worker_uses_a_preparation_once_and_only_for_its_seed(keys):
    he_worker.init_worker(np.eye(4, 128, dtype=np.float32), "ckks-v2", prepared_cache_size=4)
    bundle = keys.public().to_bytes()
    seed = os.urandom(32)
    assert he_worker.prepare("key-a", bundle, seed) > 0
    assert _score(keys, "key-a", _row(2), seed) == ([2], True)
    # single use: the same seed again (a retried probe) is scored the normal way
    assert _score(keys, "key-a", _row(2), seed) == ([2], False)
    # a probe under another seed than the committed one: normal path, and the
    # preparation is dropped (the gate moved on from that seed)
    he_worker.prepare("key-a", None, seed)
    assert _score(keys, "key-a", _row(1), os.urandom(32)) == ([1], False)
    assert _score(keys, "key-a", _row(3), seed) == ([3], False)
    # a newer preparation for the same key replaces the older one
    old, new = os.urandom(32), os.urandom(32)
    he_worker.prepare("key-a", None, old)
    he_worker.prepare("key-a", None, new)
    assert list(he_worker._PREPARED) == ["key-a"]
    assert _score(keys, "key-a", _row(0), new) == ([0], True)


def test_worker_evicts_the_least_recently_prepared_beyond_capacity(keys, monkeypatch):
    import crypto.he

    warmed: list[int] = []
    real_prepare = crypto.he.prepare_query

    def spy(*args: Any, **kwargs: Any) -> Any:
        warmed.append(1)
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(crypto.he, "prepare_query", spy)
    he_worker.init_worker(np.eye(4, 128, dtype=np.float32), "ckks-v2", prepared_cache_size=2)
    assert warmed == [1]  # the warm-up compiled the preparation kernels
    bundle = keys.public().to_bytes()
    seeds = {ref: os.urandom(32) for ref in ("key-1", "key-2", "key-3")}
    for ref, seed in seeds.items():  # one gate key under three references
        he_worker.prepare(ref, bundle, seed)
    assert list(he_worker._PREPARED) == ["key-2", "key-3"]
    assert _score(keys, "key-1", _row(0), seeds["key-1"]) == ([0], False)
    assert _score(keys, "key-3", _row(1), seeds["key-3"]) == ([1], True)
    assert _score(keys, "key-2", _row(2), seeds["key-2"]) == ([2], True)
    # capacity 0: preparation is off, nothing is computed or kept
    warmed.clear()
    he_worker.init_worker(np.eye(4, 128, dtype=np.float32), "ckks-v2", prepared_cache_size=0)
    assert he_worker.prepare("key-1", bundle, seeds["key-1"]) == 0.0
    assert not he_worker._PREPARED and warmed == []


# --- the pool's routing, with threads standing in for worker processes ----------------------


class FakeWorkers:
    """Replaces ``he_worker.score``/``prepare``: records which worker ran what; a
    (job, key) in ``hold`` blocks until its event is set."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, str, str, bool]] = []  # (job, key, worker, had bundle)
        self.hold: dict[tuple[str, str], threading.Event] = {}
        self.need_bundle: set[str] = set()
        self.fail: set[str] = set()

    def _run(self, job: str, key_ref: str, bundle: bytes | None) -> None:
        if key_ref in self.need_bundle and bundle is None:
            raise he_worker.BundleNeeded(key_ref)
        worker = threading.current_thread().name.split("_")[0]
        self.ran.append((job, key_ref, worker, bundle is not None))
        if (job, key_ref) in self.hold:
            assert self.hold[job, key_ref].wait(10)
        if job == "prepare" and key_ref in self.fail:
            raise RuntimeError("refused")

    def score(self, probe: bytes, key_ref: str, bundle: bytes | None, threshold: float) -> Any:
        self._run("score", key_ref, bundle)
        return b"masked", None, 0.0, False

    def prepare(self, key_ref: str, bundle: bytes | None, seed: bytes) -> float:
        self._run("prepare", key_ref, bundle)
        return 0.0

    def where(self, job: str, key_ref: str) -> list[str]:
        return [w for j, k, w, _ in self.ran if (j, k) == (job, key_ref)]


@pytest.fixture
def fake_workers(monkeypatch) -> FakeWorkers:
    fake = FakeWorkers()
    monkeypatch.setattr(he_worker, "score", fake.score)
    monkeypatch.setattr(he_worker, "prepare", fake.prepare)
    return fake


def _pool(workers: int = 2, **kwargs: Any) -> InProcessBackend:
    pool = InProcessBackend(workers, kwargs.pop("queue_limit", 8), "ckks-v2", **kwargs)
    executors = tuple(ThreadPoolExecutor(1, thread_name_prefix=f"w{i}") for i in range(workers))
    pool._current = GalleryHandle("v1", ("entry",), executors)
    return pool


async def _settle(pool: InProcessBackend) -> None:
    while pool._tasks:
        await asyncio.gather(*pool._tasks)


def _bundle() -> bytes:
    return b"bundle"


SEED = bytes(32)


def test_pool_sends_a_query_to_its_preparing_worker_unless_it_has_a_queue(fake_workers):
    fake = fake_workers
    pool = _pool()
    handle = pool.current
    assert handle is not None and WAIT_FOR_PREPARED == 1

    async def scenario() -> None:
        # w0 busy with a query: the preparation goes to the idle w1 and is recorded
        release = fake.hold["score", "busy"] = threading.Event()
        busy = asyncio.ensure_future(pool.score(b"p", "busy", _bundle, 0.5))
        await asyncio.sleep(0.05)
        assert pool.prepare_soon("gate-k", _bundle, SEED)
        await _settle(pool)
        release.set()
        await busy
        assert fake.where("prepare", "gate-k") == ["w1"]
        # both idle: the query goes where its preparation is, not to the first worker
        await pool.score(b"p", "gate-k", _bundle, 0.5)
        assert fake.where("score", "gate-k") == ["w1"]
        # the record was consumed: the next query of that key goes to the least loaded
        await pool.score(b"p", "gate-k", _bundle, 0.5)
        assert fake.where("score", "gate-k") == ["w1", "w0"]
        # its preparation still running (one job ahead): the query waits for it there
        release = fake.hold["prepare", "gate-k"] = threading.Event()
        assert pool.prepare_soon("gate-k", _bundle, SEED)
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(pool.score(b"p", "gate-k", _bundle, 0.5))
        await asyncio.sleep(0.05)
        assert not waiting.done() and handle.load == [2, 0]
        release.set()
        await waiting
        await _settle(pool)
        assert fake.where("prepare", "gate-k") == ["w1", "w0"]
        assert fake.where("score", "gate-k") == ["w1", "w0", "w0"]
        # two jobs ahead on the preparing worker: the query goes to the least loaded
        fake.hold["prepare", "gate-k"] = threading.Event()
        fake.hold["prepare", "gate-j"] = threading.Event()
        fake.hold["score", "other"] = threading.Event()
        assert pool.prepare_soon("gate-k", _bundle, SEED)  # both idle: w0
        assert pool.prepare_soon("gate-j", _bundle, SEED)  # w1
        other = asyncio.ensure_future(pool.score(b"p", "other", _bundle, 0.5))  # w0
        await asyncio.sleep(0.05)
        assert handle.load == [2, 1]
        elsewhere = asyncio.ensure_future(pool.score(b"p", "gate-k", _bundle, 0.5))
        await asyncio.sleep(0.05)
        assert handle.load == [2, 2]
        for event in fake.hold.values():
            event.set()
        await asyncio.gather(other, elsewhere)
        await _settle(pool)
        assert fake.where("score", "gate-k") == ["w1", "w0", "w0", "w1"]

    asyncio.run(scenario())
    pool.close()


def test_preparation_is_skipped_when_busy_or_off_and_never_admitted_as_a_query(fake_workers):
    fake = fake_workers
    pool = _pool(queue_limit=1)

    async def scenario() -> None:
        release = fake.hold["prepare", "slow"] = threading.Event()
        assert pool.prepare_soon("slow", _bundle, SEED)  # w0
        await asyncio.sleep(0.05)
        assert pool.depth == 0  # preparations are not queries
        hold_query = fake.hold["score", "q"] = threading.Event()
        query = asyncio.ensure_future(pool.score(b"p", "q", _bundle, 0.5))  # admitted: w1
        await asyncio.sleep(0.05)
        assert pool.depth == 1
        assert fake.where("score", "q") == ["w1"]
        assert not pool.prepare_soon("other", _bundle, SEED)  # both workers busy
        release.set()
        hold_query.set()
        await query
        await _settle(pool)
        assert pool.current is not None and pool.current.load == [0, 0]
        assert "other" not in pool.current.prepared_at
        assert fake.where("prepare", "other") == []

    asyncio.run(scenario())
    pool.close()
    for off in (_pool(prepare=False), _pool(prepared_cache_size=0)):
        assert not off.prepares

        async def skipped(pool: InProcessBackend = off) -> bool:
            return pool.prepare_soon("k", _bundle, SEED)

        assert asyncio.run(skipped()) is False
        off.close()
    assert fake.where("prepare", "k") == []


def test_preparation_sends_the_bundle_when_asked_and_forgets_failures(fake_workers, caplog):
    fake = fake_workers
    pool = _pool()
    loads: list[int] = []

    def load() -> bytes:
        loads.append(1)
        return b"bundle"

    async def scenario() -> None:
        fake.need_bundle.add("new-key")
        assert pool.prepare_soon("new-key", load, SEED)
        await _settle(pool)
        # asked once, then sent to the same worker
        assert loads == [1]
        assert [r for r in fake.ran if r[1] == "new-key"] == [("prepare", "new-key", "w0", True)]
        fake.fail.add("bad-key")
        assert pool.prepare_soon("bad-key", _bundle, SEED)
        await _settle(pool)
        assert pool.current is not None and "bad-key" not in pool.current.prepared_at
        assert pool.current.load == [0, 0]

    with caplog.at_level("WARNING", logger="veilmatch.matching"):
        asyncio.run(scenario())
    pool.close()
    failures = [r for r in caplog.records if r.getMessage() == "query preparation failed"]
    assert [getattr(r, "error_type", None) for r in failures] == ["RuntimeError"]


# --- a dead worker: skipped while it is replaced ------------------------------------------


class Breakable(ThreadPoolExecutor):
    """A thread worker that can be made to refuse work the way the executor of a dead
    worker process does (``BrokenProcessPool`` from ``submit``)."""

    def __init__(self, name: str) -> None:
        super().__init__(1, thread_name_prefix=name)
        self.dead = False

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if self.dead:
            raise BrokenProcessPool("the worker process died")
        return super().submit(fn, *args, **kwargs)


class Restarts:
    """Replaces the pool's worker start-up: replacements are ``Breakable`` threads named
    r0, r1…, whose ``he_worker.ready`` answers with ``answer()`` (blocking allowed)."""

    def __init__(self, pool: InProcessBackend, monkeypatch: Any, answer: Any) -> None:
        self.started: list[Breakable] = []
        self.ready_at: list[float] = []
        self.done: list[int] = []
        monkeypatch.setattr(pool, "_start_executor", self.start)
        monkeypatch.setattr(he_worker, "ready", lambda: self._ready(answer))
        pool.on_restart = lambda: self.done.append(1)

    def start(self, initargs: tuple[Any, ...]) -> Breakable:
        executor = Breakable(f"r{len(self.started)}")
        self.started.append(executor)
        return executor

    def _ready(self, answer: Any) -> str | None:
        self.ready_at.append(time.monotonic())
        result: str | None = answer()
        return result


def _breakable_pool(workers: int = 2) -> InProcessBackend:
    pool = InProcessBackend(workers, 8, "ckks-v2")
    executors = tuple(Breakable(f"w{i}") for i in range(workers))
    pool._current = GalleryHandle("v1", ("entry",), executors, ("templates", "ckks-v2"))
    return pool


def _kill_worker(handle: GalleryHandle, worker: int) -> None:
    executor = handle.executors[worker]
    assert isinstance(executor, Breakable)
    executor.dead = True


async def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_pool_never_routes_to_a_worker_being_replaced(fake_workers, monkeypatch, caplog):
    fake = fake_workers
    pool = _breakable_pool()
    handle = pool.current
    assert handle is not None
    up = threading.Event()
    restarts = Restarts(pool, monkeypatch, lambda: "v1" if up.wait(10) else None)

    async def scenario() -> None:
        assert pool.prepare_soon("gate-k", _bundle, SEED)  # both idle: w0
        await _settle(pool)
        assert pool.prepare_soon("gate-j", _bundle, SEED)  # w0 again
        await _settle(pool)
        assert dict(handle.prepared_at) == {"gate-k": 0, "gate-j": 0}
        _kill_worker(handle, 0)
        # the next query goes to the idle, dead w0: the typed 503, not retried elsewhere
        with pytest.raises(UnavailableError) as failed:
            await pool.score(b"p", "other", _bundle, 0.5)
        assert failed.value.code == "worker-failed" and failed.value.status == 503
        assert fake.where("score", "other") == []
        # w0 is out of routing until its replacement is ready; its preparations are gone
        assert handle.available == [False, True] and not handle.prepared_at
        hold = fake.hold["score", "slow"] = threading.Event()
        slow = asyncio.ensure_future(pool.score(b"p", "slow", _bundle, 0.5))
        await asyncio.sleep(0.05)
        assert not pool.prepare_soon("gate-k", _bundle, SEED)  # the one live worker is busy
        queued = asyncio.ensure_future(pool.score(b"p", "gate-k", _bundle, 0.5))
        await asyncio.sleep(0.05)
        assert handle.load == [0, 2]  # queued behind w1's job, not sent to w0
        hold.set()
        await asyncio.gather(slow, queued)
        assert pool.prepare_soon("gate-j", _bundle, SEED)  # w1 idle again
        await _settle(pool)
        assert fake.where("score", "slow") == fake.where("score", "gate-k") == ["w1"]
        assert fake.where("prepare", "gate-j") == ["w0", "w1"]
        assert dict(handle.prepared_at) == {"gate-j": 1}
        assert restarts.done == [] and len(restarts.started) == 1  # one replacement only
        up.set()
        await _until(lambda: handle.available[0])
        assert restarts.done == [1] and handle.executors[0] is restarts.started[0]
        await pool.score(b"p", "after", _bundle, 0.5)  # both idle: the new w0
        assert fake.where("score", "after") == ["r0"]

    with caplog.at_level("INFO", logger="veilmatch.matching"):
        asyncio.run(scenario())
    pool.close()
    logged = [(r.levelname, r.getMessage(), getattr(r, "worker", None)) for r in caplog.records]
    assert logged == [
        ("WARNING", "scoring worker died", 0),
        ("INFO", "scoring worker restarted", 0),
    ]


def test_with_every_worker_restarting_a_query_is_refused_at_once(fake_workers, monkeypatch):
    fake = fake_workers
    pool = _breakable_pool(workers=1)
    handle = pool.current
    assert handle is not None
    up = threading.Event()
    restarts = Restarts(pool, monkeypatch, lambda: "v1" if up.wait(10) else None)
    depths: list[int] = []
    pool.on_depth = depths.append

    async def scenario() -> None:
        fake.hold["prepare", "gate-k"] = threading.Event()
        _kill_worker(handle, 0)
        assert not pool.prepare_soon("gate-k", _bundle, SEED)  # found dead on submit
        assert handle.available == [False] and len(restarts.started) == 1
        for key in ("a", "b"):
            with pytest.raises(UnavailableError) as refused:
                await pool.score(b"p", key, _bundle, 0.5)
            assert refused.value.code == "worker-failed"
        assert not pool.prepare_soon("gate-k", _bundle, SEED)
        assert depths == [] and pool.depth == 0 and handle.load == [0]  # never queued
        up.set()
        await _until(lambda: handle.available[0])
        await pool.score(b"p", "a", _bundle, 0.5)
        assert fake.where("score", "a") == ["r0"] and fake.ran == [("score", "a", "r0", False)]

    asyncio.run(scenario())
    pool.close()
    assert restarts.done == [1]


def test_a_worker_that_cannot_start_is_retried_with_growing_delays(
    fake_workers, monkeypatch, caplog
):
    pool = _breakable_pool(workers=1)
    pool.restart_backoff_s = (0.05, 0.2)
    handle = pool.current
    assert handle is not None
    calls = iter([None, None, None, None, "v1", "v1"])  # four failed starts, then up
    restarts = Restarts(pool, monkeypatch, lambda: next(calls))

    async def dies() -> None:
        with pytest.raises(UnavailableError):
            await pool.score(b"p", "k", _bundle, 0.5)

    async def scenario() -> None:
        _kill_worker(handle, 0)
        await dies()
        await _until(lambda: handle.available[0])
        # the first try at once, then 0.05, 0.1, 0.2 and 0.2 s (the cap) apart
        gaps = np.diff(restarts.ready_at)
        assert len(gaps) == 4 and list(gaps >= [0.05, 0.1, 0.2, 0.2]) == [True] * 4
        assert restarts.done == [1] and handle.restart_delay == [0.2]
        # the restarted worker dies at once: no immediate restart this time
        _kill_worker(handle, 0)
        await dies()
        await _until(lambda: handle.available[0])
        assert restarts.ready_at[-1] - restarts.ready_at[-2] >= 0.2
        assert restarts.done == [1, 1]

    with caplog.at_level("INFO", logger="veilmatch.matching"):
        asyncio.run(scenario())
    pool.close()
    died = [r for r in caplog.records if r.getMessage() == "scoring worker died"]
    assert [getattr(r, "restart_in_s", None) for r in died] == [0.0, 0.2]
    failed = [r for r in caplog.records if r.getMessage() == "scoring worker failed to restart"]
    assert [getattr(r, "retry_in_s", None) for r in failed] == [0.05, 0.1, 0.2, 0.2]
    assert {getattr(r, "error_type", None) for r in failed} == {"NotReady"}
    assert all(executor._shutdown for executor in restarts.started[:4])  # not left running


# --- the real service ------------------------------------------------------------------------


def _prepared_count(service, outcome: str) -> float:
    value = service.ctx.metrics.registry.get_sample_value(
        "veilmatch_match_prepared_total", {"outcome": outcome}
    )
    return float(value or 0.0)


def _counts(service) -> tuple[float, float]:
    return _prepared_count(service, "used"), _prepared_count(service, "missed")


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(128)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _near(target: np.ndarray, seed: int) -> np.ndarray:
    """A unit vector at cosine ≈ 0.9 to ``target``."""
    noise = _unit(seed) - float(_unit(seed) @ target) * target
    vector = 0.9 * target + np.sqrt(1 - 0.81) * noise / np.linalg.norm(noise)
    unit: np.ndarray = (vector / np.linalg.norm(vector)).astype(np.float32)
    return unit


@pytest.fixture(scope="module")
def watched(service) -> tuple[str, np.ndarray]:
    """One active watchlist entry (enrolled by template) and its template."""
    template = _unit(1000)
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=90)).isoformat()
    with service.staff("officer1") as officer:
        created = officer.post(
            "/api/v1/watchlist",
            json={
                "subject_ref": "subject-prepared",
                "template": [float(x) for x in template],
                "legal_basis": "hk-cap60",
                "category": "parallel_trading",
                "expires_at": expires,
            },
        )
        assert created.status_code == 201, created.text
    entry_id = str(created.json()["id"])
    with service.staff("supervisor1") as supervisor:
        approved = supervisor.post(f"/api/v1/watchlist/{entry_id}/approve")
        assert approved.status_code == 200, approved.text
    return entry_id, template


@pytest.fixture(scope="module")
def gate(service):
    client = service.approved_gate("gate-c", site="lo-wu")
    yield client
    client.close()


def _alert_entries(service, query_id: str) -> list[str]:
    with service.staff("officer1") as officer:
        alerts = officer.get("/api/v1/alerts").json()
    return [e for a in alerts if a["query_id"] == query_id for e in a["entry_ids"]]


def test_next_match_from_a_gate_runs_prepared_and_finds_the_same_hits(service, gate, watched):
    entry_id, template = watched
    used, missed = _counts(service)
    first = gate.check(_unit(1))  # nothing committed yet: scored whole
    assert first.outcome == "proceed" and first.hits == 0
    assert _counts(service) == (used, missed + 1)
    # the probe is encrypted under the seed committed with the previous request; with
    # one worker the preparation is queued before this query, so it is always ready
    hit = gate.check(_near(template, 2))
    assert _counts(service) == (used + 1, missed + 1)
    assert hit.outcome == "secondary" and hit.hits == 1
    assert _alert_entries(service, hit.query_id) == [entry_id]
    stranger = gate.check(_unit(3))
    assert _counts(service) == (used + 2, missed + 1)
    assert stranger.outcome == "proceed" and stranger.hits == 0
    assert gate._committed is not None  # seeds are never logged
    assert gate._committed[1].hex() not in service.log_stream.getvalue()


def test_a_probe_under_another_seed_runs_the_normal_path(service, gate, watched):
    _, template = watched
    gate.check(_unit(4))  # commits a seed; the service prepares for it
    used, missed = _counts(service)
    other = gate.he.encrypt(_near(template, 5))  # a fresh seed, not the committed one
    outcome = gate.send_probe(other)
    assert outcome.outcome == "secondary" and outcome.hits == 1
    assert _counts(service) == (used, missed + 1)


def _stored(service, since: dt.datetime) -> tuple[int, int]:
    """Idempotency records and pending queries of gate-c since ``since``."""
    with service.ctx.reader() as conn:
        idem = conn.execute(
            sa.select(sa.func.count())
            .select_from(idempotency_keys)
            .where(idempotency_keys.c.gate_id == "gate-c", idempotency_keys.c.created_at >= since)
        ).scalar_one()
        pending = conn.execute(
            sa.select(sa.func.count())
            .select_from(pending_queries)
            .where(pending_queries.c.gate_id == "gate-c", pending_queries.c.created_at >= since)
        ).scalar_one()
    return int(idem), int(pending)


BAD_SEEDS = ["A" * 64, "a" * 63, "a" * 65, "g" * 64, "a" * 64 + "\n", "", 7]


@pytest.mark.parametrize("form", ["json", "binary"])
def test_a_malformed_next_seed_is_a_typed_400_and_nothing_is_stored(service, gate, form):
    probe = gate.he.encrypt(_unit(6))
    key_ref = key_id_for(gate.signing_key.public_bytes())
    handle = service.ctx.pool.current
    assert handle is not None
    handle.prepared_at.pop(key_ref, None)
    counts, since = _counts(service), service.ctx.now()
    for i, bad in enumerate(BAD_SEEDS):
        request_id = f"bad-seed-{form}-{i:02d}"
        if form == "json":
            fields = {"request_id": request_id, "probe": base64.b64encode(probe).decode()}
            body = json.dumps({**fields, "next_seed": bad}).encode()
            content_type = "application/json"
        else:
            meta = json.dumps({"request_id": request_id, "next_seed": bad}).encode()
            body, content_type = _frame(b"VMRQ", meta, probe), MATCH_REQUEST_TYPE
        headers = gate.signer.sign("POST", "/gate/v1/match", body, now=service.gate_time())
        with service.gate_http("gate-c") as http:
            response = http.post(
                "/gate/v1/match", content=body, headers={**headers, "Content-Type": content_type}
            )
        assert response.status_code == 400, (bad, response.text)
        refused = problem(response)
        assert refused["code"] == "malformed-request" and "next_seed" in refused["detail"]
    assert _stored(service, since) == (0, 0)
    assert _counts(service) == counts
    assert key_ref not in handle.prepared_at and service.ctx.pool.current is handle

"""A scoring worker process that dies is replaced, with real worker processes.

Killing a worker breaks its executor for good; the query that finds it broken gets the
typed 503 (``worker-failed``), and the pool then starts a new worker with the same
gallery while the others keep scoring. Two layers: an :class:`InProcessBackend` with a tiny
gallery (routing around the dead worker, recovery, a rebuild during the restart), and
the real service over mutual TLS on each database backend (the gate's 503, the
``/metrics`` counter, the logs).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from crypto.he import GateKeyBundle, MaskedResult, encrypt_probe, get_parameter_set, resolve, reveal
from gate.client import ServiceRefusedError
from service.errors import UnavailableError
from service.metrics import ServiceMetrics
from service.scoring.inprocess import InProcessBackend
from service.scoring.workers import GalleryHandle

#: Bound on every wait for a restart (a worker starts in ≈ 3 s here; CI hosts are slower).
RESTART_TIMEOUT_S = 120.0


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _pid(handle: GalleryHandle, worker: int) -> int:
    pid: int = handle.executors[worker].submit(os.getpid).result(timeout=RESTART_TIMEOUT_S)
    return pid


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def _children() -> set[int]:
    """Live child processes of the test process (``active_children`` reaps exited ones)."""
    return {int(child.pid) for child in multiprocessing.active_children() if child.pid}


def _restarts(metrics: ServiceMetrics) -> float:
    value = metrics.registry.get_sample_value("veilmatch_match_worker_restarts_total")
    return float(value or 0.0)


# --- a real pool ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> GateKeyBundle:
    return GateKeyBundle.generate(get_parameter_set("ckks-v2"))


def _gallery(rows: int) -> tuple[list[str], np.ndarray]:
    return [f"entry-{i}" for i in range(rows)], np.eye(rows, 128, dtype=np.float32)


@pytest.fixture
def pool() -> Iterator[tuple[InProcessBackend, ServiceMetrics]]:
    match_pool = InProcessBackend(2, 8, "ckks-v2", prepare=False)
    metrics = ServiceMetrics()
    match_pool.on_restart = metrics.worker_restarts.inc  # as service.lifecycle wires it
    match_pool.rebuild(*_gallery(4))
    yield match_pool, metrics
    match_pool.close()


def _checker(pool: InProcessBackend, keys: GateKeyBundle) -> Callable[[int], Any]:
    bundle = keys.public().to_bytes()

    async def check(row: int) -> tuple[list[str], str]:
        """Score a probe equal to gallery row ``row``: the entry ids over the threshold."""
        template = np.eye(1, 128, row, dtype=np.float64)[0]
        probe = encrypt_probe(keys, template).to_bytes()
        outcome = await pool.score(probe, "gate-key", lambda: bundle, 0.5)
        rows = resolve(
            reveal(keys, MaskedResult.from_bytes(outcome.masked_result)), outcome.mapping
        )
        return [outcome.entry_ids[i] for i in rows], outcome.gallery_version

    return check


def test_a_killed_worker_fails_one_query_then_is_replaced(pool, keys, caplog):
    match_pool, metrics = pool
    handle = match_pool.current
    assert handle is not None
    check = _checker(match_pool, keys)
    old_pids = [_pid(handle, 0), _pid(handle, 1)]
    _kill(old_pids[0])

    async def scenario() -> None:
        # both idle: the query goes to worker 0, which is dead
        with pytest.raises(UnavailableError) as failed:
            await check(1)
        assert failed.value.code == "worker-failed" and failed.value.status == 503
        # worker 0 is out of routing while it restarts (seconds): queries go to worker 1
        assert handle.available == [False, True]
        assert (await check(2))[0] == ["entry-2"]
        assert (await check(3))[0] == ["entry-3"]
        await asyncio.to_thread(_wait_for, lambda: all(handle.available), "the restart")
        assert match_pool.current is handle
        # both workers score again (two at once: one each)
        both = await asyncio.gather(check(0), check(1))
        assert [hits for hits, _ in both] == [["entry-0"], ["entry-1"]]

    with caplog.at_level(logging.INFO, logger="veilmatch.matching"):
        asyncio.run(scenario())
    new_pids = [_pid(handle, 0), _pid(handle, 1)]
    assert new_pids[1] == old_pids[1] and new_pids[0] not in old_pids
    assert _restarts(metrics) == 1.0
    died = [r for r in caplog.records if r.getMessage() == "scoring worker died"]
    restarted = [r for r in caplog.records if r.getMessage() == "scoring worker restarted"]
    assert [(r.levelname, getattr(r, "worker", None)) for r in died] == [("WARNING", 0)]
    assert [(r.levelname, getattr(r, "worker", None)) for r in restarted] == [("INFO", 0)]
    # a rebuild afterwards still works, and the restarted handle's workers are retired
    version = match_pool.rebuild(*_gallery(5))
    assert match_pool.current is not handle and handle.retired.is_set()
    hits, scored_version = asyncio.run(check(4))
    assert hits == ["entry-4"] and scored_version == version


def test_a_worker_that_died_idle_is_found_by_the_liveness_check(pool, keys):
    match_pool, metrics = pool
    handle = match_pool.current
    assert handle is not None
    check = _checker(match_pool, keys)
    assert match_pool.check_idle_workers() == 0  # healthy: nothing to do
    old_pid = _pid(handle, 0)
    _kill(old_pid)
    _wait_for(lambda: old_pid not in _children(), "the killed worker to be reaped")
    # the housekeeping loop's ping finds it before any gate query does
    assert match_pool.check_idle_workers() == 1
    assert handle.available == [False, True]
    _wait_for(lambda: all(handle.available), "the restart")
    assert _restarts(metrics) == 1.0 and _pid(handle, 0) != old_pid
    # no query ever saw the dead worker: both answer at once
    both = asyncio.run(_both(check))
    assert [hits for hits, _ in both] == [["entry-0"], ["entry-1"]]


async def _both(check: Callable[[int], Any]) -> list[Any]:
    return list(await asyncio.gather(check(0), check(1)))


def test_a_rebuild_during_a_restart_wins_and_retires_the_stray_worker(pool, keys, monkeypatch):
    match_pool, metrics = pool
    handle = match_pool.current
    assert handle is not None
    check = _checker(match_pool, keys)
    # the replacement's process starts only once the rebuild is done, so that it is
    # ready after the rebuild and must not be put in service (nor left running)
    starting, rebuilt_event = threading.Event(), threading.Event()
    real_start = match_pool._start_executor

    def start(initargs: tuple[Any, ...]) -> Any:
        if threading.current_thread().name.startswith("veilmatch-worker-restart"):
            starting.set()
            assert rebuilt_event.wait(RESTART_TIMEOUT_S)
        return real_start(initargs)

    monkeypatch.setattr(match_pool, "_start_executor", start)
    before = _children()
    old_pids = {_pid(handle, 0), _pid(handle, 1)}
    _kill(_pid(handle, 0))
    with pytest.raises(UnavailableError) as failed:
        asyncio.run(check(1))
    assert failed.value.code == "worker-failed"
    assert starting.wait(RESTART_TIMEOUT_S) and not handle.available[0]
    version = match_pool.rebuild(*_gallery(6))  # while worker 0 restarts
    rebuilt_event.set()
    rebuilt = match_pool.current
    assert rebuilt is not None and rebuilt is not handle and handle.retired.is_set()
    _wait_for(lambda: not match_pool.supervisor.restarting, "the restart thread to end")
    assert handle.executors[0] not in rebuilt.executors and not handle.available[0]
    # the old workers and the stray replacement exit: the only new processes left are
    # the new gallery's two workers
    new_pids = {_pid(rebuilt, 0), _pid(rebuilt, 1)}
    _wait_for(lambda: not (_children() & old_pids), "the old workers to exit")
    _wait_for(lambda: _children() - before == new_pids, "the stray worker to exit")
    assert all(rebuilt.available)
    hits = asyncio.run(check(5))
    assert hits == (["entry-5"], version)
    assert _restarts(metrics) == 0.0  # the replacement never served


# --- the real service --------------------------------------------------------------------


@pytest.fixture(scope="module")
def gate(service):
    client = service.approved_gate("gate-d", site="lo-wu")
    yield client
    client.close()


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(128)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def test_the_service_answers_worker_failed_then_recovers(service, gate):
    pool = service.ctx.pool
    handle = pool.current
    assert handle is not None and len(handle.executors) == 1  # the fixture's one worker
    assert gate.check(_unit(1)).outcome == "proceed"
    before = _restarts(service.ctx.metrics)
    _kill(_pid(handle, 0))
    with pytest.raises(ServiceRefusedError) as refused:
        gate.check(_unit(2))
    assert refused.value.status == 503 and refused.value.code == "worker-failed"
    _wait_for(lambda: all(handle.available), "the restart")
    assert gate.check(_unit(3)).outcome == "proceed"
    assert _restarts(service.ctx.metrics) == before + 1
    exposed = service.metrics()
    assert exposed.status_code == 200
    assert f"veilmatch_match_worker_restarts_total {before + 1}" in exposed.text
    logs = service.log_stream.getvalue()
    assert '"message": "scoring worker died"' in logs
    assert '"message": "scoring worker restarted"' in logs

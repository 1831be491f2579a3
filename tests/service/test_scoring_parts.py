"""The parts of the scoring engine on their own: admission, routing, restart backoff,
the pending store, and the setting that chooses the engine.

The pool they make up is tested with thread workers in ``test_prepared.py`` and with
real worker processes in ``test_worker_restart.py``; these tests pin each part's
stated invariants, which a second engine (``docs/scaling.md``) reuses.
"""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from core.errors import ConfigurationError
from core.settings import load_settings
from service import he_worker
from service.errors import OverloadedError, QueryExpiredError, UnavailableError
from service.scoring.admission import Admission
from service.scoring.factory import build_backend
from service.scoring.inprocess import InProcessBackend
from service.scoring.pending import MemoryPendingStore, PendingQuery
from service.scoring.routing import WAIT_FOR_PREPARED, AffinityRouter, least_loaded
from service.scoring.supervision import RESTART_STABLE_S, Supervisor, next_restart_delay
from service.scoring.workers import GalleryHandle, Worker

# --- admission ---------------------------------------------------------------------------


def test_admission_refuses_beyond_the_limit_and_reports_every_depth():
    depths: list[int] = []
    admission = Admission(2, depths.append)
    assert admission.admit(lambda: "w0") == "w0"
    assert admission.admit(lambda: "w1") == "w1"
    placed: list[int] = []
    with pytest.raises(OverloadedError) as full:
        admission.admit(lambda: placed.append(1))
    assert full.value.status == 503 and placed == []  # refused before any placement
    admission.release()
    admission.admit(lambda: None)
    admission.release()
    admission.release()
    assert depths == [1, 2, 1, 2, 1, 0] and admission.depth == 0
    with pytest.raises(RuntimeError):
        admission.release()  # never negative


def test_a_failed_placement_admits_nothing():
    depths: list[int] = []
    admission = Admission(1, depths.append)

    def no_worker() -> None:
        raise UnavailableError("every scoring worker is being restarted", code="worker-failed")

    with pytest.raises(UnavailableError):
        admission.admit(no_worker)
    assert admission.depth == 0 and depths == []
    admission.admit(lambda: None)  # the slot was not taken
    assert admission.depth == 1


# --- routing -----------------------------------------------------------------------------


@dataclass
class _Slot:
    load: int = 0
    available: bool = True


def test_a_query_follows_its_preparation_once_unless_a_queue_is_there():
    router = AffinityRouter()
    slots = [_Slot(), _Slot()]
    router.remember("gate-k", 1, capacity=4)
    assert router.for_query("gate-k", slots) == 1
    assert router.for_query("gate-k", slots) == 0  # consumed: least loaded now
    slots[1].load = WAIT_FOR_PREPARED
    router.remember("gate-k", 1, capacity=4)
    assert router.for_query("gate-k", slots) == 1  # one job ahead: wait for it there
    slots[1].load = WAIT_FOR_PREPARED + 1
    router.remember("gate-k", 1, capacity=4)
    assert router.for_query("gate-k", slots) == 0
    slots[1] = _Slot(available=False)
    router.remember("gate-k", 1, capacity=4)
    assert router.for_query("gate-k", slots) == 0  # never to a worker being replaced
    assert router.for_query("gate-k", [_Slot(available=False)]) is None


def test_preparations_use_spare_capacity_only_and_are_bounded():
    busy = [_Slot(load=1), _Slot(load=1), _Slot(available=False)]
    assert AffinityRouter.for_preparation(busy) is None
    assert AffinityRouter.for_preparation([_Slot(load=2), _Slot()]) is None
    assert AffinityRouter.for_preparation([_Slot(load=1), _Slot()]) == 1
    assert AffinityRouter.for_preparation([]) is None
    router = AffinityRouter()
    for key, worker in (("a", 0), ("b", 1), ("c", 0)):
        router.remember(key, worker, capacity=2)
    assert dict(router.prepared_at) == {"b": 1, "c": 0}  # least recently prepared out
    router.forget("b", 0)  # the key moved on: not that worker's to forget
    router.forget_worker(0)
    assert dict(router.prepared_at) == {"b": 1}
    assert least_loaded([_Slot(load=3), _Slot(available=False), _Slot(load=1)]) == 2


# --- supervision's backoff -----------------------------------------------------------------


def test_restart_delay_is_immediate_unless_the_worker_died_soon_after_a_restart():
    backoff = (1.0, 60.0)
    assert next_restart_delay(Worker(executor=None), 100.0, backoff) == 0.0  # type: ignore[arg-type]
    worker = Worker(executor=None, restart_delay=0.0, restarted_at=100.0)  # type: ignore[arg-type]
    assert next_restart_delay(worker, 110.0, backoff) == 1.0
    worker.restart_delay = 40.0
    assert next_restart_delay(worker, 110.0, backoff) == 60.0  # capped
    assert next_restart_delay(worker, 100.0 + RESTART_STABLE_S, backoff) == 0.0  # healthy


def test_a_restart_is_counted_before_its_worker_takes_work_again(monkeypatch):
    # Whoever sees the slot available (a test, /metrics after a readiness wait) must
    # also see the restart counted.
    monkeypatch.setattr(he_worker, "ready", lambda: "v1")
    dead, fresh = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    handle = GalleryHandle("v1", ("entry",), [dead])
    seen: list[bool] = []
    supervisor = Supervisor(
        threading.Lock(),
        start=lambda _initargs: fresh,
        is_current=lambda current: current is handle,
        on_restart=lambda: seen.append(handle.workers[0].available),
    )
    supervisor.worker_failed(handle, 0, dead)
    supervisor.worker_failed(handle, 0, dead)  # a second report starts nothing
    supervisor.join()
    assert seen == [False] and handle.available == [True] and handle.executors == (fresh,)
    fresh.shutdown()


# --- the pending store ---------------------------------------------------------------------

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _query(query_id: str, ttl_s: float = 30.0) -> PendingQuery:
    expires = NOW + dt.timedelta(seconds=ttl_s)
    return PendingQuery(query_id, "gate-a", object(), ("e1",), "v1", expires, b"probe", b"{}")


def test_a_pending_mapping_is_taken_once_by_its_gate_before_it_expires():
    store = MemoryPendingStore()
    store.put(_query("q1"))
    with pytest.raises(QueryExpiredError):
        store.take("q1", "gate-b", NOW)  # another gate's query
    assert store.response_for("q1", "gate-a", NOW) == (b"{}", "application/json")
    assert store.take("q1", "gate-a", NOW).query_id == "q1"
    with pytest.raises(QueryExpiredError):
        store.take("q1", "gate-a", NOW)  # used at most once
    assert store.response_for("q1", "gate-a", NOW) is None
    store.put(_query("q2", ttl_s=1))
    late = NOW + dt.timedelta(seconds=1)
    assert store.response_for("q2", "gate-a", late) is None
    with pytest.raises(QueryExpiredError):
        store.take("q2", "gate-a", late)
    assert len(store) == 0  # an expired take still removes it
    store.put(_query("q3", ttl_s=1))
    store.put(_query("q4", ttl_s=60))
    assert store.purge(late) == ["q3"] and len(store) == 1
    store.discard("q4")
    assert len(store) == 0


# --- the setting that chooses the engine ------------------------------------------------------


def test_the_embedded_engine_is_the_default_and_an_unknown_one_is_refused(tmp_path):
    settings = load_settings(data_dir=tmp_path, match_workers=3, match_queue_limit=5)
    assert settings.scoring_backend == "embedded"
    backend = build_backend(settings)
    assert isinstance(backend, InProcessBackend)
    assert (backend.worker_count, backend.queue_limit, backend.current) == (3, 5, None)
    backend.close()
    with pytest.raises(ConfigurationError) as refused:
        load_settings(data_dir=tmp_path, scoring_backend="cluster")
    assert "VEILMATCH_SCORING_BACKEND" in str(refused.value)

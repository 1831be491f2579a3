"""Matching orchestration: worker processes holding the encoded gallery, a bounded
queue, and the in-memory store of pending queries' secret mappings.

Scoring never runs on the event loop: :class:`MatchPool` submits each query to one of
``workers`` single-process executors, each of whose processes built the encoded
gallery once (in :mod:`service.he_worker`). A query beyond ``queue_limit`` in flight is
refused with :class:`OverloadedError` (HTTP 503 + Retry-After). A gallery rebuild
starts new workers and retires the old ones after their in-flight queries finish, so a
query always uses the gallery version it was admitted under.

Prepared queries (single-ciphertext parameter sets): a gate commits the seed of its
next probe with each match, and :meth:`MatchPool.prepare_soon` has an idle worker do
the template-independent half of that future query. The preparation lives in that
worker's memory, so the pool tracks jobs in flight per worker and remembers which
worker prepared for which gate key: the key's next query goes there unless that worker
has more than ``WAIT_FOR_PREPARED`` jobs ahead of it, else to the least-loaded worker
(the normal path: correct, only slower).

A worker process that dies (OOM kill, crash) breaks its executor for good. The first
query or preparation that finds it broken gets ``worker-failed`` (503; the probe may
have been consumed, so it is not retried here: the gate retries), and the pool
replaces that worker in a thread: a new process with the same gallery, warmed like a
rebuild's. Until it is ready the slot takes no queries and no preparations, and its
preparations are forgotten; a rebuild meanwhile wins. A slot that dies again soon
after a restart, or whose new process fails to start, waits longer before each next
try (``RESTART_BACKOFF_S``), so a worker that cannot start is no tight restart loop.

The per-query mapping (which masked position is which watchlist row) is the service's
secret. It lives only in :class:`PendingStore`, in this process's memory, until the
gate reveals or ``ttl`` passes; it is never written to disk or logs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import multiprocessing
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from service import he_worker
from service.errors import OverloadedError, QueryExpiredError, UnavailableError

__all__ = [
    "RESTART_BACKOFF_S",
    "RESTART_STABLE_S",
    "WAIT_FOR_PREPARED",
    "GalleryHandle",
    "MatchPool",
    "PendingQuery",
    "PendingStore",
    "ScoreOutcome",
]

log = logging.getLogger("veilmatch.matching")

#: Jobs a query waits behind, at most, on the worker holding its preparation. The online
#: half costs about a quarter of a whole query (``docs/benchmarks.md``), so finishing one
#: job first (often the query's own preparation, still running) and then the online half
#: beats a whole query on another worker, which on a machine with as many cores as
#: workers also slows the busy worker down and throws the preparation's work away.
WAIT_FOR_PREPARED = 1

#: Seconds before restarting a dead worker: the first delay and the cap. The first
#: restart of a slot is immediate; the delay then doubles from the first value up to
#: the cap while restarts fail, or while a restarted worker dies again within
#: ``RESTART_STABLE_S`` of being ready.
RESTART_BACKOFF_S = (1.0, 60.0)
#: A restarted worker that served this long before dying counts as healthy: its next
#: restart is immediate again.
RESTART_STABLE_S = 60.0


@dataclass(frozen=True)
class ScoreOutcome:
    """A scored query: bytes for the gate, the secret mapping for the service."""

    masked_result: bytes
    mapping: Any
    entry_ids: tuple[str, ...]
    gallery_version: str
    seconds: float
    prepared: bool = False


@dataclass
class GalleryHandle:
    """One encoded gallery version and the workers holding it (one executor of one
    process each), with their jobs in flight, which of them take work (not being
    replaced after a crash) and where each gate key's next query was prepared.
    ``initargs`` are the workers' initializer arguments (the templates array itself,
    not a copy: the executors hold it anyway), to start a replacement. Mutable fields
    change under :class:`MatchPool`'s lock; ``retired`` is set when a rebuild or
    ``close`` stops the workers."""

    version: str
    entry_ids: tuple[str, ...]
    executors: tuple[Executor, ...]
    initargs: tuple[Any, ...] = ()
    load: list[int] = field(default_factory=list)
    available: list[bool] = field(default_factory=list)
    prepared_at: OrderedDict[str, int] = field(default_factory=OrderedDict)
    preparing: set[Future[Any]] = field(default_factory=set)
    restart_delay: list[float] = field(default_factory=list)
    restarted_at: list[float | None] = field(default_factory=list)
    retired: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        size = len(self.executors)
        self.load = self.load or [0] * size
        self.available = self.available or [True] * size
        self.restart_delay = self.restart_delay or [0.0] * size
        self.restarted_at = self.restarted_at or [None] * size

    def least_loaded(self) -> int | None:
        """The available worker with the fewest jobs in flight (the first such); None
        when every worker is being replaced."""
        candidates = [i for i, up in enumerate(self.available) if up]
        return min(candidates, key=self.load.__getitem__) if candidates else None


def gallery_fingerprint(entry_ids: tuple[str, ...], templates: npt.NDArray[np.float32]) -> str:
    """Service-side version hash over entry ids and template bytes (sha256 hex)."""
    digest = hashlib.sha256(b"veilmatch/gallery/v1\x00")
    for entry_id in entry_ids:
        digest.update(entry_id.encode() + b"\x00")
    digest.update(np.ascontiguousarray(templates, dtype="<f4").tobytes())
    return digest.hexdigest()


class MatchPool:
    """Scores probes against the current gallery in worker processes.

    ``prepared_cache_size`` is the number of prepared queries each worker keeps
    (``match_prepared_cache``); ``prepare`` False or a size of 0 turns preparation off.
    """

    def __init__(
        self,
        workers: int,
        queue_limit: int,
        parameter_set: str,
        key_cache_size: int = 128,
        prepared_cache_size: int = 16,
        prepare: bool = True,
    ) -> None:
        self.workers = workers
        self.queue_limit = queue_limit
        self.parameter_set = parameter_set
        self.key_cache_size = key_cache_size
        self.prepared_cache_size = prepared_cache_size if prepare else 0
        self._current: GalleryHandle | None = None
        self._lock = threading.Lock()
        self._inflight = 0
        self._context = multiprocessing.get_context("spawn")
        self._tasks: set[asyncio.Task[None]] = set()
        self._restarters: set[threading.Thread] = set()
        self.restart_backoff_s = RESTART_BACKOFF_S
        self.on_depth: Callable[[int], None] = lambda _depth: None
        #: Called (in a restart thread) each time a dead worker's replacement is ready.
        self.on_restart: Callable[[], None] = lambda: None

    @property
    def current(self) -> GalleryHandle | None:
        """The gallery new queries are scored against (None before the first build)."""
        return self._current

    @property
    def depth(self) -> int:
        """Queries queued or running (preparations are not counted)."""
        return self._inflight

    @property
    def prepares(self) -> bool:
        """Whether idle workers prepare queries for committed seeds."""
        return self.prepared_cache_size > 0

    def rebuild(self, entry_ids: list[str], templates: npt.NDArray[np.float32]) -> str:
        """Encode a new gallery in fresh workers and switch to it; returns its version.

        Blocking (worker start-up and encoding): call it from a thread, not the loop.
        """
        ids = tuple(entry_ids)
        version = gallery_fingerprint(ids, templates)
        initargs = (templates, self.parameter_set, self.key_cache_size, self.prepared_cache_size)
        executors = tuple(self._start_executor(initargs) for _ in range(self.workers))
        handle = GalleryHandle(version, ids, executors, initargs)
        # Warm the workers so the first gate query does not pay for the encoding.
        try:
            warm = [executor.submit(he_worker.ready) for executor in executors]
            if any(future.result() is None for future in warm):
                self._retire(handle, wait=False)
                raise UnavailableError("gallery worker failed to start")
        except BrokenProcessPool:
            self._retire(handle, wait=False)
            raise UnavailableError("gallery workers failed to encode the gallery") from None
        with self._lock:
            old, self._current = self._current, handle
        if old is not None:
            self._retire(old, wait=False)  # queued queries still run to completion
        return version

    def _start_executor(self, initargs: tuple[Any, ...]) -> Executor:
        """One worker: a single-process executor that builds the encoded gallery."""
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._context,
            initializer=he_worker.init_worker,
            initargs=initargs,
        )

    def _retire(self, handle: GalleryHandle, wait: bool) -> None:
        """Stop a handle's workers after their running jobs; queued preparations are
        dropped (their queries would be scored by other workers, or not at all). A
        replacement still starting is stopped by its thread once it is up."""
        handle.retired.set()
        with self._lock:
            queued = list(handle.preparing)
            executors = handle.executors
        for future in queued:
            future.cancel()
        for executor in executors:
            executor.shutdown(wait=wait, cancel_futures=not wait)

    def _worker_failed(self, handle: GalleryHandle, worker: int, executor: Executor) -> None:
        """``executor``, worker ``worker`` of ``handle``, was found broken (its process
        died): take the slot out of routing, forget its preparations and start its
        replacement in a thread. Idempotent: only the first report of one executor, on
        the current gallery, starts a replacement. Never call it holding the lock."""
        with self._lock:
            if (
                self._current is not handle
                or handle.executors[worker] is not executor
                or not handle.available[worker]
            ):
                return  # retired by a rebuild, or already being replaced
            handle.available[worker] = False
            for key_ref in [k for k, w in handle.prepared_at.items() if w == worker]:
                del handle.prepared_at[key_ref]
            first, cap = self.restart_backoff_s
            last = handle.restarted_at[worker]
            if last is not None and time.monotonic() - last < RESTART_STABLE_S:
                delay = min(max(2 * handle.restart_delay[worker], first), cap)
            else:
                delay = 0.0
            handle.restart_delay[worker] = delay
            thread = threading.Thread(
                target=self._replace,
                args=(handle, worker, executor, delay),
                name=f"veilmatch-worker-restart-{worker}",
                daemon=True,
            )
            self._restarters.add(thread)
            thread.start()  # under the lock, so that ``close`` never joins it unstarted
        log.warning(
            "scoring worker died",
            extra={"worker": worker, "error_type": "BrokenProcessPool", "restart_in_s": delay},
        )

    def check_idle_workers(self, timeout_s: float = 5.0) -> int:
        """Ping every available worker with nothing in flight (``he_worker.ready``), so a
        process that died while idle is found and replaced now, not by the next gate's
        query (which would get a 503). Returns how many were found dead. Blocking (up to
        ``timeout_s`` per worker, milliseconds when healthy): call it from a thread."""
        with self._lock:
            handle = self._current
            if handle is None:
                return 0
            idle = [
                (worker, handle.executors[worker])
                for worker in range(len(handle.executors))
                if handle.available[worker] and handle.load[worker] == 0
            ]
        dead = 0
        for worker, executor in idle:
            try:
                executor.submit(he_worker.ready).result(timeout=timeout_s)
            except BrokenProcessPool:
                self._worker_failed(handle, worker, executor)
                dead += 1
            except (TimeoutError, RuntimeError, CancelledError):
                continue  # busy after all, or shut down by a rebuild meanwhile
        return dead

    def _replace(self, handle: GalleryHandle, worker: int, dead: Executor, delay: float) -> None:
        """Restart thread: start and warm a new worker for slot ``worker`` and put it in
        service, unless the handle was retired meanwhile; retried with a growing
        delay while the new process fails."""
        dead.shutdown(wait=False, cancel_futures=True)
        first, cap = self.restart_backoff_s
        attempt = 0
        try:
            while not handle.retired.wait(delay) and self._current is handle:
                attempt += 1
                executor: Executor | None = None
                error = ""
                try:
                    executor = self._start_executor(handle.initargs)
                    up = executor.submit(he_worker.ready).result() is not None
                except Exception as exc:  # BrokenProcessPool: the new process died too
                    up, error = False, type(exc).__name__
                with self._lock:
                    installed = up and executor is not None and self._current is handle
                    if installed and executor is not None:
                        executors = list(handle.executors)
                        executors[worker] = executor
                        handle.executors = tuple(executors)
                        handle.available[worker] = True
                        handle.restarted_at[worker] = time.monotonic()
                if installed:
                    log.info("scoring worker restarted", extra={"worker": worker})
                    self.on_restart()
                    return
                if executor is not None:  # failed, or a rebuild won meanwhile
                    executor.shutdown(wait=False, cancel_futures=True)
                delay = min(max(2 * delay, first), cap)
                with self._lock:
                    handle.restart_delay[worker] = delay
                if self._current is handle:
                    log.warning(
                        "scoring worker failed to restart",
                        extra={
                            "worker": worker,
                            "attempt": attempt,
                            "error_type": error or "NotReady",
                            "retry_in_s": delay,
                        },
                    )
        finally:
            with self._lock:
                self._restarters.discard(threading.current_thread())

    async def score(
        self,
        probe: bytes,
        key_ref: str,
        load_bundle: Callable[[], bytes],
        threshold: float,
    ) -> ScoreOutcome:
        """Score one probe; ``OverloadedError`` when ``queue_limit`` queries are in flight.

        ``key_ref`` names the gate key (row id; its bundle never changes). Workers keep
        the keys they have seen, so the bundle (≈ 4 MB under ckks-v2) is read with
        ``load_bundle`` (blocking; run in a thread) and sent only when the worker that
        took the query does not have it yet. The query goes to the worker that prepared
        this key's next query if at most ``WAIT_FOR_PREPARED`` jobs are ahead of it
        there, else to the least-loaded one.
        """
        with self._lock:
            handle = self._current
            if handle is None:
                raise UnavailableError("the gallery is not built yet", code="gallery-not-ready")
            if self._inflight >= self.queue_limit:
                raise OverloadedError("scoring queue is full", retry_after_s=1)
            if not handle.executors:
                raise UnavailableError("the gallery is not built", code="gallery-not-ready")
            worker = handle.prepared_at.pop(key_ref, None)
            if (
                worker is None
                or not handle.available[worker]
                or handle.load[worker] > WAIT_FOR_PREPARED
            ):
                worker = handle.least_loaded()
            if worker is None:
                raise UnavailableError(
                    "every scoring worker is being restarted", code="worker-failed"
                )
            handle.load[worker] += 1
            self._inflight += 1
            self.on_depth(self._inflight)
            executor = handle.executors[worker]
        try:
            loop = asyncio.get_running_loop()
            try:
                try:
                    masked, mapping, seconds, prepared = await loop.run_in_executor(
                        executor, he_worker.score, probe, key_ref, None, threshold
                    )
                except he_worker.BundleNeeded:
                    bundle = await loop.run_in_executor(None, load_bundle)
                    masked, mapping, seconds, prepared = await loop.run_in_executor(
                        executor, he_worker.score, probe, key_ref, bundle, threshold
                    )
            except BrokenProcessPool:
                self._worker_failed(handle, worker, executor)
                raise UnavailableError("scoring worker died", code="worker-failed") from None
        finally:
            with self._lock:
                handle.load[worker] -= 1
                self._inflight -= 1
                self.on_depth(self._inflight)
        return ScoreOutcome(
            masked, mapping, handle.entry_ids, handle.version, seconds, bool(prepared)
        )

    def prepare_soon(self, key_ref: str, load_bundle: Callable[[], bytes], seed: bytes) -> bool:
        """Have an idle worker prepare ``key_ref``'s next query, whose probe the gate will
        encrypt under ``seed``; returns whether a preparation was started.

        Fire and forget (call it on the event loop): never blocks and never raises for
        the job; a failure is logged by type only. Skipped when preparation is off or
        the pool is busy (as many jobs in flight as available workers): a preparation
        costs about a whole query, so it only ever uses a worker nothing else needs.
        Workers being replaced are skipped. Preparations do not count toward
        ``queue_limit``.
        """
        if not self.prepares:
            return False
        loop = asyncio.get_running_loop()
        with self._lock:
            handle = self._current
            if handle is None or not handle.executors:
                return False
            up = [i for i, available in enumerate(handle.available) if available]
            worker = handle.least_loaded()
            if worker is None or sum(handle.load[i] for i in up) >= len(up):
                return False
            executor = handle.executors[worker]
            try:
                first = executor.submit(he_worker.prepare, key_ref, None, seed)
            except BrokenProcessPool:  # a RuntimeError too: caught first
                first = None
            except RuntimeError:  # shut down by a rebuild
                return False
            if first is not None:
                handle.load[worker] += 1
                handle.preparing.add(first)
                handle.prepared_at.pop(key_ref, None)
                handle.prepared_at[key_ref] = worker
                while len(handle.prepared_at) > self.workers * self.prepared_cache_size:
                    handle.prepared_at.popitem(last=False)
        if first is None:  # its process died while idle
            self._worker_failed(handle, worker, executor)
            return False
        task = loop.create_task(
            self._finish_preparation(handle, worker, executor, key_ref, load_bundle, seed, first)
        )
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)
        return True

    async def _finish_preparation(
        self,
        handle: GalleryHandle,
        worker: int,
        executor: Executor,
        key_ref: str,
        load_bundle: Callable[[], bytes],
        seed: bytes,
        first: Future[float],
    ) -> None:
        loop = asyncio.get_running_loop()
        job = first
        try:
            try:
                await asyncio.wrap_future(first)
            except he_worker.BundleNeeded:
                bundle = await loop.run_in_executor(None, load_bundle)
                with self._lock:
                    # retired by a rebuild meanwhile, or its worker died (being replaced)
                    retired = (
                        self._current is not handle
                        or handle.executors[worker] is not executor
                        or not handle.available[worker]
                    )
                    if not retired:
                        handle.preparing.discard(first)
                        job = executor.submit(he_worker.prepare, key_ref, bundle, seed)
                        handle.preparing.add(job)
                if retired:
                    return
                await asyncio.wrap_future(job)
        except (asyncio.CancelledError, Exception) as exc:
            # Cancelled by a rebuild or shutdown, the worker died, or the key was
            # refused: the query will simply run unprepared. Only the type is logged.
            with self._lock:
                if handle.prepared_at.get(key_ref) == worker:
                    del handle.prepared_at[key_ref]
            if isinstance(exc, BrokenProcessPool):
                self._worker_failed(handle, worker, executor)
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("query preparation failed", extra={"error_type": type(exc).__name__})
        finally:
            with self._lock:
                handle.preparing.discard(job)
                handle.load[worker] -= 1

    def close(self, wait: bool = True) -> None:
        """Stop the workers; with ``wait``, after in-flight queries finish (queued
        preparations are dropped) and after a worker restart in progress has stopped
        (it finishes starting first)."""
        with self._lock:
            handle, self._current = self._current, None
        if handle is not None:
            self._retire(handle, wait=wait)
        if wait:
            with self._lock:
                restarters = list(self._restarters)
            for thread in restarters:
                thread.join()


@dataclass
class PendingQuery:
    """A scored query awaiting the gate's reveal."""

    query_id: str
    gate_id: str
    mapping: Any
    entry_ids: tuple[str, ...]
    gallery_version: str
    expires_at: dt.datetime
    probe: bytes
    response: bytes = b""
    response_type: str = "application/json"
    doc_pseudonym: str | None = None


class PendingStore:
    """Secret mappings by query id, dropped on reveal or after their TTL."""

    def __init__(self) -> None:
        self._items: dict[str, PendingQuery] = {}
        self._lock = threading.Lock()

    def put(self, item: PendingQuery) -> None:
        """Remember a query's mapping until ``item.expires_at``."""
        with self._lock:
            self._items[item.query_id] = item

    def take(self, query_id: str, gate_id: str, now: dt.datetime) -> PendingQuery:
        """Remove and return the mapping; ``QueryExpiredError`` if gone, expired or foreign."""
        with self._lock:
            item = self._items.get(query_id)
            if item is None or item.gate_id != gate_id:
                raise QueryExpiredError("no pending query with this id for this gate")
            del self._items[query_id]
        if item.expires_at <= now:
            raise QueryExpiredError("the query expired before it was revealed")
        return item

    def discard(self, query_id: str) -> None:
        """Forget a mapping whose query was never acknowledged (its commit failed)."""
        with self._lock:
            self._items.pop(query_id, None)

    def response_for(
        self, query_id: str, gate_id: str, now: dt.datetime
    ) -> tuple[bytes, str] | None:
        """The match response and its media type of a still-pending query (for an
        idempotent retry)."""
        with self._lock:
            item = self._items.get(query_id)
        if item is None or item.gate_id != gate_id or item.expires_at <= now:
            return None
        return item.response, item.response_type

    def purge(self, now: dt.datetime) -> list[str]:
        """Drop expired mappings; returns their query ids."""
        with self._lock:
            expired = [qid for qid, item in self._items.items() if item.expires_at <= now]
            for qid in expired:
                del self._items[qid]
        return expired

    def __len__(self) -> int:
        return len(self._items)

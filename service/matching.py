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
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from service import he_worker
from service.errors import OverloadedError, QueryExpiredError, UnavailableError

__all__ = [
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
    process each), with their jobs in flight and where each gate key's next query
    was prepared. Mutable fields change under :class:`MatchPool`'s lock."""

    version: str
    entry_ids: tuple[str, ...]
    executors: tuple[Executor, ...]
    load: list[int] = field(default_factory=list)
    prepared_at: OrderedDict[str, int] = field(default_factory=OrderedDict)
    preparing: set[Future[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.load:
            self.load = [0] * len(self.executors)

    def least_loaded(self) -> int:
        """The worker with the fewest jobs in flight (the first such)."""
        return min(range(len(self.load)), key=self.load.__getitem__)


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
        self.on_depth: Callable[[int], None] = lambda _depth: None

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
        executors = tuple(
            ProcessPoolExecutor(
                max_workers=1,
                mp_context=self._context,
                initializer=he_worker.init_worker,
                initargs=(
                    templates,
                    self.parameter_set,
                    self.key_cache_size,
                    self.prepared_cache_size,
                ),
            )
            for _ in range(self.workers)
        )
        handle = GalleryHandle(version, ids, executors)
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

    def _retire(self, handle: GalleryHandle, wait: bool) -> None:
        """Stop a handle's workers after their running jobs; queued preparations are
        dropped (their queries would be scored by other workers, or not at all)."""
        with self._lock:
            queued = list(handle.preparing)
        for future in queued:
            future.cancel()
        for executor in handle.executors:
            executor.shutdown(wait=wait, cancel_futures=not wait)

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
            if worker is None or handle.load[worker] > WAIT_FOR_PREPARED:
                worker = handle.least_loaded()
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
        the pool is busy (as many jobs in flight as workers): a preparation costs
        about a whole query, so it only ever uses a worker nothing else needs.
        Preparations do not count toward ``queue_limit``.
        """
        if not self.prepares:
            return False
        loop = asyncio.get_running_loop()
        with self._lock:
            handle = self._current
            if handle is None or not handle.executors or sum(handle.load) >= len(handle.load):
                return False
            worker = handle.least_loaded()
            try:
                first = handle.executors[worker].submit(he_worker.prepare, key_ref, None, seed)
            except (BrokenProcessPool, RuntimeError):  # broken, or shut down by a rebuild
                return False
            handle.load[worker] += 1
            handle.preparing.add(first)
            handle.prepared_at.pop(key_ref, None)
            handle.prepared_at[key_ref] = worker
            while len(handle.prepared_at) > self.workers * self.prepared_cache_size:
                handle.prepared_at.popitem(last=False)
        task = loop.create_task(
            self._finish_preparation(handle, worker, key_ref, load_bundle, seed, first)
        )
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)
        return True

    async def _finish_preparation(
        self,
        handle: GalleryHandle,
        worker: int,
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
                    retired = self._current is not handle  # by a rebuild, meanwhile
                    if not retired:
                        handle.preparing.discard(first)
                        job = handle.executors[worker].submit(
                            he_worker.prepare, key_ref, bundle, seed
                        )
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
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("query preparation failed", extra={"error_type": type(exc).__name__})
        finally:
            with self._lock:
                handle.preparing.discard(job)
                handle.load[worker] -= 1

    def close(self, wait: bool = True) -> None:
        """Stop the workers; with ``wait``, after in-flight queries finish (queued
        preparations are dropped)."""
        with self._lock:
            handle, self._current = self._current, None
        if handle is not None:
            self._retire(handle, wait=wait)


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

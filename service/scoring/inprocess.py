"""The embedded scoring engine: worker processes of this service process.

:class:`InProcessBackend` is the first :class:`~service.scoring.backend.ScoringBackend`
(``scoring_backend = "embedded"``, the default). Scoring never runs on the event loop:
each query goes to one of ``workers`` single-process executors, each of whose processes
built the encoded gallery once (:mod:`service.he_worker`). The backend composes the
parts and owns only the gallery's lifecycle and the jobs' execution:

- admission (:mod:`~service.scoring.admission`): a query beyond ``queue_limit`` in
  flight is refused with ``OverloadedError`` (503 + Retry-After);
- routing (:mod:`~service.scoring.routing`): a query goes where its preparation is,
  unless a queue is there; a preparation to an idle worker only;
- supervision (:mod:`~service.scoring.supervision`): a dead worker's first query or
  preparation gets ``worker-failed`` (503; not retried here, the probe may have been
  consumed: the gate retries) and the slot is restarted with backoff;
- rebuilds (here): a new gallery starts new workers and retires the old ones after
  their in-flight queries finish, so a query always uses the gallery version it was
  admitted under.

Prepared queries (single-ciphertext parameter sets): :meth:`InProcessBackend.prepare_soon`
has an idle worker do the template-independent half of a gate's next query; the
preparation lives in that worker's memory until the query arrives there.

Invariants: every job submitted to a worker is counted in its ``load`` until it ends;
every admitted query is released exactly once; handle state changes only under
``_lock`` (lock order: ``_lock`` before the admission's), which is never held while
awaiting a job or a process start.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import numpy.typing as npt

from service import he_worker
from service.errors import UnavailableError
from service.scoring.admission import Admission
from service.scoring.backend import LoadBundle, ScoreOutcome, gallery_fingerprint
from service.scoring.supervision import Supervisor
from service.scoring.workers import GalleryHandle

__all__ = ["InProcessBackend"]

# One logger for the whole embedded engine: operators filter on it.
log = logging.getLogger("veilmatch.matching")


class InProcessBackend:
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
        self.worker_count = workers
        self.parameter_set = parameter_set
        self.key_cache_size = key_cache_size
        self.prepared_cache_size = prepared_cache_size if prepare else 0
        self.admission = Admission(queue_limit)
        #: Called (in a restart thread, under the lock: it must not call back into the
        #: backend) each time a dead worker's replacement is ready, before it takes work.
        self.on_restart: Callable[[], None] = lambda: None
        self._current: GalleryHandle | None = None
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")
        self._tasks: set[asyncio.Task[None]] = set()
        # Late-bound: the hooks and the executor factory may be replaced after
        # construction (lifecycle wires metrics; tests start thread workers).
        self.supervisor = Supervisor(
            self._lock,
            start=lambda initargs: self._start_executor(initargs),
            is_current=lambda handle: self._current is handle,
            on_restart=lambda: self.on_restart(),
        )

    @property
    def current(self) -> GalleryHandle | None:
        """The gallery new queries are scored against (None before the first build)."""
        return self._current

    @property
    def depth(self) -> int:
        """Queries queued or running (preparations are not counted)."""
        return self.admission.depth

    @property
    def prepares(self) -> bool:
        """Whether idle workers prepare queries for committed seeds."""
        return self.prepared_cache_size > 0

    @property
    def queue_limit(self) -> int:
        """Queries in flight at most (admission)."""
        return self.admission.limit

    @queue_limit.setter
    def queue_limit(self, limit: int) -> None:
        self.admission.limit = limit

    @property
    def on_depth(self) -> Callable[[int], None]:
        """Called with the number of queries in flight each time it changes."""
        return self.admission.on_depth

    @on_depth.setter
    def on_depth(self, hook: Callable[[int], None]) -> None:
        self.admission.on_depth = hook

    @property
    def restart_backoff_s(self) -> tuple[float, float]:
        """Restart delays in seconds: the first and the cap (supervision)."""
        return self.supervisor.backoff_s

    @restart_backoff_s.setter
    def restart_backoff_s(self, backoff_s: tuple[float, float]) -> None:
        self.supervisor.backoff_s = backoff_s

    # --- gallery lifecycle ------------------------------------------------------------

    def rebuild(self, entry_ids: list[str], templates: npt.NDArray[np.float32]) -> str:
        """Encode a new gallery in fresh workers and switch to it; returns its version.

        Blocking (worker start-up and encoding): call it from a thread, not the loop.
        """
        ids = tuple(entry_ids)
        version = gallery_fingerprint(ids, templates)
        initargs = (templates, self.parameter_set, self.key_cache_size, self.prepared_cache_size)
        executors = [self._start_executor(initargs) for _ in range(self.worker_count)]
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

    def check_idle_workers(self, timeout_s: float = 5.0) -> int:
        """Ping the idle workers of the current gallery and replace the dead ones
        (:meth:`Supervisor.ping_idle`); returns how many were dead. Blocking: call it
        from a thread."""
        with self._lock:
            handle = self._current
        return 0 if handle is None else self.supervisor.ping_idle(handle, timeout_s)

    def close(self, wait: bool = True) -> None:
        """Stop the workers; with ``wait``, after in-flight queries finish (queued
        preparations are dropped) and after a worker restart in progress has stopped
        (it finishes starting first)."""
        with self._lock:
            handle, self._current = self._current, None
        if handle is not None:
            self._retire(handle, wait=wait)
        if wait:
            self.supervisor.join()

    # --- queries ----------------------------------------------------------------------

    async def score(
        self, probe: bytes, key_ref: str, load_bundle: LoadBundle, threshold: float
    ) -> ScoreOutcome:
        """Score one probe; ``OverloadedError`` when ``queue_limit`` queries are in flight.

        ``key_ref`` names the gate key (row id; its bundle never changes). Workers keep
        the keys they have seen, so the bundle (≈ 4 MB under ckks-v2) is read with
        ``load_bundle`` (blocking; run in a thread) and sent only when the worker that
        took the query does not have it yet. The query goes to the worker that prepared
        this key's next query if at most ``WAIT_FOR_PREPARED`` jobs are ahead of it
        there, else to the least-loaded one.
        """
        handle, index, executor = self._admit(key_ref)
        try:
            masked, mapping, seconds, prepared = await self._run_score(
                handle, index, executor, (probe, key_ref, load_bundle, threshold)
            )
        finally:
            with self._lock:
                handle.workers[index].load -= 1
                self.admission.release()
        return ScoreOutcome(
            masked, mapping, handle.entry_ids, handle.version, seconds, bool(prepared)
        )

    def _admit(self, key_ref: str) -> tuple[GalleryHandle, int, Executor]:
        """Admit a query and place it on a worker: (the gallery, the worker's slot, its
        executor), the slot's load already counting the query."""
        with self._lock:
            handle = self._current
            if handle is None:
                raise UnavailableError("the gallery is not built yet", code="gallery-not-ready")

            def place() -> int:
                if not handle.workers:
                    raise UnavailableError("the gallery is not built", code="gallery-not-ready")
                index = handle.router.for_query(key_ref, handle.workers)
                if index is None:
                    raise UnavailableError(
                        "every scoring worker is being restarted", code="worker-failed"
                    )
                handle.workers[index].load += 1
                return index

            index = self.admission.admit(place)
            return handle, index, handle.workers[index].executor

    async def _run_score(
        self,
        handle: GalleryHandle,
        index: int,
        executor: Executor,
        job: tuple[bytes, str, LoadBundle, float],
    ) -> tuple[bytes, Any, float, bool]:
        """Run ``he_worker.score`` on ``executor``, sending the key bundle if asked."""
        probe, key_ref, load_bundle, threshold = job
        loop = asyncio.get_running_loop()
        try:
            try:
                return await loop.run_in_executor(
                    executor, he_worker.score, probe, key_ref, None, threshold
                )
            except he_worker.BundleNeeded:
                bundle = await loop.run_in_executor(None, load_bundle)
                return await loop.run_in_executor(
                    executor, he_worker.score, probe, key_ref, bundle, threshold
                )
        except BrokenProcessPool:
            self.supervisor.worker_failed(handle, index, executor)
            raise UnavailableError("scoring worker died", code="worker-failed") from None

    # --- preparations -----------------------------------------------------------------

    def prepare_soon(self, key_ref: str, load_bundle: LoadBundle, seed: bytes) -> bool:
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
            index = None if handle is None else handle.router.for_preparation(handle.workers)
            if handle is None or index is None:
                return False
            executor = handle.workers[index].executor
            try:
                first = executor.submit(he_worker.prepare, key_ref, None, seed)
            except BrokenProcessPool:  # a RuntimeError too: caught first
                first = None
            except RuntimeError:  # shut down by a rebuild
                return False
            if first is not None:
                handle.workers[index].load += 1
                handle.preparing.add(first)
                capacity = self.worker_count * self.prepared_cache_size
                handle.router.remember(key_ref, index, capacity)
        if first is None:  # its process died while idle
            self.supervisor.worker_failed(handle, index, executor)
            return False
        task = loop.create_task(
            self._finish_preparation(handle, index, executor, (key_ref, load_bundle, seed), first)
        )
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)
        return True

    async def _finish_preparation(
        self,
        handle: GalleryHandle,
        index: int,
        executor: Executor,
        job: tuple[str, LoadBundle, bytes],
        first: Future[float],
    ) -> None:
        """Await a preparation, sending the key bundle if the worker asks for it; on
        failure forget the affinity (the query then runs unprepared)."""
        key_ref, load_bundle, seed = job
        loop = asyncio.get_running_loop()
        running = first
        try:
            try:
                await asyncio.wrap_future(first)
            except he_worker.BundleNeeded:
                bundle = await loop.run_in_executor(None, load_bundle)
                with self._lock:
                    worker = handle.workers[index]
                    # retired by a rebuild meanwhile, or its worker died (being replaced)
                    gone = (
                        self._current is not handle
                        or worker.executor is not executor
                        or not worker.available
                    )
                    if not gone:
                        handle.preparing.discard(first)
                        running = executor.submit(he_worker.prepare, key_ref, bundle, seed)
                        handle.preparing.add(running)
                if gone:
                    return
                await asyncio.wrap_future(running)
        except (asyncio.CancelledError, Exception) as exc:
            # Cancelled by a rebuild or shutdown, the worker died, or the key was
            # refused: the query will simply run unprepared. Only the type is logged.
            with self._lock:
                handle.router.forget(key_ref, index)
            if isinstance(exc, BrokenProcessPool):
                self.supervisor.worker_failed(handle, index, executor)
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("query preparation failed", extra={"error_type": type(exc).__name__})
        finally:
            with self._lock:
                handle.preparing.discard(running)
                handle.workers[index].load -= 1

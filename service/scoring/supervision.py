"""Supervision: replacing scoring workers that die, with backoff, and pinging idle ones.

A worker process that dies (OOM kill, crash) breaks its executor for good. Whoever
finds it broken (a query, a preparation, the idle ping) reports it with
:meth:`Supervisor.worker_failed`: the slot stops taking work, its preparations are
forgotten, and a thread starts a new process with the same gallery, warmed like a
rebuild's, and puts it in the slot. A rebuild meanwhile wins: a replacement is only
installed into the handle that is still current.

Backoff (:func:`next_restart_delay`): a slot's first restart is immediate. While the
new process fails to start, or when a restarted worker dies again within
``RESTART_STABLE_S`` of being ready, the delay doubles from the first value of
``backoff_s`` up to its cap, so a worker that cannot start is no tight restart loop.

Invariants: at most one replacement per slot at a time (only the first report of one
executor on the current handle starts one); a slot is unavailable exactly while its
replacement is pending; a restart is logged and counted before its slot takes work
again; a replacement that is not installed is shut down, never left running; handle
state changes only under the backend's lock, which is never held while
waiting for a process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from service import he_worker
from service.scoring.workers import GalleryHandle, Worker

__all__ = ["RESTART_BACKOFF_S", "RESTART_STABLE_S", "Supervisor", "next_restart_delay"]

# One logger for the whole embedded engine: operators filter on it.
log = logging.getLogger("veilmatch.matching")

#: Seconds before restarting a dead worker: the first delay and the cap. The first
#: restart of a slot is immediate; the delay then doubles from the first value up to
#: the cap while restarts fail, or while a restarted worker dies again within
#: ``RESTART_STABLE_S`` of being ready.
RESTART_BACKOFF_S = (1.0, 60.0)
#: A restarted worker that served this long before dying counts as healthy: its next
#: restart is immediate again.
RESTART_STABLE_S = 60.0


def next_restart_delay(
    worker: Worker, now: float, backoff_s: tuple[float, float], stable_s: float = RESTART_STABLE_S
) -> float:
    """Seconds to wait before restarting ``worker``, found dead at monotonic ``now``:
    0 unless it was restarted less than ``stable_s`` ago, else its previous delay
    doubled, at least ``backoff_s[0]`` and at most ``backoff_s[1]``."""
    first, cap = backoff_s
    if worker.restarted_at is not None and now - worker.restarted_at < stable_s:
        return min(max(2 * worker.restart_delay, first), cap)
    return 0.0


class Supervisor:
    """Restarts the dead workers of the current gallery handle.

    ``lock`` is the backend's lock over handle state; ``start`` starts one worker
    executor from a handle's ``initargs``; ``is_current`` tells whether a handle still
    takes queries; ``on_restart`` is called (in the restart thread, under ``lock``:
    it must not call into the backend) once per replacement, before it takes work.
    """

    def __init__(
        self,
        lock: threading.Lock,
        start: Callable[[tuple[Any, ...]], Executor],
        is_current: Callable[[GalleryHandle], bool],
        on_restart: Callable[[], None],
        backoff_s: tuple[float, float] = RESTART_BACKOFF_S,
    ) -> None:
        self.backoff_s = backoff_s
        self._lock = lock
        self._start = start
        self._is_current = is_current
        self._on_restart = on_restart
        #: Restart threads running; changes under ``lock``.
        self.restarting: set[threading.Thread] = set()

    def worker_failed(self, handle: GalleryHandle, index: int, executor: Executor) -> None:
        """``executor``, worker ``index`` of ``handle``, was found broken (its process
        died): take the slot out of routing, forget its preparations and start its
        replacement in a thread. Idempotent: only the first report of one executor, on
        the current gallery, starts a replacement. Never call it holding the lock."""
        with self._lock:
            worker = handle.workers[index]
            if (
                not self._is_current(handle)
                or worker.executor is not executor
                or not worker.available
            ):
                return  # retired by a rebuild, or already being replaced
            worker.available = False
            handle.router.forget_worker(index)
            delay = next_restart_delay(worker, time.monotonic(), self.backoff_s)
            worker.restart_delay = delay
            thread = threading.Thread(
                target=self._replace,
                args=(handle, index, executor, delay),
                name=f"veilmatch-worker-restart-{index}",
                daemon=True,
            )
            self.restarting.add(thread)
            thread.start()  # under the lock, so that ``join`` never joins it unstarted
        log.warning(
            "scoring worker died",
            extra={"worker": index, "error_type": "BrokenProcessPool", "restart_in_s": delay},
        )

    def ping_idle(self, handle: GalleryHandle, timeout_s: float) -> int:
        """Ping every available worker of ``handle`` with nothing in flight
        (``he_worker.ready``), so a process that died while idle is found and replaced
        now, not by the next gate's query (which would get a 503). Returns how many
        were found dead. Blocking: up to ``timeout_s`` per worker, milliseconds when
        healthy."""
        with self._lock:
            idle = [
                (index, worker.executor)
                for index, worker in enumerate(handle.workers)
                if worker.available and worker.load == 0
            ]
        dead = 0
        for index, executor in idle:
            try:
                executor.submit(he_worker.ready).result(timeout=timeout_s)
            except BrokenProcessPool:
                self.worker_failed(handle, index, executor)
                dead += 1
            except (TimeoutError, RuntimeError, CancelledError):
                continue  # busy after all, or shut down by a rebuild meanwhile
        return dead

    def join(self) -> None:
        """Wait for the restart threads running now (each stops once its handle is
        retired, after finishing a start in progress)."""
        with self._lock:
            threads = list(self.restarting)
        for thread in threads:
            thread.join()

    def _replace(self, handle: GalleryHandle, index: int, dead: Executor, delay: float) -> None:
        """Restart thread: start and warm a new worker for slot ``index`` and put it in
        service, unless the handle was retired meanwhile; retried with a growing delay
        while the new process fails."""
        dead.shutdown(wait=False, cancel_futures=True)
        first, cap = self.backoff_s
        attempt = 0
        try:
            while not handle.retired.wait(delay) and self._is_current(handle):
                attempt += 1
                executor, up, error = self._start_warm(handle.initargs)
                if up and executor is not None and self._install(handle, index, executor):
                    return
                if executor is not None:  # failed, or a rebuild won meanwhile
                    executor.shutdown(wait=False, cancel_futures=True)
                delay = min(max(2 * delay, first), cap)
                with self._lock:
                    handle.workers[index].restart_delay = delay
                if self._is_current(handle):
                    log.warning(
                        "scoring worker failed to restart",
                        extra={
                            "worker": index,
                            "attempt": attempt,
                            "error_type": error or "NotReady",
                            "retry_in_s": delay,
                        },
                    )
        finally:
            with self._lock:
                self.restarting.discard(threading.current_thread())

    def _start_warm(self, initargs: tuple[Any, ...]) -> tuple[Executor | None, bool, str]:
        """Start a worker and wait until it has built its gallery: (its executor if one
        was made, whether it is ready, the failure's type name or "")."""
        executor: Executor | None = None
        try:
            executor = self._start(initargs)
            return executor, executor.submit(he_worker.ready).result() is not None, ""
        except Exception as exc:  # BrokenProcessPool: the new process died too
            return executor, False, type(exc).__name__

    def _install(self, handle: GalleryHandle, index: int, executor: Executor) -> bool:
        """Put a ready ``executor`` in slot ``index`` if ``handle`` is still current.

        The restart is logged and counted (``on_restart``) before the slot takes work
        again, so whoever sees it available also sees the restart counted."""
        with self._lock:
            if not self._is_current(handle):
                return False
            worker = handle.workers[index]
            worker.executor = executor
            worker.restarted_at = time.monotonic()
            log.info("scoring worker restarted", extra={"worker": index})
            self._on_restart()
            worker.available = True
            return True

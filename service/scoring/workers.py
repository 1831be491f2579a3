"""One record per scoring worker, and the gallery version a set of workers holds.

A :class:`Worker` is one slot of the embedded engine: a single-process executor whose
process built the encoded gallery, its jobs in flight and its restart state. A
:class:`GalleryHandle` is one encoded gallery version and its workers, with the
routing state that belongs to that version (preparations made against it).

Every mutable field changes under the owning backend's lock (``InProcessBackend``);
``retired`` is set once, when a rebuild or ``close`` stops the handle's workers, and a
retired handle is never current again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from service.scoring.routing import AffinityRouter

__all__ = ["GalleryHandle", "Worker"]


@dataclass
class Worker:
    """One scoring worker slot.

    ``executor`` runs one process holding the encoded gallery; it is swapped for a new
    one when supervision replaces a dead process. ``load`` counts its jobs (queries and
    preparations) submitted and not finished. ``available`` is False from the moment
    the process is found dead until its replacement is ready: no work is routed to it
    meanwhile. ``restart_delay`` (seconds) is the wait before its latest restart
    attempt; ``restarted_at`` the ``time.monotonic()`` of its latest successful
    restart (None if never restarted).
    """

    executor: Executor
    load: int = 0
    available: bool = True
    restart_delay: float = 0.0
    restarted_at: float | None = None


class GalleryHandle:
    """One encoded gallery version and the workers holding it.

    ``initargs`` are the workers' initializer arguments (the templates array itself,
    not a copy: the executors hold it anyway), to start a replacement worker.
    ``preparing`` holds the futures of preparations submitted and not finished (a
    retirement cancels those still queued).
    """

    def __init__(
        self,
        version: str,
        entry_ids: tuple[str, ...],
        executors: Sequence[Executor],
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self.version = version
        self.entry_ids = entry_ids
        self.initargs = initargs
        self.workers = [Worker(executor) for executor in executors]
        self.router = AffinityRouter()
        self.preparing: set[Future[Any]] = set()
        self.retired = threading.Event()

    # Read-only snapshots across the workers, for tests and diagnostics.

    @property
    def executors(self) -> tuple[Executor, ...]:
        """Each worker's current executor, by slot."""
        return tuple(worker.executor for worker in self.workers)

    @property
    def load(self) -> list[int]:
        """Each worker's jobs in flight, by slot."""
        return [worker.load for worker in self.workers]

    @property
    def available(self) -> list[bool]:
        """Whether each worker takes work, by slot."""
        return [worker.available for worker in self.workers]

    @property
    def restart_delay(self) -> list[float]:
        """Each worker's latest restart delay in seconds, by slot."""
        return [worker.restart_delay for worker in self.workers]

    @property
    def prepared_at(self) -> OrderedDict[str, int]:
        """Gate key reference -> the worker holding its preparation (the router's)."""
        return self.router.prepared_at

"""Admission: the bounded queue in front of the scoring workers.

A query is admitted only while fewer than ``limit`` queries are queued or running;
otherwise it is refused at once with :class:`~service.errors.OverloadedError` (HTTP 503
with ``Retry-After``), before any work is done for it, so an overloaded service sheds
load instead of letting latency grow without bound. Preparations are not queries and
are never admitted here.

Invariants: ``depth`` is the number of admitted queries not yet released, never
negative; a query is admitted only when ``depth < limit`` at that moment (lowering
``limit`` refuses new queries, it evicts none); ``on_depth`` sees every change of
``depth``, in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from service.errors import OverloadedError

__all__ = ["Admission"]

T = TypeVar("T")


class Admission:
    """Counts queries in flight against ``limit`` (thread-safe)."""

    def __init__(self, limit: int, on_depth: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.on_depth: Callable[[int], None] = on_depth or (lambda _depth: None)
        self._depth = 0
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        """Queries admitted and not yet released."""
        return self._depth

    def admit(self, place: Callable[[], T]) -> T:
        """Admit one query placed by ``place``; returns what ``place`` returned.

        ``OverloadedError`` when ``limit`` queries are in flight (``place`` is not
        called). ``place`` (e.g. choosing a worker) may raise: then nothing is admitted
        and ``on_depth`` is not called. The caller must :meth:`release` each admitted
        query exactly once, when it has finished or failed.
        """
        with self._lock:
            if self._depth >= self.limit:
                raise OverloadedError("scoring queue is full", retry_after_s=1)
            placed = place()
            self._depth += 1
            self.on_depth(self._depth)
            return placed

    def release(self) -> None:
        """One admitted query has finished (or failed)."""
        with self._lock:
            if self._depth <= 0:
                raise RuntimeError("released more queries than were admitted")
            self._depth -= 1
            self.on_depth(self._depth)

"""Matching orchestration: worker processes holding the encoded gallery, a bounded
queue, and the in-memory store of pending queries' secret mappings.

Scoring never runs on the event loop: :class:`MatchPool` submits each query to a
process pool whose workers each built the encoded gallery once (in
:mod:`service.he_worker`). A query beyond ``queue_limit`` in flight is refused with
:class:`OverloadedError` (HTTP 503 + Retry-After). A gallery rebuild starts a new pool
and retires the old one after its in-flight queries finish, so a query always uses the
gallery version it was admitted under.

The per-query mapping (which masked position is which watchlist row) is the service's
secret. It lives only in :class:`PendingStore`, in this process's memory, until the
gate reveals or ``ttl`` passes; it is never written to disk or logs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service import he_worker
from service.errors import OverloadedError, QueryExpiredError, UnavailableError

__all__ = ["GalleryHandle", "MatchPool", "PendingQuery", "PendingStore", "ScoreOutcome"]


@dataclass(frozen=True)
class ScoreOutcome:
    """A scored query: bytes for the gate, the secret mapping for the service."""

    masked_result: bytes
    mapping: Any
    entry_ids: tuple[str, ...]
    gallery_version: str
    seconds: float


@dataclass
class GalleryHandle:
    """One encoded gallery version and the pool whose workers hold it."""

    version: str
    entry_ids: tuple[str, ...]
    executor: Executor | None


def gallery_fingerprint(entry_ids: tuple[str, ...], templates: npt.NDArray[np.float32]) -> str:
    """Service-side version hash over entry ids and template bytes (sha256 hex)."""
    digest = hashlib.sha256(b"veilmatch/gallery/v1\x00")
    for entry_id in entry_ids:
        digest.update(entry_id.encode() + b"\x00")
    digest.update(np.ascontiguousarray(templates, dtype="<f4").tobytes())
    return digest.hexdigest()


class MatchPool:
    """Scores probes against the current gallery in worker processes."""

    def __init__(
        self, workers: int, queue_limit: int, parameter_set: str, key_cache_size: int = 128
    ) -> None:
        self.workers = workers
        self.queue_limit = queue_limit
        self.parameter_set = parameter_set
        self.key_cache_size = key_cache_size
        self._current: GalleryHandle | None = None
        self._lock = threading.Lock()
        self._inflight = 0
        self._context = multiprocessing.get_context("spawn")
        self.on_depth: Callable[[int], None] = lambda _depth: None

    @property
    def current(self) -> GalleryHandle | None:
        """The gallery new queries are scored against (None before the first build)."""
        return self._current

    @property
    def depth(self) -> int:
        """Queries queued or running."""
        return self._inflight

    def rebuild(self, entry_ids: list[str], templates: npt.NDArray[np.float32]) -> str:
        """Encode a new gallery in fresh workers and switch to it; returns its version.

        Blocking (worker start-up and encoding): call it from a thread, not the loop.
        """
        ids = tuple(entry_ids)
        version = gallery_fingerprint(ids, templates)
        executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=he_worker.init_worker,
            initargs=(templates, self.parameter_set, self.key_cache_size),
        )
        # Warm the workers so the first gate query does not pay for the encoding.
        try:
            warm = [executor.submit(he_worker.ready) for _ in range(self.workers)]
            if any(future.result() is None for future in warm):
                raise UnavailableError("gallery worker failed to start")
        except BrokenProcessPool:
            executor.shutdown(wait=False, cancel_futures=True)
            raise UnavailableError("gallery workers failed to encode the gallery") from None
        with self._lock:
            old, self._current = self._current, GalleryHandle(version, ids, executor)
        if old is not None and old.executor is not None:
            old.executor.shutdown(wait=False)  # queued futures still run to completion
        return version

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
        took the query does not have it yet.
        """
        with self._lock:
            handle = self._current
            if handle is None:
                raise UnavailableError("the gallery is not built yet", code="gallery-not-ready")
            if self._inflight >= self.queue_limit:
                raise OverloadedError("scoring queue is full", retry_after_s=1)
            self._inflight += 1
            self.on_depth(self._inflight)
        try:
            if handle.executor is None:
                raise UnavailableError("the gallery is not built", code="gallery-not-ready")
            loop = asyncio.get_running_loop()
            try:
                try:
                    masked, mapping, seconds = await loop.run_in_executor(
                        handle.executor, he_worker.score, probe, key_ref, None, threshold
                    )
                except he_worker.BundleNeeded:
                    bundle = await loop.run_in_executor(None, load_bundle)
                    masked, mapping, seconds = await loop.run_in_executor(
                        handle.executor, he_worker.score, probe, key_ref, bundle, threshold
                    )
            except BrokenProcessPool:
                raise UnavailableError("scoring worker died", code="worker-failed") from None
        finally:
            with self._lock:
                self._inflight -= 1
                self.on_depth(self._inflight)
        return ScoreOutcome(masked, mapping, handle.entry_ids, handle.version, seconds)

    def close(self, wait: bool = True) -> None:
        """Stop the workers; with ``wait``, after in-flight queries finish."""
        with self._lock:
            handle, self._current = self._current, None
        if handle is not None and handle.executor is not None:
            handle.executor.shutdown(wait=wait, cancel_futures=not wait)


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

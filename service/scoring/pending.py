"""The pending-query store: each scored query's secret mapping until the gate reveals.

The mapping (which masked position is which watchlist row) is the service's secret: a
gate that learnt it could tell which rows it matched and probe the watchlist. The
store keeps it from the match until the gate's reveal or until the query expires,
whichever comes first. The database row of the query (``svc_pending_queries``) holds
the query's status; the store holds what must not be written down.

Invariants of every :class:`PendingStore`:

- **Never in the clear outside service memory.** The mapping is never logged, never
  written to disk or a database unencrypted, never sent to a gate. A store shared by
  several service replicas must seal it (e.g. under the KEK) before it leaves the
  process.
- **Used at most once.** :meth:`PendingStore.take` removes the query: a second take,
  by any caller, fails. :class:`MemoryPendingStore` ensures it within one process; a
  store shared by replicas must make the take one atomic step in the database (a
  conditional update of the query's row), so that two replicas cannot both reveal.
- **Expires.** After ``expires_at`` a query can no longer be taken or retried, and
  :meth:`PendingStore.purge` drops it.
- **Bound to its gate.** Only the gate that sent the query can take it or retry it.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from service.errors import QueryExpiredError

__all__ = ["MemoryPendingStore", "PendingQuery", "PendingStore"]


@dataclass
class PendingQuery:
    """A scored query awaiting the gate's reveal.

    ``mapping`` is the secret position mapping; ``entry_ids`` and ``gallery_version``
    name the gallery it was scored against; ``probe`` is the gate's ciphertext (kept
    as alert evidence when policy says so); ``response``/``response_type`` are the match
    response sent, for an idempotent retry.
    """

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


class PendingStore(Protocol):
    """Secret mappings by query id (invariants: this module's docstring)."""

    def put(self, item: PendingQuery) -> None:
        """Remember a query's mapping until ``item.expires_at``."""
        ...

    def take(self, query_id: str, gate_id: str, now: dt.datetime) -> PendingQuery:
        """Remove and return the query; ``QueryExpiredError`` if gone, expired or
        another gate's. Removed even when it had expired."""
        ...

    def discard(self, query_id: str) -> None:
        """Forget a query that was never acknowledged (its commit failed)."""
        ...

    def response_for(
        self, query_id: str, gate_id: str, now: dt.datetime
    ) -> tuple[bytes, str] | None:
        """The match response and its media type of a still-pending query of this gate
        (for an idempotent retry); None if gone, expired or another gate's."""
        ...

    def purge(self, now: dt.datetime) -> list[str]:
        """Drop the queries expired at ``now``; returns their ids."""
        ...

    def __len__(self) -> int:
        """Queries held (expired ones not yet purged included)."""
        ...


class MemoryPendingStore:
    """:class:`PendingStore` in this process's memory (one service replica)."""

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

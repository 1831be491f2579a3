"""Routing: which worker takes a query or a preparation (preparation affinity).

A gate commits the seed of its next probe with each match, and an idle worker prepares
that future query (``crypto.he.prepared``). The preparation lives in that worker's
memory, so :class:`AffinityRouter` remembers which worker prepared for which gate key,
and the key's next query goes there unless that worker has more than
``WAIT_FOR_PREPARED`` jobs ahead of it; otherwise, and for keys with nothing prepared,
to the least-loaded available worker (the normal path: correct, only slower).

Workers are seen through :class:`Slot` (jobs in flight, whether the worker takes
work), indexed by position; the router keeps no reference to them. It is not
thread-safe: its owner serialises every call (the backend's lock).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

__all__ = ["WAIT_FOR_PREPARED", "AffinityRouter", "Slot", "least_loaded"]

#: Jobs a query waits behind, at most, on the worker holding its preparation. The online
#: half costs about a quarter of a whole query (``docs/benchmarks.md``), so finishing one
#: job first (often the query's own preparation, still running) and then the online half
#: beats a whole query on another worker, which on a machine with as many cores as
#: workers also slows the busy worker down and throws the preparation's work away.
WAIT_FOR_PREPARED = 1


class Slot(Protocol):
    """A worker as routing sees it."""

    @property
    def load(self) -> int:
        """Jobs (queries and preparations) submitted and not finished."""
        ...

    @property
    def available(self) -> bool:
        """Whether the worker takes work (False while it is being replaced)."""
        ...


def least_loaded(slots: Sequence[Slot]) -> int | None:
    """The available slot with the fewest jobs in flight (the first such); None when
    no slot is available."""
    candidates = [i for i, slot in enumerate(slots) if slot.available]
    return min(candidates, key=lambda i: slots[i].load) if candidates else None


class AffinityRouter:
    """Where each gate key's next query was prepared, and the routing built on it.

    Invariants: at most one worker per key (a newer preparation replaces the older);
    at most ``capacity`` keys, the least recently prepared forgotten first; an entry is
    consumed by the first query of its key (a preparation is used at most once); no
    entry names a worker that stopped taking work (:meth:`forget_worker`).
    """

    def __init__(self) -> None:
        #: Gate key reference -> index of the worker holding its preparation, least
        #: recently prepared first.
        self.prepared_at: OrderedDict[str, int] = OrderedDict()

    def for_query(self, key_ref: str, slots: Sequence[Slot]) -> int | None:
        """The worker for ``key_ref``'s query (consuming its affinity entry); None when
        no worker is available."""
        worker = self.prepared_at.pop(key_ref, None)
        if worker is None or not slots[worker].available or slots[worker].load > WAIT_FOR_PREPARED:
            worker = least_loaded(slots)
        return worker

    @staticmethod
    def for_preparation(slots: Sequence[Slot]) -> int | None:
        """An idle worker for a preparation, or None when there is none to spare.

        A preparation costs about a whole query, so it only ever uses capacity nothing
        else needs: None when the available workers have as many jobs in flight as
        there are of them, or when none is available.
        """
        up = [slot for slot in slots if slot.available]
        if not up or sum(slot.load for slot in up) >= len(up):
            return None
        return least_loaded(slots)

    def remember(self, key_ref: str, worker: int, capacity: int) -> None:
        """``worker`` now prepares ``key_ref``'s next query; keep at most ``capacity``
        entries (the least recently prepared are forgotten)."""
        self.prepared_at.pop(key_ref, None)
        self.prepared_at[key_ref] = worker
        while len(self.prepared_at) > capacity:
            self.prepared_at.popitem(last=False)

    def forget(self, key_ref: str, worker: int) -> None:
        """``worker``'s preparation for ``key_ref`` failed: forget it, unless the key has
        moved on to another worker meanwhile."""
        if self.prepared_at.get(key_ref) == worker:
            del self.prepared_at[key_ref]

    def forget_worker(self, worker: int) -> None:
        """``worker`` stopped taking work (it died): its preparations are lost."""
        for key_ref in [k for k, w in self.prepared_at.items() if w == worker]:
            del self.prepared_at[key_ref]

"""The old import path of the matching pool, kept while branches that import it merge.

The pool is now split by job under :mod:`service.scoring` (``docs/architecture.md``,
"Where the matching pool's jobs live"); import from there. This module only re-exports.
"""

from __future__ import annotations

from service.scoring.backend import ScoreOutcome, gallery_fingerprint
from service.scoring.inprocess import InProcessBackend
from service.scoring.pending import MemoryPendingStore, PendingQuery
from service.scoring.routing import WAIT_FOR_PREPARED
from service.scoring.supervision import RESTART_BACKOFF_S, RESTART_STABLE_S
from service.scoring.workers import GalleryHandle

__all__ = [
    "RESTART_BACKOFF_S",
    "RESTART_STABLE_S",
    "WAIT_FOR_PREPARED",
    "GalleryHandle",
    "MatchPool",
    "PendingQuery",
    "PendingStore",
    "ScoreOutcome",
    "gallery_fingerprint",
]

MatchPool = InProcessBackend
PendingStore = MemoryPendingStore

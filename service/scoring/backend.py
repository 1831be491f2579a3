"""The scoring backend interface: what the service asks of an encrypted-matching engine.

The routers, the lifecycle and the readiness probe use only :class:`ScoringBackend`.
Its first implementation is :class:`service.scoring.inprocess.InProcessBackend` (worker
processes of this service process, the default ``scoring_backend = "embedded"``); a
distributed engine (gallery shards on several machines, ``docs/scaling.md``) is a
second implementation of the same interface, chosen by the same setting.

Invariants every implementation keeps (callers rely on them):

- **One gallery version per query.** A query is scored against the gallery that was
  current when it was admitted, all of it, even if a rebuild switches versions
  meanwhile; :attr:`ScoreOutcome.gallery_version` and :attr:`ScoreOutcome.entry_ids`
  name that version and its rows. The version is :func:`gallery_fingerprint` of the
  entry ids and templates, so two engines (or two replicas) fed the same watchlist
  report the same version.
- **The result order is secret.** :attr:`ScoreOutcome.masked_result` is one masked
  result whose positions are a permutation of the gallery rows known only to the
  service; :attr:`ScoreOutcome.mapping` inverts it for ``HePort.resolve``. An engine
  that scores parts of the gallery separately (shards) gathers them into one result
  and one mapping, with the order secret across parts too.
- **The mapping never leaves service memory in the clear**: it is never logged,
  written to disk or sent to the gate. The pending store keeps it until the reveal
  (:mod:`service.scoring.pending`).
- **Bounded admission.** At most ``queue_limit`` queries are queued or running in one
  backend; beyond that :meth:`ScoringBackend.score` raises ``OverloadedError`` (503
  with ``Retry-After``) before doing any work. Preparations never count.
- **Typed failures.** No gallery yet: ``UnavailableError`` ``gallery-not-ready``; the
  worker scoring a query died, or no worker can take one: ``UnavailableError``
  ``worker-failed``. The query is not retried inside the backend (the probe may have
  been consumed); the gate sends it again.
- **Preparation is only a hint.** :meth:`ScoringBackend.prepare_soon` never blocks and
  never raises; a query scores to the same result whether or not its preparation was
  ready, used, dropped or never made.
- **Gate keys by reference.** ``key_ref`` names a gate key whose public bundle never
  changes; ``load_bundle`` (blocking, run in a thread) is called only when the worker
  that took the job does not hold that key yet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["GalleryView", "LoadBundle", "ScoreOutcome", "ScoringBackend", "gallery_fingerprint"]

#: Reads a gate key's public bundle (≈ 4 MB under ckks-v2) from storage; blocking.
LoadBundle = Callable[[], bytes]


@dataclass(frozen=True)
class ScoreOutcome:
    """A scored query: bytes for the gate, the secret mapping for the service.

    ``seconds`` is the scoring time inside the engine (wall clock, seconds);
    ``prepared`` whether a preparation made in advance was used.
    """

    masked_result: bytes
    mapping: Any
    entry_ids: tuple[str, ...]
    gallery_version: str
    seconds: float
    prepared: bool = False


class GalleryView(Protocol):
    """The gallery version a backend scores new queries against."""

    @property
    def version(self) -> str:
        """:func:`gallery_fingerprint` of the gallery (sha256 hex)."""
        ...

    @property
    def entry_ids(self) -> tuple[str, ...]:
        """Watchlist entry ids in gallery row order."""
        ...


class ScoringBackend(Protocol):
    """An encrypted-matching engine (invariants: this module's docstring).

    Thread safety: :meth:`score` and :meth:`prepare_soon` run on the event loop; the
    blocking methods (:meth:`rebuild`, :meth:`check_idle_workers`, :meth:`close`) in
    threads; all of them may run concurrently.
    """

    #: Called with the number of queries in flight each time it changes (a gauge).
    on_depth: Callable[[int], None]
    #: Called each time a dead worker's replacement is ready, before it takes work (a
    #: counter; it must not call back into the backend).
    on_restart: Callable[[], None]

    @property
    def current(self) -> GalleryView | None:
        """The gallery new queries are scored against (None before the first build)."""
        ...

    @property
    def depth(self) -> int:
        """Queries queued or running (preparations are not counted)."""
        ...

    @property
    def prepares(self) -> bool:
        """Whether idle workers prepare queries for committed seeds."""
        ...

    def rebuild(self, entry_ids: list[str], templates: npt.NDArray[np.float32]) -> str:
        """Encode a new gallery and switch new queries to it; returns its version.

        Blocking. Queries admitted before the switch finish on the old version. Raises
        ``UnavailableError`` if the new gallery could not be built (the old one stays).
        """
        ...

    async def score(
        self, probe: bytes, key_ref: str, load_bundle: LoadBundle, threshold: float
    ) -> ScoreOutcome:
        """Score one probe (a serialized CKKS ciphertext under the gate's key) against
        the current gallery; ``threshold`` is the cosine similarity of a hit."""
        ...

    def prepare_soon(self, key_ref: str, load_bundle: LoadBundle, seed: bytes) -> bool:
        """Prepare, in idle capacity, the query of ``key_ref``'s next probe, which the gate
        will encrypt under ``seed``; returns whether a preparation was started."""
        ...

    def check_idle_workers(self, timeout_s: float = 5.0) -> int:
        """Find workers that died while idle and start their replacements; returns how
        many were found dead. Blocking, up to ``timeout_s`` per worker."""
        ...

    def close(self, wait: bool = True) -> None:
        """Stop scoring; with ``wait``, after the queries in flight have finished."""
        ...


def gallery_fingerprint(entry_ids: tuple[str, ...], templates: npt.NDArray[np.float32]) -> str:
    """Service-side version hash over entry ids and template bytes (sha256 hex)."""
    digest = hashlib.sha256(b"veilmatch/gallery/v1\x00")
    for entry_id in entry_ids:
        digest.update(entry_id.encode() + b"\x00")
    digest.update(np.ascontiguousarray(templates, dtype="<f4").tobytes())
    return digest.hexdigest()

"""Code that runs inside the scoring worker processes (and the cheap parent-side calls).

A worker builds the encoded gallery once, in :func:`init_worker`, and then scores one
probe per call. Only bytes cross the process boundary in; the masked result (bytes)
and the per-query mapping (a crypto object, pickled over the pool's pipe, never
stored) come back.

Under single-ciphertext parameter sets (ckks-v2) a worker also *prepares* queries in
idle time (:func:`prepare`): the template-independent half of the query whose probe a
gate will encrypt under the seed it committed in advance (``crypto.he.prepared``). The
preparation stays in this process, keyed by the gate key, until that key's next probe
is scored here (:func:`score` uses it if it fits, once) or it is evicted.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "EMPTY_GALLERY_DIM",
    "BundleNeeded",
    "HeAdapter",
    "init_worker",
    "prepare",
    "ready",
    "score",
]

#: Template dimension assumed for an empty watchlist (the default SFace model's 128).
EMPTY_GALLERY_DIM = 128

_STATE: dict[str, Any] = {}
#: Gate keys ready for scoring (``PublicKeyBundle.for_scoring``), by reference: the id
#: of the gate key row, whose bundle never changes. Most recently used last. A ckks-v2
#: key is ≈ 8 MB here (rotation keys with their expanded ``a`` parts), so shipping and
#: parsing its ≈ 4 MB bundle per query would cost more than the key switching itself.
_KEYS: OrderedDict[str, Any] = OrderedDict()
#: Prepared queries (``crypto.he.PreparedQuery``), at most one per gate key reference,
#: most recently prepared last. Each holds its query's secret masking choices and is
#: used at most once; ≈ 6.4 MB at 100k templates of d = 128 (proportional to the
#: watchlist size), hence the small default capacity (``match_prepared_cache``).
_PREPARED: OrderedDict[str, Any] = OrderedDict()


class BundleNeeded(Exception):  # noqa: N818 - a request, not a failure
    """This worker has no cached key for the reference: send the bundle bytes."""

    def __init__(self, key_ref: str) -> None:
        super().__init__(key_ref)
        self.key_ref = key_ref


def _he() -> Any:
    import crypto.he as he  # the one SEAL-facing module, imported only where needed

    return he


def init_worker(
    templates: npt.NDArray[np.float32],
    parameter_set: str,
    key_cache_size: int = 128,
    prepared_cache_size: int = 16,
) -> None:
    """Build the encoded gallery for this worker process.

    ``prepared_cache_size`` bounds the prepared queries kept (0: never prepare).

    Also makes the kernels' OpenMP threads sleep instead of spin while they wait: the
    service runs ``match_workers`` processes, each with one numba thread per core, so
    under load there are more threads than cores, and spinning threads steal the core
    a peer needs to finish its share (measured with ``bench.load`` at 10k entries:
    22-23 matches/s against 14-17 with libgomp's default). Must run before the first
    parallel kernel loads OpenMP; an operator's own ``OMP_WAIT_POLICY`` wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _STATE["key_cache_size"] = key_cache_size
    _STATE["prepared_cache_size"] = prepared_cache_size
    _PREPARED.clear()
    he = _he()
    params = he.parameter_set(parameter_set)
    matrix = np.asarray(templates, dtype=np.float32)
    if matrix.shape[0] == 0:
        # An empty watchlist still answers every probe with a well-formed,
        # all-negative result, so a gate cannot tell that the watchlist is empty.
        matrix = np.zeros((0, EMPTY_GALLERY_DIM), dtype=np.float32)
    _STATE["params"] = params
    _STATE["gallery"] = he.Gallery.build(matrix, params)
    _warm_up(params, matrix.shape[1], prepare=_prepares(params))


def _prepares(params: Any) -> bool:
    return bool(params.single_ciphertext) and int(_STATE.get("prepared_cache_size", 0)) > 0


def _warm_up(params: Any, dim: int, prepare: bool = False) -> None:
    """Score one throwaway probe so numba compiles (or loads from its on-disk cache) the
    scoring kernels before this worker reports ready: otherwise the first traveller
    after a start or a watchlist change waits seconds for the JIT. With ``prepare``,
    also one prepared query and its prepared scoring (their own kernels, ≈ 10 s to
    compile). The throwaway key, gallery and results are discarded; nothing of them
    leaves the process."""
    he = _he()
    keys = he.GateKeyBundle.generate(params)
    unit = np.zeros((1, dim), dtype=np.float32)
    unit[0, 0] = 1.0
    gallery = he.Gallery.build(unit, params)
    public = keys.public()
    he.score_masked(he.encrypt_probe(keys, unit[0]), gallery, 0.5, public)
    if prepare:
        seed = os.urandom(32)
        prepared = he.prepare_query(public, gallery, seed)
        probe = he.encrypt_probe(keys, unit[0], seed=seed)
        he.score_masked(probe, gallery, 0.5, public, prepared=prepared)


def ready() -> str | None:
    """The gallery version this worker holds (None if initialisation failed)."""
    gallery = _STATE.get("gallery")
    return None if gallery is None else str(gallery.version)


def score(
    probe: bytes, key_ref: str, bundle: bytes | None, threshold: float
) -> tuple[bytes, Any, float, bool]:
    """Score and mask one probe; returns (masked result bytes, mapping, seconds, whether
    a prepared query was used).

    ``key_ref`` names the gate key (its row id); ``bundle`` is its public bundle, or
    None to use this worker's cached copy: ``BundleNeeded`` if there is none, and the
    caller sends the bytes. This key's preparation, if this worker holds one, is
    consumed: used when it was made for this probe's key, seed and this gallery, else
    dropped (the gate sent another probe than the one it committed to, e.g. one
    encrypted before, from its offline queue: the preparation is only wasted work).
    """
    he = _he()
    started = time.perf_counter()
    public = _scoring_key(key_ref, bundle)
    parsed = he.Probe.from_bytes(probe)
    gallery = _STATE["gallery"]
    prepared = _PREPARED.pop(key_ref, None)
    if prepared is not None and not prepared.fits(parsed, gallery):
        prepared = None
    masked, mapping = he.score_masked(parsed, gallery, threshold, public, prepared=prepared)
    return masked.to_bytes(), mapping, time.perf_counter() - started, prepared is not None


def prepare(key_ref: str, bundle: bytes | None, seed: bytes) -> float:
    """Prepare the query of ``key_ref``'s next probe, to be encrypted under ``seed``;
    returns the seconds spent.

    The bundle protocol is :func:`score`'s (``BundleNeeded``). The preparation replaces
    this key's older one and evicts the least recently prepared beyond the capacity;
    with capacity 0 nothing is done.
    """
    started = time.perf_counter()
    capacity = int(_STATE.get("prepared_cache_size", 0))
    if capacity <= 0:
        return 0.0
    public = _scoring_key(key_ref, bundle)
    _PREPARED.pop(key_ref, None)  # superseded: the gate has moved on to ``seed``
    _PREPARED[key_ref] = _he().prepare_query(public, _STATE["gallery"], seed)
    while len(_PREPARED) > capacity:
        _PREPARED.popitem(last=False)
    return time.perf_counter() - started


def _scoring_key(key_ref: str, bundle: bytes | None) -> Any:
    """The cached scoring key for ``key_ref``, parsed from ``bundle`` when given."""
    if bundle is None:
        cached = _KEYS.get(key_ref)
        if cached is None:
            raise BundleNeeded(key_ref)
        _KEYS.move_to_end(key_ref)
        return cached
    gallery = _STATE.get("gallery")
    dim = None if gallery is None else int(gallery.dim)
    public = _he().PublicKeyBundle.from_bytes(bundle).for_scoring(dim)
    _KEYS[key_ref] = public
    _KEYS.move_to_end(key_ref)
    while len(_KEYS) > int(_STATE.get("key_cache_size", 128)):
        _KEYS.popitem(last=False)
    return public


class HeAdapter:
    """:class:`service.ports.HePort` over ``crypto.he`` (parent-process calls)."""

    def __init__(self, parameter_set: str) -> None:
        self.parameter_set = parameter_set

    def public_bundle_key_id(self, bundle: bytes) -> str:
        """Parse a public key bundle made under the active parameter set; its key id."""
        from crypto.errors import ParameterMismatchError
        from crypto.he.keys import PublicKeyBundle

        parsed = PublicKeyBundle.from_bytes(bundle)
        if parsed.params.name != self.parameter_set:
            raise ParameterMismatchError("key bundle uses another HE parameter set")
        return str(parsed.key_id)

    @property
    def single_ciphertext(self) -> bool:
        """Whether the active set's probes are one seeded ciphertext (can be prepared)."""
        return bool(_he().parameter_set(self.parameter_set).single_ciphertext)

    def resolve(self, positions: Sequence[int], mapping: Any) -> list[int]:
        """Row indices for revealed positions."""
        return [int(i) for i in _he().resolve(list(positions), mapping)]

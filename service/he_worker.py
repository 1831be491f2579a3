"""Code that runs inside the scoring worker processes (and the cheap parent-side calls).

A worker builds the encoded gallery once, in :func:`init_worker`, and then scores one
probe per call. Only bytes cross the process boundary in; the masked result (bytes)
and the per-query mapping (a crypto object, pickled over the pool's pipe, never
stored) come back.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["EMPTY_GALLERY_DIM", "BundleNeeded", "HeAdapter", "init_worker", "ready", "score"]

#: Template dimension assumed for an empty watchlist (the default SFace model's 128).
EMPTY_GALLERY_DIM = 128

_STATE: dict[str, Any] = {}
#: Gate keys ready for scoring (``PublicKeyBundle.for_scoring``), by reference: the id
#: of the gate key row, whose bundle never changes. Most recently used last. A ckks-v2
#: key is ≈ 8 MB here (rotation keys with their expanded ``a`` parts), so shipping and
#: parsing its ≈ 4 MB bundle per query would cost more than the key switching itself.
_KEYS: OrderedDict[str, Any] = OrderedDict()


class BundleNeeded(Exception):  # noqa: N818 - a request, not a failure
    """This worker has no cached key for the reference: send the bundle bytes."""

    def __init__(self, key_ref: str) -> None:
        super().__init__(key_ref)
        self.key_ref = key_ref


def _he() -> Any:
    import crypto.he as he  # the one SEAL-facing module, imported only where needed

    return he


def init_worker(
    templates: npt.NDArray[np.float32], parameter_set: str, key_cache_size: int = 128
) -> None:
    """Build the encoded gallery for this worker process.

    Also makes the kernels' OpenMP threads sleep instead of spin while they wait: the
    service runs ``match_workers`` processes, each with one numba thread per core, so
    under load there are more threads than cores, and spinning threads steal the core
    a peer needs to finish its share (measured with ``bench.load`` at 10k entries:
    22-23 matches/s against 14-17 with libgomp's default). Must run before the first
    parallel kernel loads OpenMP; an operator's own ``OMP_WAIT_POLICY`` wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _STATE["key_cache_size"] = key_cache_size
    he = _he()
    params = he.parameter_set(parameter_set)
    matrix = np.asarray(templates, dtype=np.float32)
    if matrix.shape[0] == 0:
        # An empty watchlist still answers every probe with a well-formed,
        # all-negative result, so a gate cannot tell that the watchlist is empty.
        matrix = np.zeros((0, EMPTY_GALLERY_DIM), dtype=np.float32)
    _STATE["params"] = params
    _STATE["gallery"] = he.Gallery.build(matrix, params)
    _warm_up(params, matrix.shape[1])


def _warm_up(params: Any, dim: int) -> None:
    """Score one throwaway probe so numba compiles (or loads from its on-disk cache) the
    scoring kernels before this worker reports ready: otherwise the first traveller
    after a start or a watchlist change waits seconds for the JIT. The throwaway key,
    gallery and result are discarded; nothing of them leaves the process."""
    he = _he()
    keys = he.GateKeyBundle.generate(params)
    unit = np.zeros((1, dim), dtype=np.float32)
    unit[0, 0] = 1.0
    probe = he.encrypt_probe(keys, unit[0])
    he.score_masked(probe, he.Gallery.build(unit, params), 0.5, keys.public())


def ready() -> str | None:
    """The gallery version this worker holds (None if initialisation failed)."""
    gallery = _STATE.get("gallery")
    return None if gallery is None else str(gallery.version)


def score(
    probe: bytes, key_ref: str, bundle: bytes | None, threshold: float
) -> tuple[bytes, Any, float]:
    """Score and mask one probe; returns (masked result bytes, mapping, seconds).

    ``key_ref`` names the gate key (its row id); ``bundle`` is its public bundle, or
    None to use this worker's cached copy: ``BundleNeeded`` if there is none, and the
    caller sends the bytes.
    """
    he = _he()
    started = time.perf_counter()
    public = _scoring_key(key_ref, bundle)
    parsed = he.Probe.from_bytes(probe)
    masked, mapping = he.score_masked(parsed, _STATE["gallery"], threshold, public)
    return masked.to_bytes(), mapping, time.perf_counter() - started


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

    def resolve(self, positions: Sequence[int], mapping: Any) -> list[int]:
        """Row indices for revealed positions."""
        return [int(i) for i in _he().resolve(list(positions), mapping)]

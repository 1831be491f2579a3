"""Code that runs inside the scoring worker processes (and the cheap parent-side calls).

A worker builds the encoded gallery once, in :func:`init_worker`, and then scores one
probe per call. Only bytes cross the process boundary in; the masked result (bytes)
and the per-query mapping (a crypto object, pickled over the pool's pipe, never
stored) come back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["EMPTY_GALLERY_DIM", "HeAdapter", "init_worker", "ready", "score"]

#: Template dimension assumed for an empty watchlist (the default SFace model's 128).
EMPTY_GALLERY_DIM = 128

_STATE: dict[str, Any] = {}
#: Parsed public key bundles by key id, with the bytes they came from. A ckks-v2 bundle
#: is ~4 MB (rotation keys): parsing and validating it per query would cost more than a
#: byte comparison, which keeps the cache exact (a changed bundle is parsed again).
_BUNDLES: dict[str, tuple[bytes, Any]] = {}
_BUNDLE_CACHE_SIZE = 16


def _he() -> Any:
    import crypto.he as he  # the one SEAL-facing module, imported only where needed

    return he


def init_worker(templates: npt.NDArray[np.float32], parameter_set: str) -> None:
    """Build the encoded gallery for this worker process.

    Also makes the kernels' OpenMP threads sleep instead of spin while they wait: the
    service runs ``match_workers`` processes, each with one numba thread per core, so
    under load there are more threads than cores, and spinning threads steal the core
    a peer needs to finish its share (measured with ``bench.load`` at 10k entries:
    22-23 matches/s against 14-17 with libgomp's default). Must run before the first
    parallel kernel loads OpenMP; an operator's own ``OMP_WAIT_POLICY`` wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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


def score(probe: bytes, public_bundle: bytes, threshold: float) -> tuple[bytes, Any, float]:
    """Score and mask one probe; returns (masked result bytes, mapping, seconds)."""
    he = _he()
    started = time.perf_counter()
    bundle = _public_bundle(public_bundle)
    parsed = he.Probe.from_bytes(probe)
    masked, mapping = he.score_masked(parsed, _STATE["gallery"], threshold, bundle)
    return masked.to_bytes(), mapping, time.perf_counter() - started


def _public_bundle(data: bytes) -> Any:
    """The parsed bundle for ``data``, from the cache when the bytes are identical."""
    he = _he()
    key_id = bytes(data[37:53]).hex()  # header: magic 4, version 1, params hash 32, key id 16
    cached = _BUNDLES.get(key_id)
    if cached is not None and cached[0] == data:
        return cached[1]
    bundle = he.PublicKeyBundle.from_bytes(data)
    if len(_BUNDLES) >= _BUNDLE_CACHE_SIZE:
        _BUNDLES.pop(next(iter(_BUNDLES)))
    _BUNDLES[bundle.key_id] = (bytes(data), bundle)
    return bundle


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

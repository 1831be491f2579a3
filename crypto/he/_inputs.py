"""What the scoring kernels need besides the probe: a query's secret random choices and
the per-prime constants, shared by the fused (``protocol``) and prepared paths."""

from __future__ import annotations

import functools
import os
import random

import numpy as np
import numpy.typing as npt

from crypto.he._seal import Backend
from crypto.he._specs import Primes, QueryLayout
from crypto.he.gallery import Gallery
from crypto.he.masks import MaskPool, default_pool, generate_units
from crypto.he.params import ParameterSet

__all__ = ["mask_units", "primes", "query_layout", "query_randomness", "tau_residues"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


def query_randomness(
    count: int, slots: int, rng: np.random.Generator | None
) -> tuple[I64, I64, bytes]:
    """(rotation per block, result order, query id): from ``rng`` if given, else the OS."""
    if rng is not None:
        rotations = rng.integers(0, slots, size=count).astype(np.int64)
        return rotations, rng.permutation(count).astype(np.int64), rng.bytes(16)
    raw = np.frombuffer(os.urandom(8 * count), dtype=np.uint64)
    rotations = (raw % np.uint64(slots)).astype(np.int64)  # slots is a power of two
    order = list(range(count))
    random.SystemRandom().shuffle(order)
    return rotations, np.array(order, dtype=np.int64), os.urandom(16)


def mask_units(
    params: ParameterSet, count: int, rng: np.random.Generator | None, pool: MaskPool | None
) -> npt.NDArray[np.uint32]:
    """``count`` single-use units of mask material: drawn from ``rng`` if given (tests:
    the same stream as ``query_randomness``, drawn after it), else taken from ``pool``
    (default: this process's pool, which generates what it lacks)."""
    if rng is not None:
        return generate_units(params, count, rng=rng)
    units, _ = (pool or default_pool(params)).take(count)
    return units


def tau_residues(be: Backend, gallery: Gallery, threshold: float) -> U64:
    """τ at the score scale Δv·Δt, mod each data prime."""
    params = gallery.params
    scale_bits = params.probe_scale_bits + params.template_scale_bits
    return np.array([round(threshold * 2.0**scale_bits) % int(p) for p in be.q], dtype=np.uint64)


def query_layout(params: ParameterSet, rotations: I64, order: I64) -> QueryLayout:
    """The kernels' view of a query's secret choices: each gallery block's result
    position (the inverse of ``order``) and the block visit order (by rotation, so
    windows overlap in cache), validated (``_specs.QueryLayout``)."""
    return QueryLayout.of(rotations, order, params.slots)


@functools.lru_cache(maxsize=8)
def primes(be: Backend) -> Primes:
    """The data primes and their reduction constants (cached per backend)."""
    return Primes.of(be.q)

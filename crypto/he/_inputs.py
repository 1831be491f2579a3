"""What the scoring kernels need besides the probe: a query's secret random choices and
the per-prime constants, shared by the fused (``protocol``) and prepared paths."""

from __future__ import annotations

import os
import random

import numpy as np
import numpy.typing as npt

from crypto.he._kernels import mu_for, r32_for
from crypto.he._seal import Backend
from crypto.he.gallery import Gallery
from crypto.he.keys import PublicKeyBundle
from crypto.he.masks import MaskPool, default_pool, generate_units
from crypto.he.params import ParameterSet

__all__ = ["kernel_inputs", "mask_units", "query_randomness", "tau_residues"]

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


def kernel_inputs(
    be: Backend, public: PublicKeyBundle, rotations: I64, order: I64
) -> tuple[npt.NDArray[np.uint32], I64, I64, I64, U64, U64, U64]:
    """(pk, rotations, position, visit, q, r32, mu) in the kernels' argument order:
    the public key in slot order, each gallery block's result position (the inverse of
    ``order``) and the block visit order (by rotation, so windows overlap in cache)."""
    return (
        public.public_slot_residues(),
        rotations,
        np.argsort(order).astype(np.int64),
        np.argsort(rotations, kind="stable").astype(np.int64),
        be.q,
        r32_for(be.q),
        mu_for(be.q),
    )

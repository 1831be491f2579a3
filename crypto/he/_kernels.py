"""Fused numba kernels over RNS residues (NTT form). Pure functions of arrays.

Residues are < q < 2**31, so a product of two fits in 62 bits. Accumulators are uint64
and are *folded* every three products: with R = 2**32 mod q (small for our primes,
since q is just below 2**31), ``lo32 + hi32·R`` is congruent to the accumulator and
< 2**32 + 2**51, leaving room for three more products before 2**64. A final ``% q``
gives canonical residues.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


@njit(cache=True, inline="always")
def _fold(acc: np.uint64, r32: np.uint64) -> np.uint64:  # pragma: no cover - jitted
    return (acc & _MASK32) + (acc >> _SHIFT) * r32


@njit(parallel=True, cache=True)
def mac_rotated(gallery, probe, shifts, gathers, q, r32, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out[c, t, p] = Σ_j gallery[c, j, p] · probe[(j + shifts[c]) % D, t, p][gathers[c]]  mod q[p].

    gallery: uint32 (C, D, k, N); probe: uint32 (D, 2, k, N); shifts: int64 (C,);
    gathers: int64 (C, N) index maps; q, r32: uint64 (k,); out: uint64 (C, 2, k, N).
    Reading the probe through ``gathers[c]`` applies the inverse of the result
    rotation to the probe, so the gallery is streamed contiguously.
    """
    n_ct, n_diag, k, n = gallery.shape
    for task in prange(n_ct * k):
        c = task // k
        p = task % k
        qq = q[p]
        rr = r32[p]
        g = gathers[c]
        acc0 = np.zeros(n, dtype=np.uint64)
        acc1 = np.zeros(n, dtype=np.uint64)
        for j in range(n_diag):
            jj = (j + shifts[c]) % n_diag
            gal = gallery[c, j, p]
            p0 = probe[jj, 0, p]
            p1 = probe[jj, 1, p]
            for x in range(n):
                w = np.uint64(gal[x])
                gx = g[x]
                acc0[x] += w * np.uint64(p0[gx])
                acc1[x] += w * np.uint64(p1[gx])
            if j % 3 == 2:
                for x in range(n):
                    acc0[x] = _fold(acc0[x], rr)
                    acc1[x] = _fold(acc1[x], rr)
        for x in range(n):
            out[c, 0, p, x] = _fold(_fold(acc0[x], rr), rr) % qq
            out[c, 1, p, x] = _fold(_fold(acc1[x], rr), rr) % qq


def r32_for(q: np.ndarray) -> np.ndarray:
    """2**32 mod q for each prime (uint64)."""
    return np.array([(1 << 32) % int(x) for x in q], dtype=np.uint64)

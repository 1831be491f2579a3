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


_BLOCK = 512  # slots per accumulator block: 2 × 512 × 8 B stays in L1


@njit(parallel=True, cache=True)
def mac_rotated(gallery, probe, shifts, gathers, q, r32, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out[c, t, p] = Σ_j gallery[c, j, p] · probe[(j + shifts[c]) % D, t, p][gathers[c]]  mod q[p].

    gallery: uint32 (C, D, k, N); probe: uint32 (D, 2, k, N); shifts: int64 (C,);
    gathers: int64 (C, N) index maps; q, r32: uint64 (k,); out: uint64 (C, 2, k, N).
    Reading the probe through ``gathers[c]`` applies the inverse of the result
    rotation to the probe, so the gallery is streamed contiguously. Work is split in
    (ciphertext, prime, block of N) tasks so both cores stay busy and the accumulators
    stay in L1.
    """
    n_ct, n_diag, k, n = gallery.shape
    blocks = n // _BLOCK
    for task in prange(n_ct * k * blocks):
        c = task // (k * blocks)
        p = (task // blocks) % k
        x0 = (task % blocks) * _BLOCK
        qq = q[p]
        rr = r32[p]
        g = gathers[c, x0 : x0 + _BLOCK]
        acc0 = np.zeros(_BLOCK, dtype=np.uint64)
        acc1 = np.zeros(_BLOCK, dtype=np.uint64)
        for j in range(n_diag):
            jj = (j + shifts[c]) % n_diag
            gal = gallery[c, j, p, x0 : x0 + _BLOCK]
            p0 = probe[jj, 0, p]
            p1 = probe[jj, 1, p]
            for x in range(_BLOCK):
                w = np.uint64(gal[x])
                gx = g[x]
                acc0[x] += w * np.uint64(p0[gx])
                acc1[x] += w * np.uint64(p1[gx])
            if j % 3 == 2:
                for x in range(_BLOCK):
                    acc0[x] = _fold(acc0[x], rr)
                    acc1[x] = _fold(acc1[x], rr)
        for x in range(_BLOCK):
            out[c, 0, p, x0 + x] = _fold(_fold(acc0[x], rr), rr) % qq
            out[c, 1, p, x0 + x] = _fold(_fold(acc1[x], rr), rr) % qq


@njit(cache=True, inline="always")
def _red(v: np.uint64, q: np.uint64) -> np.uint64:  # pragma: no cover - jitted
    """v mod q for v < 2q, branch-free."""
    return min(v, v - q)


@njit(cache=True, inline="always")
def _mulmod(a, b, q, mu):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """a·b mod q for a, b < q < 2**31, Barrett with mu = floor(2**62 / q)."""
    x = a * b
    qhat = ((x >> np.uint64(30)) * mu) >> _SHIFT
    r = x - qhat * q  # < 4q
    r = min(r, r - q - q)
    return min(r, r - q)


@njit(parallel=True, cache=True)
def mask_combine(y, pad_bias, tau, small, pk, rot_perms, conj, q, mu, order, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """The masking of ``crypto.he.protocol`` in one pass per (result ciphertext, prime).

    With Y the scored block c (threshold subtracted, padding biased), Z = σ_r(Y) the
    rotated one, mask A = 1 + H·σ_conj(H) (exactly real, so σ_conj(A) = A), and a fresh
    rerandomiser R = (u·p0 + F, u·p1 + e2), writes for result position i (c = order[i])::

        c0 = A·(Z0 + σ_conj(Z0)) + R0 + σ_conj(R0)
        c1 = A·Z1 + R1

    (c0, c1, σ_conj(c1)) decrypts under (1, s, σ_conj(s)) to 2·Re(A·Z + R): the gate
    gets the real part only; c0 is conjugation-symmetric, so the imaginary part of
    A·Z is not recoverable from it.

    y: (C, 2, k, N) uint64; pad_bias: (C, k, N); tau: (k,) = τ·Δ mod q; small: NTT of
    (h, u, F, e2) as (C, 4, k, N); pk: (2, k, N); rot_perms: (C, N); conj: (N,);
    q, mu: (k,); order: (C,); out: uint32 (C, 2, k, N).
    """
    n_ct, _, k, n = y.shape
    one = np.uint64(1)
    for task in prange(n_ct * k):
        i = task // k
        p = task % k
        c = order[i]
        qq = q[p]
        mm = mu[p]
        tq = qq - tau[p]
        for x in range(n):
            cx = conj[x]
            rx = rot_perms[c, x]
            rcx = rot_perms[c, cx]
            z0 = _red(_red(y[c, 0, p, rx] + pad_bias[c, p, rx], qq) + tq, qq)
            zc0 = _red(_red(y[c, 0, p, rcx] + pad_bias[c, p, rcx], qq) + tq, qq)
            a = _red(one + _mulmod(small[c, 0, p, x], small[c, 0, p, cx], qq, mm), qq)
            r0 = _red(_mulmod(small[c, 1, p, x], pk[0, p, x], qq, mm) + small[c, 2, p, x], qq)
            r0c = _red(_mulmod(small[c, 1, p, cx], pk[0, p, cx], qq, mm) + small[c, 2, p, cx], qq)
            r1 = _red(_mulmod(small[c, 1, p, x], pk[1, p, x], qq, mm) + small[c, 3, p, x], qq)
            out[i, 0, p, x] = _red(_mulmod(a, _red(z0 + zc0, qq), qq, mm) + _red(r0 + r0c, qq), qq)
            out[i, 1, p, x] = _red(_mulmod(a, y[c, 1, p, rx], qq, mm) + r1, qq)


@njit(cache=True)
def _ntt_one(a, psi_rev, psi_shoup, q):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """In-place negacyclic NTT with bit-reversed output (Longa–Naehrig), as SEAL orders it.

    a: uint32 (N,) values < q < 2**31; psi_rev[k] = ψ^{bitrev(k)}; psi_shoup[k] =
    floor(psi_rev[k]·2**32 / q) (Shoup multiplication). uint32 storage lets LLVM use
    32×32→64-bit vector multiplies; comparisons are branch-free.
    """
    n = a.shape[0]
    t = n
    m = 1
    q32 = np.uint32(q)
    while m < n:
        t >>= 1
        for i in range(m):
            j1 = 2 * i * t
            w = np.uint64(psi_rev[m + i])
            ws = np.uint64(psi_shoup[m + i])
            for j in range(j1, j1 + t):
                u = a[j]
                x = np.uint64(a[j + t])
                qhat = (x * ws) >> _SHIFT
                v = np.uint32(x * w - qhat * q)  # in [0, 2q)
                v = min(v, np.uint32(v - q32))
                s = np.uint32(u + v)
                d = np.uint32(u + q32 - v)
                a[j] = min(s, np.uint32(s - q32))
                a[j + t] = min(d, np.uint32(d - q32))
        m <<= 1


@njit(parallel=True, cache=True)
def ntt_many(polys, q, psi_rev, psi_shoup, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out[m, p] = NTT_p(polys[m] mod q[p]) for small signed int64 polys (m, N)."""
    count, n = polys.shape
    k = q.shape[0]
    for task in prange(count * k):
        m = task // k
        p = task % k
        qq = q[p]
        a = np.empty(n, dtype=np.uint32)
        qi = np.int64(qq)
        for x in range(n):
            v = polys[m, x] % qi
            a[x] = np.uint32(v)
        _ntt_one(a, psi_rev[p], psi_shoup[p], qq)
        for x in range(n):
            out[m, p, x] = np.uint64(a[x])


def ntt_tables(primes: np.ndarray, psis: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """ψ powers in bit-reversed order and their Shoup companions, per prime (k, N)."""
    bits = n.bit_length() - 1
    rev = np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n)], dtype=np.int64)
    k = len(psis)
    psi_rev = np.empty((k, n), dtype=np.uint32)
    psi_shoup = np.empty((k, n), dtype=np.uint32)
    for p, (q, psi) in enumerate(zip(primes, psis, strict=True)):
        qi = int(q)
        powers = [1] * n
        for i in range(1, n):
            powers[i] = powers[i - 1] * psi % qi
        vals = [powers[r] for r in rev]
        psi_rev[p] = vals
        psi_shoup[p] = [(v << 32) // qi for v in vals]
    return psi_rev, psi_shoup


def r32_for(q: np.ndarray) -> np.ndarray:
    """2**32 mod q for each prime (uint64)."""
    return np.array([(1 << 32) % int(x) for x in q], dtype=np.uint64)


def mu_for(q: np.ndarray) -> np.ndarray:
    """Barrett constants floor(2**62 / q) for each prime (uint64)."""
    return np.array([(1 << 62) // int(x) for x in q], dtype=np.uint64)

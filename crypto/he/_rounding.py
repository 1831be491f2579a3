"""Numba kernels of the rounded result format (``crypto/he/rounding.py`` drives them).

Service side, ``round_rows``: a masked result ciphertext (c0, c1) arrives as NTT residues
mod the two data primes in SEAL's order. Each row is brought to its integer
coefficients x ∈ [0, Q) (inverse NTT per prime, ``_keyswitch.intt_t``, then CRT), and
every coefficient is scaled from Z_Q to Z_{2^b} and rounded: y = ⌊x·2^b / Q⌉ mod 2^b.
This is CKKS modulus switching to the power-of-two modulus 2^b (rounding error ≤ 1/2
per coefficient, plus float64's 2^(b−53)); it is a public, deterministic function of
the ciphertext the gate would otherwise receive.

Gate side, ``rounded_products``: for the rounded c1' (centred, |c1'| ≤ 2^(b1−1)), the
exact integer polynomial c1'·s + σ_conj(c1')·σ_conj(s) mod X^N + 1. Its coefficients
are bounded by 2·N·2^(b1−1) = 2^(b1+12) < Q/2, so it is computed exactly through the two
data primes (forward NTT, products with the secret's NTT, inverse NTT); the caller's CRT
(``decrypt._crt_centred``) then recovers the integers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from crypto.he._kernels import _mulmod, _red
from crypto.he._keyswitch import _mod, _sub_if, intt_t, ntt_t


@njit(cache=True, inline="always")
def _to_coefficients(row, tb, p, spec, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out = INTT_p(row) (natural order) for ``row`` in SEAL's NTT order, residues < q_p."""
    n = row.shape[0]
    for e in range(n):
        spec[e % 8, e // 8] = np.uint64(row[e])
    intt_t(spec, out, tb[3][p], tb[4][p], tb[7][p], tb[8][p], tb[0][p], tb[9][p], tb[10][p])


@njit(parallel=True, cache=True, nogil=True)
def round_rows(polys, row, tb, inv, mu1, scale, bits, out, asym):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out[i, t] = ⌊x_t·2^bits / Q⌉ mod 2^bits for the coefficients x of ``polys[i, row]``.

    polys: uint32 (C, 2, 2, N) residues mod (q0, q1), SEAL's NTT order; tb: the
    key-switching context's limb tables (data limbs first); inv = q0^{-1} mod q1 and
    mu1 = ⌊2**62 / q1⌋ (uint64); scale = 2^bits / Q (float64); out: uint64 (C, M) with
    M ≤ N, the first M coefficients. asym: int64 (C,), set to the number of
    coefficient pairs that violate x_t + x_{N−t} ≡ 0 (mod Q) or x_{N/2} ≡ 0 — the
    conjugation symmetry of a masked c0 (only meaningful for row 0).
    """
    count = polys.shape[0]
    n = polys.shape[3]
    width = out.shape[1]
    q = tb[0]
    q0 = q[0]
    q1 = q[1]
    big_q = q0 * q1
    mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    for i in prange(count):
        spec = np.empty((8, n // 8), dtype=np.uint64)
        coeffs = np.empty((2, n), dtype=np.uint64)
        for p in range(2):
            _to_coefficients(polys[i, row, p], tb, p, spec, coeffs[p])
        x = spec.reshape(n)  # reused: the integer coefficients in [0, Q)
        for t in range(n):
            r0 = coeffs[0, t]
            r1 = coeffs[1, t]
            lift = _mulmod(_red(r1 + q1 - _red(r0, q1), q1), inv, q1, mu1)
            x[t] = r0 + q0 * lift
        for t in range(width):
            y = np.floor(np.float64(x[t]) * scale + 0.5)
            out[i, t] = np.uint64(y) & mask
        bad = 0
        if x[n // 2] != 0:
            bad += 1
        for t in range(1, n // 2):
            s = x[t] + x[n - t]  # < 2Q < 2**63
            if s != 0 and s != big_q:
                bad += 1
        asym[i] = bad


@njit(cache=True, nogil=True)
def rounded_products(c1, bits, s, sc, conj, mu, tb, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out[i, p] = INTT_p(NTT_p(c1'_i)·s + NTT_p(c1'_i)[conj]·sc) mod q_p, natural order.

    c1: uint64 (C, N), the rounded c1 rows in [0, 2^bits), centred here; s, sc: uint64
    (k, N) the secret's NTT residues in SEAL's order and their conjugate (the caller
    checked ``_keyswitch.reduction_fits(q, 2^bits)`` for each data prime); conj: int64
    (N,) the conjugation's index map in that order; mu: Barrett constants of the data
    primes; tb: the key-switching limb tables; out: uint64 (C, k, N). One thread, like
    ``decrypt._decrypt_coefficients`` (a gate calls this from its own threads).
    """
    count, n = c1.shape
    k = out.shape[1]
    q = tb[0]
    half = np.uint64(1) << np.uint64(bits - 1)
    row = np.empty(n, dtype=np.uint64)
    spec = np.empty((8, n // 8), dtype=np.uint64)
    seal = np.empty(n, dtype=np.uint64)
    for i in range(count):
        for p in range(k):
            qq = q[p]
            mm = mu[p]
            r32 = (np.uint64(1) << np.uint64(32)) % qq
            m37 = (np.uint64(1) << np.uint64(37)) // qq
            # centring subtracts 2^bits: add q − (2^bits mod q) instead
            minus = qq - (np.uint64(1) << np.uint64(bits)) % qq
            for x in range(n):
                w = c1[i, x]
                r = _mod(w, qq, r32, m37)  # exact for w < 2^bits (``reduction_fits``)
                row[x] = _sub_if(r + minus, qq) if w >= half else r
            ntt_t(row, spec, tb[1][p], tb[2][p], tb[5][p], tb[6][p], qq)
            for e in range(n):
                seal[e] = spec[e % 8, e // 8]
            for e in range(n):
                a = _mulmod(seal[e], s[p, e], qq, mm)
                b = _mulmod(seal[conj[e]], sc[p, e], qq, mm)
                spec[e % 8, e // 8] = _red(a + b, qq)
            intt_t(spec, out[i, p], tb[3][p], tb[4][p], tb[7][p], tb[8][p], qq, tb[9][p], tb[10][p])


__all__ = ["round_rows", "rounded_products"]

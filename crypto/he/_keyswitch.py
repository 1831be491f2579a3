"""Numba kernels of the hoisted key switching (``crypto/he/rotkeys.py`` drives them).

Everything here works on RNS *limbs*: the data primes q_0..q_{k−1} followed by the
switch primes p_0..p_{m−1} (P = Π p), all < 2**31, stored as uint64 in the fast path's
*slot order* (``crypto/he/_kernels.py``: a rotation by r is a cyclic shift by r inside
each half). The transforms take and give SEAL's bit-reversed NTT order; callers gather
and scatter with ``to_ntt``.

Key switching (GHS with RNS digits, as in SEAL, Lattigo and OpenFHE), for a rotation
σ_j of a ciphertext (c0, c1) under s:

* digits d_i = [c1]_{q_i} (centred, coefficient form), lifted to every limb and NTT'd
  once per ciphertext (``decompose``) — the *hoisting*: σ_j(d_i) is then only a shift;
* acc_c = Σ_i σ_j(d_i) · K_j[i][c] over all limbs (K_j = (b, a), b = −a·s + e +
  P·g_i·σ_j(s), g_i the CRT gadget), so acc_0 + acc_1·s ≡ P·σ_j(c1·s) + Σ d_i e_i;
* ModDown: y_c = (acc_c − [acc_c]_P) / P over the data primes, exact division, where
  [·]_P is the centred remainder rebuilt from the switch limbs by CRT: the result is
  ⌊acc_c / P⌉ (rounding error ≤ 1/2 per coefficient);
* the rotated ciphertext is (σ_j(c0) + y_0, y_1).

Modular products use a float64 quotient estimate (exact after one correction, any
prime < 2**31; ``_mod``), so the same code serves 31-bit data and 23-bit switch primes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_S32 = np.uint64(32)


@njit(cache=True, inline="always")
def _mod(w, q, qinv):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """w mod q for any uint64 w < 2**63 and prime q < 2**31 (float quotient, fixed up)."""
    qhat = np.uint64(np.float64(w) * qinv)
    r = np.int64(w - qhat * q)
    qi = np.int64(q)
    r = r + qi if r < 0 else r
    r = r - qi if r >= qi else r
    return np.uint64(r)


@njit(cache=True, inline="always")
def _smod(v, q, qinv):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """v mod q in [0, q) for a signed int64 |v| < 2**62."""
    r = _mod(np.uint64(abs(v)), q, qinv)
    return q - r if (v < 0 and r != 0) else r


# ---- transforms ---------------------------------------------------------------------


@njit(cache=True, inline="always")
def _ct_bfly(a, i0, i1, w, ws, q, q2):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Cooley–Tukey butterfly on a[i0], a[i1] (Harvey's lazy form, values < 4q)."""
    u = a[i0]
    u = min(u, u - q2)
    x = a[i1]
    x = min(x, x - q2)
    v = x * w - ((x * ws) >> _S32) * q
    a[i0] = u + v
    a[i1] = u + q2 - v


@njit(cache=True, inline="always")
def _ct_run(lo, hi, w, ws, q, q2, length):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    for j in range(length):
        u = lo[j]
        u = min(u, u - q2)
        x = hi[j]
        x = min(x, x - q2)
        v = x * w - ((x * ws) >> _S32) * q
        lo[j] = u + v
        hi[j] = u + q2 - v


@njit(cache=True)
def ntt(a, psi, psi_shoup, q):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """In-place negacyclic NTT, natural order in, bit-reversed out (SEAL's order).

    a: uint64 (N,) with values < q; psi[i] = ψ^{bitrev(i)}, psi_shoup[i] =
    ⌊psi[i]·2**32 / q⌋. Lazy butterflies keep values < 4q (< 2**33); the long stages
    are contiguous runs and the last three are written out so LLVM vectorises them.
    """
    n = a.shape[0]
    q2 = q + q
    t = n
    m = 1
    while t > 8:
        t >>= 1
        for i in range(m):
            j1 = 2 * i * t
            _ct_run(a[j1 : j1 + t], a[j1 + t : j1 + 2 * t], psi[m + i], psi_shoup[m + i], q, q2, t)
        m <<= 1
    for i in range(m):  # t = 4
        w = psi[m + i]
        ws = psi_shoup[m + i]
        b = 8 * i
        _ct_bfly(a, b, b + 4, w, ws, q, q2)
        _ct_bfly(a, b + 1, b + 5, w, ws, q, q2)
        _ct_bfly(a, b + 2, b + 6, w, ws, q, q2)
        _ct_bfly(a, b + 3, b + 7, w, ws, q, q2)
    m <<= 1
    for i in range(m):  # t = 2
        w = psi[m + i]
        ws = psi_shoup[m + i]
        b = 4 * i
        _ct_bfly(a, b, b + 2, w, ws, q, q2)
        _ct_bfly(a, b + 1, b + 3, w, ws, q, q2)
    m <<= 1
    for i in range(m):  # t = 1
        _ct_bfly(a, 2 * i, 2 * i + 1, psi[m + i], psi_shoup[m + i], q, q2)
    for j in range(n):
        x = a[j]
        x = min(x, x - q2)
        a[j] = min(x, x - q)


@njit(cache=True, inline="always")
def _gs_bfly(a, i0, i1, w, ws, q, q2):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Gentleman–Sande butterfly (inputs < 2q, outputs < 2q)."""
    u = a[i0]
    v = a[i1]
    s = u + v
    a[i0] = min(s, s - q2)
    x = u + q2 - v
    x = min(x, x - q2)
    a[i1] = x * w - ((x * ws) >> _S32) * q


@njit(cache=True, inline="always")
def _gs_run(lo, hi, w, ws, q, q2, length):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    for j in range(length):
        u = lo[j]
        v = hi[j]
        s = u + v
        lo[j] = min(s, s - q2)
        x = u + q2 - v
        x = min(x, x - q2)
        hi[j] = x * w - ((x * ws) >> _S32) * q


@njit(cache=True)
def intt(a, ipsi, ipsi_shoup, q, n_inv, n_inv_shoup):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """In-place inverse of ``ntt``: bit-reversed in, natural order out, values < q.

    ipsi[i] = ψ^{−bitrev(i)} with Shoup companions; n_inv = N^{-1} mod q.
    """
    n = a.shape[0]
    q2 = q + q
    m = n >> 1
    for i in range(m):  # t = 1
        _gs_bfly(a, 2 * i, 2 * i + 1, ipsi[m + i], ipsi_shoup[m + i], q, q2)
    m >>= 1
    for i in range(m):  # t = 2
        w = ipsi[m + i]
        ws = ipsi_shoup[m + i]
        b = 4 * i
        _gs_bfly(a, b, b + 2, w, ws, q, q2)
        _gs_bfly(a, b + 1, b + 3, w, ws, q, q2)
    m >>= 1
    for i in range(m):  # t = 4
        w = ipsi[m + i]
        ws = ipsi_shoup[m + i]
        b = 8 * i
        _gs_bfly(a, b, b + 4, w, ws, q, q2)
        _gs_bfly(a, b + 1, b + 5, w, ws, q, q2)
        _gs_bfly(a, b + 2, b + 6, w, ws, q, q2)
        _gs_bfly(a, b + 3, b + 7, w, ws, q, q2)
    t = 8
    while m > 1:
        m >>= 1
        for i in range(m):
            j1 = 2 * i * t
            _gs_run(
                a[j1 : j1 + t], a[j1 + t : j1 + 2 * t], ipsi[m + i], ipsi_shoup[m + i], q, q2, t
            )
        t <<= 1
    for j in range(n):
        x = a[j]
        x = x * n_inv - ((x * n_inv_shoup) >> _S32) * q
        a[j] = min(x, x - q)


@njit(parallel=True, cache=True)
def ntt_rows(polys, limb_of_row, psi, psi_shoup, q):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """In place, row r of ``polys`` (R, N) uint64 gets the NTT of limb ``limb_of_row[r]``."""
    for r in prange(polys.shape[0]):
        p = limb_of_row[r]
        ntt(polys[r], psi[p], psi_shoup[p], q[p])


@njit(parallel=True, cache=True)
def intt_rows(polys, limb_of_row, ipsi, ipsi_shoup, q, n_inv, n_inv_shoup):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """In place, row r of ``polys`` (R, N) uint64 gets the inverse NTT of its limb."""
    for r in prange(polys.shape[0]):
        p = limb_of_row[r]
        intt(polys[r], ipsi[p], ipsi_shoup[p], q[p], n_inv[p], n_inv_shoup[p])


# ---- decomposition ------------------------------------------------------------------


@njit(cache=True, inline="always")
def _lift_digit(coeffs, half, qd, limbs, i, psi, psi_shoup, q, to_ntt, row, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out[l] = NTT_l(centred digit) in slot order for every limb l ≠ i."""
    n = coeffs.shape[0]
    for limb in range(limbs):
        if limb == i:
            continue
        ql = q[limb]
        qinv = 1.0 / np.float64(ql)
        for x in range(n):
            v = np.int64(coeffs[x])
            v = v - np.int64(qd) if v > half else v  # centred in (−q_i/2, q_i/2)
            row[x] = _smod(v, ql, qinv)
        ntt(row, psi[limb], psi_shoup[limb], ql)
        for t in range(n):
            out[limb, t] = np.uint32(row[to_ntt[t]])


@njit(parallel=True, cache=True, nogil=True)
def decompose(c1, ipsi, ipsi_shoup, n_inv, n_inv_shoup, psi, psi_shoup, q, to_ntt, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """RNS digits of c1, lifted to every limb: out[g, i, l] = NTT_l([c1_g]_{q_i}) (slot order).

    c1: uint32 (G, k, N) in slot order (k data limbs); q etc. cover all L limbs (data
    first); out: uint32 (G, k, L, N). The digit of limb i in limb i is c1 itself.
    """
    n_groups, k, n = c1.shape
    limbs = q.shape[0]
    for task in prange(n_groups * k):
        g = task // k
        i = task % k
        qd = q[i]
        buf = np.empty(n, dtype=np.uint64)
        for t in range(n):
            buf[to_ntt[t]] = np.uint64(c1[g, i, t])
            out[g, i, i, t] = c1[g, i, t]
        intt(buf, ipsi[i], ipsi_shoup[i], qd, n_inv[i], n_inv_shoup[i])
        row = np.empty(n, dtype=np.uint64)
        _lift_digit(
            buf, qd >> np.uint64(1), qd, limbs, i, psi, psi_shoup, q, to_ntt, row, out[g, i]
        )


# ---- hoisted rotation -----------------------------------------------------------------


@njit(cache=True, inline="always")
def _inner(acc, digits, kb, ka, shift, q, qinv, s):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """acc[c, l, t] = Σ_i digits[i, l, σ(t)] · K[i, c, l, t] mod q_l, σ = shift by ``shift``."""
    k = digits.shape[0]
    limbs = digits.shape[1]
    for limb in range(limbs):
        ql = q[limb]
        qi = qinv[limb]
        for h in range(2):
            base = h * s
            for part in range(2):
                lo = 0 if part == 0 else s - shift
                hi = s - shift if part == 0 else s
                off = shift if part == 0 else shift - s
                for t in range(base + lo, base + hi):
                    src = t + off
                    v0 = np.uint64(0)
                    v1 = np.uint64(0)
                    for i in range(k):
                        d = np.uint64(digits[i, limb, src])
                        v0 += d * np.uint64(kb[i, limb, t])
                        v1 += d * np.uint64(ka[i, limb, t])
                    acc[0, limb, t] = _mod(v0, ql, qi)
                    acc[1, limb, t] = _mod(v1, ql, qi)


@njit(cache=True, inline="always")
def _mod_down(  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    acc_c, k, ipsi, ipsi_shoup, n_inv, n_inv_shoup, psi, psi_shoup, q, qinv, crt, to_ntt, buf, xs, y
):
    """y[l] = (acc_c[l] − [acc_c]_P) · P^{-1} mod q_l for the k data limbs (slot order).

    Two switch limbs: [x]_P = x_a + p_a·((x_b − x_a)·p_a^{-1} mod p_b), centred.
    crt = (p_a^{-1} mod p_b, P, P^{-1} mod q_0, …, P^{-1} mod q_{k−1}) as uint64;
    buf: uint64 (3, N) and xs: int64 (N,) scratch.
    """
    n = acc_c.shape[1]
    pa = k
    pb = k + 1
    for limb in (pa, pb):
        row = buf[limb - k]
        for t in range(n):
            row[to_ntt[t]] = acc_c[limb, t]
        intt(row, ipsi[limb], ipsi_shoup[limb], q[limb], n_inv[limb], n_inv_shoup[limb])
    qa = q[pa]
    qb = q[pb]
    big_p = np.int64(crt[1])
    half_p = big_p >> np.int64(1)
    for x in range(n):
        xa = buf[0, x]
        diff = _mod(buf[1, x] + qb - _mod(xa, qb, qinv[pb]), qb, qinv[pb])
        xv = np.int64(xa) + np.int64(qa) * np.int64(_mod(diff * crt[0], qb, qinv[pb]))
        xs[x] = xv - big_p if xv > half_p else xv  # centred remainder mod P
    row = buf[2]
    for limb in range(k):
        ql = q[limb]
        qi = qinv[limb]
        for x in range(n):
            row[x] = _smod(xs[x], ql, qi)
        ntt(row, psi[limb], psi_shoup[limb], ql)
        pinv = crt[2 + limb]
        for t in range(n):
            v = acc_c[limb, t] + ql - row[to_ntt[t]]
            y[limb, t] = _mod(min(v, v - ql) * pinv, ql, qi)


@njit(parallel=True, cache=True, nogil=True)
def rotate_hoisted(  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    c0,
    digits,
    key_b,
    key_a,
    source,
    steps,
    key_index,
    target,
    ipsi,
    ipsi_shoup,
    n_inv,
    n_inv_shoup,
    psi,
    psi_shoup,
    q,
    crt,
    to_ntt,
    out,
):
    """out[target[t]] = σ_{steps[t]}(ciphertext source[t]) under s, one task per t.

    c0: uint32 (G, k, N) slot order; digits: uint32 (G, k, L, N) from ``decompose``;
    key_b, key_a: uint32 (K, k, L, N) slot order (rotation key ``key_index[t]``
    switches σ_{steps[t]}(s) → s); out: uint32 (·, 2, k, N) slot order.
    """
    k = c0.shape[1]
    n = c0.shape[2]
    s = n // 2
    limbs = q.shape[0]
    qinv = np.empty(limbs, dtype=np.float64)
    for limb in range(limbs):
        qinv[limb] = 1.0 / np.float64(q[limb])
    for task in prange(steps.shape[0]):
        g = source[task]
        shift = steps[task] % s
        kk = key_index[task]
        acc = np.empty((2, limbs, n), dtype=np.uint64)
        _inner(acc, digits[g], key_b[kk], key_a[kk], shift, q, qinv, s)
        buf = np.empty((3, n), dtype=np.uint64)
        xs = np.empty(n, dtype=np.int64)
        y = np.empty((2, k, n), dtype=np.uint64)
        for c in range(2):
            _mod_down(
                acc[c],
                k,
                ipsi,
                ipsi_shoup,
                n_inv,
                n_inv_shoup,
                psi,
                psi_shoup,
                q,
                qinv,
                crt,
                to_ntt,
                buf,
                xs,
                y[c],
            )
        dst = target[task]
        for limb in range(k):
            ql = q[limb]
            for h in range(2):
                base = h * s
                for t in range(base, base + s):
                    src = base + (t - base + shift) % s
                    v = np.uint64(c0[g, limb, src]) + y[0, limb, t]
                    out[dst, 0, limb, t] = np.uint32(min(v, v - ql))
                    out[dst, 1, limb, t] = np.uint32(y[1, limb, t])

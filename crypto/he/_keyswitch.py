"""Numba kernels of the hoisted key switching (``crypto/he/rotkeys.py`` drives them).

Everything here works on RNS *limbs*: the data primes q_0..q_{k−1} followed by the
switch primes p_0..p_{m−1} (P = Π p), all < 2**31, stored as uint64 in the fast path's
*slot order* (``crypto/he/_kernels.py``: a rotation by r is a cyclic shift by r inside
each half). The transforms work in SEAL's bit-reversed NTT order with a transposed
tail (see "transforms" below); callers gather and scatter with ``to_t``.

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

Modular reductions are integer-only (two 32-bit folds and a Barrett step, ``_mod``), so
they vectorise on AVX2 as well as AVX-512; the same code serves 31-bit data and 23-bit
switch primes, and ``reduction_fits`` proves each call site's bound per prime.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_S32 = np.uint64(32)
_M32 = np.uint64(0xFFFFFFFF)


@njit(cache=True, inline="always")
def _sub_if(x, m):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """x − m if x ≥ m else x, for x, m < 2**63 (every use here: values below 4q < 2**33).

    A signed compare, which AVX2 has: ``min(x, x − m)`` on uint64 (the wrap-around form)
    needs an unsigned 64-bit min, emulated on AVX2 with five instructions.
    """
    v = np.int64(x) - np.int64(m)
    return np.uint64(v) if v >= 0 else x


@njit(cache=True, inline="always")
def _mod(w, q, r32, m37):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """w mod q, integer-only, for a prime q < 2**31 and a w whose two folds land below
    2**37 (``reduction_fits``: each call site's bound is checked per prime when the
    switching context is built).

    r32 = 2**32 mod q, m37 = ⌊2**37 / q⌋. Two folds w ← (w mod 2**32) + ⌊w / 2**32⌋·r32
    keep w's residue and shrink it; a Barrett step on ⌊w / 32⌋ (32 bits) estimates the
    quotient within 3, and two conditional subtractions finish. Every product is
    32 × 32 → 64 bits (the operands are narrowed first), so the loops vectorise with
    AVX2's vpmuludq — a float quotient needs AVX-512's uint64 ↔ float64 conversions and
    ran lane by lane on AVX2 machines.
    """
    r = np.uint64(np.uint32(r32))
    w = (w & _M32) + np.uint64(np.uint32(w >> _S32)) * r
    w = (w & _M32) + np.uint64(np.uint32(w >> _S32)) * r
    qhat = (np.uint64(np.uint32(w >> np.uint64(5))) * np.uint64(np.uint32(m37))) >> _S32
    t = w - np.uint64(np.uint32(qhat)) * np.uint64(np.uint32(q))  # in [0, 4q)
    t = _sub_if(t, q + q)
    return _sub_if(t, q)


def reduction_fits(q: int, w_max: int) -> bool:
    """Whether ``_mod`` is exact for every w ≤ ``w_max`` modulo the prime ``q``."""
    if not 1 < q < 1 << 31 or w_max >= 1 << 64:
        return False
    r32 = (1 << 32) % q
    f1 = (1 << 32) - 1 + (w_max >> 32) * r32
    f2 = (1 << 32) - 1 + (f1 >> 32) * r32
    return f2 < 1 << 37


@njit(cache=True, inline="always")
def _mulshoup(x, w, ws, q):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """x·w mod q in [0, 2q) (Shoup) for x < 2**32, w < q < 2**31, ws = ⌊w·2**32 / q⌋.

    Every operand is narrowed to 32 bits first (exact under these bounds), which tells
    LLVM all three products are 32×32 → 64-bit: ``vpmuludq`` rather than the much slower
    64-bit ``vpmullq``. The difference wraps mod 2**64 and lands in [0, 2q).
    """
    x32 = np.uint64(np.uint32(x))
    hi = (x32 * np.uint64(np.uint32(ws))) >> _S32
    return x32 * np.uint64(np.uint32(w)) - hi * np.uint64(np.uint32(q))


# ---- butterflies ----------------------------------------------------------------------


@njit(cache=True, inline="always")
def _ct(u, x, w, ws, q, q2):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """One Cooley–Tukey butterfly (Harvey's lazy form: inputs and outputs < 4q)."""
    u = _sub_if(u, q2)
    x = _sub_if(x, q2)
    v = _mulshoup(x, w, ws, q)
    return u + v, u + q2 - v


@njit(cache=True, inline="always")
def _gs(u, v, w, ws, q, q2):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """One Gentleman–Sande butterfly (inputs and outputs < 2q)."""
    s = u + v
    x = u + q2 - v
    x = _sub_if(x, q2)
    return _sub_if(s, q2), _mulshoup(x, w, ws, q)


@njit(cache=True, inline="always")
def _ct_run(lo, hi, w, ws, q, q2, length):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Cooley–Tukey butterflies over two runs, one twiddle."""
    for j in range(length):
        lo[j], hi[j] = _ct(lo[j], hi[j], w, ws, q, q2)


@njit(cache=True, inline="always")
def _gs_run(lo, hi, w, ws, q, q2, length):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Gentleman–Sande butterflies over two runs, one twiddle."""
    for j in range(length):
        lo[j], hi[j] = _gs(lo[j], hi[j], w, ws, q, q2)


@njit(cache=True, inline="always")
def _ct_run_tw(lo, hi, w, ws, q, q2, length):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Cooley–Tukey butterflies over two runs, a twiddle per position."""
    for j in range(length):
        lo[j], hi[j] = _ct(lo[j], hi[j], w[j], ws[j], q, q2)


@njit(cache=True, inline="always")
def _gs_run_tw(lo, hi, w, ws, q, q2, length):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Gentleman–Sande butterflies over two runs, a twiddle per position."""
    for j in range(length):
        lo[j], hi[j] = _gs(lo[j], hi[j], w[j], ws[j], q, q2)


# ---- transforms -------------------------------------------------------------------------
#
# Negacyclic NTT of N = 2**m points, SEAL's bit-reversed output order (Longa–Naehrig
# with Harvey's lazy butterflies and Shoup twiddles: psi[i] = ψ^{bitrev(i)}, psi_shoup[i]
# = ⌊psi[i]·2**32 / q⌋). The last three forward stages (first three inverse ones) pair
# elements inside blocks of 8, where runs are too short to vectorise, so they run on the
# 8 × N/8 transpose instead — SEAL index e lives at row e % 8, column e // 8 ("T
# layout") — where every stage is 4 contiguous runs of N/8. The hot paths gather and
# scatter through ``to_t`` (slot position → flat T-layout index), so the transpose costs
# one pass per transform. ``tail`` holds, per limb, the 7 twiddle rows those stages need
# (and their Shoup companions): ψ^{bitrev} at N/8 + c; N/4 + 2c + h (h < 2); N/2 + 4c + h
# (h < 4).


@njit(cache=True)
def ntt_t(a, out, psi, psi_shoup, tail, tail_shoup, q):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """NTT of ``a`` (natural order, values < q, clobbered) into ``out`` (8, N/8), T layout."""
    n = a.shape[0]
    blocks = n // 8
    q2 = q + q
    t = n
    m = 1
    while t > 8:
        t >>= 1
        for i in range(m):
            j1 = 2 * i * t
            _ct_run(a[j1 : j1 + t], a[j1 + t : j1 + 2 * t], psi[m + i], psi_shoup[m + i], q, q2, t)
        m <<= 1
    for r in range(8):
        for c in range(blocks):
            out[r, c] = a[8 * c + r]
    for r in range(4):  # t = 4
        _ct_run_tw(out[r], out[r + 4], tail[0], tail_shoup[0], q, q2, blocks)
    for r in range(8):  # t = 2: rows (0, 2), (1, 3) use h = 0; (4, 6), (5, 7) use h = 1
        if r % 4 < 2:
            h = 1 + r // 4
            _ct_run_tw(out[r], out[r + 2], tail[h], tail_shoup[h], q, q2, blocks)
    for h in range(4):  # t = 1: rows (2h, 2h + 1)
        _ct_run_tw(out[2 * h], out[2 * h + 1], tail[3 + h], tail_shoup[3 + h], q, q2, blocks)
    for r in range(8):
        for c in range(blocks):
            x = out[r, c]
            out[r, c] = _sub_if(_sub_if(x, q2), q)


@njit(cache=True)
def intt_t(src, a, ipsi, ipsi_shoup, itail, itail_shoup, q, n_inv, n_inv_shoup):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Inverse of ``ntt_t``: ``src`` (8, N/8) T layout (values < q, clobbered) → ``a``.

    ipsi[i] = ψ^{−bitrev(i)} with Shoup companions, itail likewise; n_inv = N^{-1} mod q.
    """
    n = a.shape[0]
    blocks = n // 8
    q2 = q + q
    for h in range(4):  # t = 1
        _gs_run_tw(src[2 * h], src[2 * h + 1], itail[3 + h], itail_shoup[3 + h], q, q2, blocks)
    for r in range(8):  # t = 2
        if r % 4 < 2:
            h = 1 + r // 4
            _gs_run_tw(src[r], src[r + 2], itail[h], itail_shoup[h], q, q2, blocks)
    for r in range(4):  # t = 4
        _gs_run_tw(src[r], src[r + 4], itail[0], itail_shoup[0], q, q2, blocks)
    for r in range(8):
        for c in range(blocks):
            a[8 * c + r] = src[r, c]
    m = n >> 3
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
        x = _mulshoup(a[j], n_inv, n_inv_shoup, q)
        a[j] = _sub_if(x, q)


@njit(parallel=True, cache=True)
def ntt_rows(polys, limb_of_row, tb):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """In place, row r of ``polys`` (R, N) uint64 (natural order, < q) becomes its NTT in
    limb ``limb_of_row[r]``, in SEAL's order. For set-up paths (keys, checks)."""
    n = polys.shape[1]
    for r in prange(polys.shape[0]):
        p = limb_of_row[r]
        spec = np.empty((8, n // 8), dtype=np.uint64)
        ntt_t(polys[r], spec, tb[1][p], tb[2][p], tb[5][p], tb[6][p], tb[0][p])
        for e in range(n):
            polys[r, e] = spec[e % 8, e // 8]


@njit(parallel=True, cache=True)
def intt_rows(polys, limb_of_row, tb):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """In place, the inverse of ``ntt_rows`` (SEAL order in, natural order out)."""
    n = polys.shape[1]
    for r in prange(polys.shape[0]):
        p = limb_of_row[r]
        spec = np.empty((8, n // 8), dtype=np.uint64)
        for e in range(n):
            spec[e % 8, e // 8] = polys[r, e]
        intt_t(
            spec, polys[r], tb[3][p], tb[4][p], tb[7][p], tb[8][p], tb[0][p], tb[9][p], tb[10][p]
        )


# ---- decomposition ------------------------------------------------------------------
#
# Table tuples ``tb`` = (q, psi, psi_shoup, ipsi, ipsi_shoup, tail, tail_shoup, itail,
# itail_shoup, n_inv, n_inv_shoup), each indexed by limb first (``SwitchContext.tables``).


@njit(cache=True, inline="always")
def _lift_digit(coeffs, qd, i, tb, to_t, row, spec, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out[l] = NTT_l(centred digit) in slot order for every limb l ≠ i."""
    q = tb[0]
    n = coeffs.shape[0]
    half = qd >> np.uint64(1)
    flat = spec.reshape(n)
    for limb in range(q.shape[0]):
        if limb == i:
            continue
        ql = q[limb]
        r32 = (np.uint64(1) << _S32) % ql
        m37 = (np.uint64(1) << np.uint64(37)) // ql
        # centred digit v in (−q_i/2, q_i/2]: v + q_i is in (q_i/2, 3q_i/2] (< 2**32),
        # so reduce that and take q_i mod q_l off again
        back = ql - qd % ql
        for x in range(n):
            c = coeffs[x]
            w = c if c > half else c + qd  # = v + q_i
            t = _mod(w, ql, r32, m37) + back  # < 2·q_l
            row[x] = _sub_if(t, ql)
        ntt_t(row, spec, tb[1][limb], tb[2][limb], tb[5][limb], tb[6][limb], ql)
        for t in range(n):
            out[limb, t] = np.uint32(flat[to_t[t]])


@njit(parallel=True, cache=True, nogil=True)
def decompose(c1, tb, to_t, from_t, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """RNS digits of c1, lifted to every limb: out[g, i, l] = NTT_l([c1_g]_{q_i}) (slot order).

    c1: uint32 (G, k, N) in slot order (k data limbs); tb: the limb tables (all L limbs,
    data first); to_t/from_t: int64 (N,) slot position ↔ T-layout index; out: uint32
    (G, k, L, N). The digit of limb i in limb i is c1 itself.
    """
    n_groups, k, n = c1.shape
    q = tb[0]
    for task in prange(n_groups * k):
        g = task // k
        i = task % k
        qd = q[i]
        spec = np.empty((8, n // 8), dtype=np.uint64)
        flat = spec.reshape(n)
        for j in range(n):
            flat[j] = np.uint64(c1[g, i, from_t[j]])
        out[g, i, i] = c1[g, i]
        buf = np.empty(n, dtype=np.uint64)
        intt_t(spec, buf, tb[3][i], tb[4][i], tb[7][i], tb[8][i], qd, tb[9][i], tb[10][i])
        row = np.empty(n, dtype=np.uint64)
        _lift_digit(buf, qd, i, tb, to_t, row, spec, out[g, i])


# ---- hoisted rotation -----------------------------------------------------------------


@njit(cache=True, inline="always")
def _inner_run(o0, o1, d0, d1, b0, b1, a0, a1, q, r32, m37, length):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """o0 = d0·b0 + d1·b1, o1 = d0·a0 + d1·a1 mod q over one contiguous run (vectorises)."""
    for x in range(length):
        u = np.uint64(d0[x])
        v = np.uint64(d1[x])
        o0[x] = _mod(u * np.uint64(b0[x]) + v * np.uint64(b1[x]), q, r32, m37)
        o1[x] = _mod(u * np.uint64(a0[x]) + v * np.uint64(a1[x]), q, r32, m37)


@njit(cache=True, inline="always")
def _inner(acc, digits, kb, ka, shift, q, r32, m37, s):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """acc[c, l, t] = Σ_i digits[i, l, σ(t)] · K[i, c, l, t] mod q_l, σ = shift by ``shift``.

    Two digits (two data primes); each half of the slot order is two contiguous runs.
    """
    limbs = digits.shape[1]
    for limb in range(limbs):
        ql = q[limb]
        rl = r32[limb]
        ml = m37[limb]
        for h in range(2):
            base = h * s
            # t in [base, base + s − shift) reads base + shift + …; the rest wraps.
            for t0, src0, length in (
                (base, base + shift, s - shift),
                (base + s - shift, base, shift),
            ):
                if length == 0:
                    continue
                _inner_run(
                    acc[0, limb, t0 : t0 + length],
                    acc[1, limb, t0 : t0 + length],
                    digits[0, limb, src0 : src0 + length],
                    digits[1, limb, src0 : src0 + length],
                    kb[0, limb, t0 : t0 + length],
                    kb[1, limb, t0 : t0 + length],
                    ka[0, limb, t0 : t0 + length],
                    ka[1, limb, t0 : t0 + length],
                    ql,
                    rl,
                    ml,
                    length,
                )


@njit(cache=True, inline="always")
def _shoup(x, w, ws, q):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """x·w mod q for x < 2**32, w < q, ws = ⌊w·2**32 / q⌋ (Shoup), fully reduced."""
    r = _mulshoup(x, w, ws, q)
    return _sub_if(r, q)


@njit(cache=True, inline="always")
def _mod_down(acc_c, k, tb, r32, m37, crt, to_t, from_t, buf, spec, xs, y):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """y[l] = (acc_c[l] − [acc_c]_P) · P^{-1} mod q_l for the k data limbs (slot order).

    Two switch limbs: [x]_P = x_a + p_a·((x_b − x_a)·p_a^{-1} mod p_b), centred (exact,
    integer-only, so the loops vectorise). crt = (p_a^{-1} mod p_b, its Shoup companion,
    P, then per data limb l: P^{-1} mod q_l, its Shoup companion, and the least
    multiple of q_l ≥ P/2) as uint64; to_t/from_t: slot position ↔ T-layout index;
    buf: uint64 (3, N), spec: uint64 (8, N/8) and xs: int64 (N,) scratch.
    """
    q = tb[0]
    n = acc_c.shape[1]
    flat = spec.reshape(n)
    pa = k
    pb = k + 1
    for limb in (pa, pb):
        row_in = acc_c[limb]
        for i in range(n):
            flat[i] = row_in[from_t[i]]
        intt_t(
            spec,
            buf[limb - k],
            tb[3][limb],
            tb[4][limb],
            tb[7][limb],
            tb[8][limb],
            q[limb],
            tb[9][limb],
            tb[10][limb],
        )
    qa = q[pa]
    qb = q[pb]
    big_p = np.int64(crt[2])
    half_p = big_p >> np.int64(1)
    ainv = crt[0]
    ainv_s = crt[1]
    xa_row = buf[0]
    xb_row = buf[1]
    for x in range(n):
        xa = xa_row[x]  # < p_a < 2·p_b
        xab = _sub_if(xa, qb)
        d = xb_row[x] + qb - xab
        d = _sub_if(d, qb)
        xv = np.int64(xa) + np.int64(qa) * np.int64(_shoup(d, ainv, ainv_s, qb))
        xs[x] = xv - big_p if xv > half_p else xv  # centred remainder mod P
    row = buf[2]
    for limb in range(k):
        ql = q[limb]
        rl = r32[limb]
        ml = m37[limb]
        pinv = crt[3 + 3 * limb]
        pinv_s = crt[4 + 3 * limb]
        lift = np.int64(crt[5 + 3 * limb])  # a multiple of q_l above P/2: makes xs ≥ 0
        for x in range(n):
            row[x] = _mod(np.uint64(xs[x] + lift), ql, rl, ml)
        ntt_t(row, spec, tb[1][limb], tb[2][limb], tb[5][limb], tb[6][limb], ql)
        acc_row = acc_c[limb]
        y_row = y[limb]
        for t in range(n):
            v = acc_row[t] + ql - flat[to_t[t]]
            y_row[t] = _shoup(_sub_if(v, ql), pinv, pinv_s, ql)


@njit(parallel=True, cache=True, nogil=True)
def rotate_hoisted(  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    c0, digits, key_b, key_a, source, steps, key_index, target, tb, crt, to_t, from_t, threads, out
):
    """out[target[t]] = σ_{steps[t]}(ciphertext source[t]) under s, one task per t.

    c0: uint32 (G, k, N) slot order; digits: uint32 (G, k, L, N) from ``decompose``;
    key_b, key_a: uint32 (K, k, L, N) slot order (rotation key ``key_index[t]``
    switches σ_{steps[t]}(s) → s); tb: limb tables; threads: how many chunks to split
    the tasks into (numba's thread count; passed in, since reading it here would stop
    numba from caching this function); out: uint32 (·, 2, k, N) slot order.
    """
    q = tb[0]
    k = c0.shape[1]
    n = c0.shape[2]
    s = n // 2
    limbs = q.shape[0]
    r32 = np.empty(limbs, dtype=np.uint64)
    m37 = np.empty(limbs, dtype=np.uint64)
    for limb in range(limbs):
        r32[limb] = (np.uint64(1) << _S32) % q[limb]
        m37[limb] = (np.uint64(1) << np.uint64(37)) // q[limb]
    tasks = steps.shape[0]
    chunks = max(1, min(tasks, threads))
    for chunk in prange(chunks):
        # Scratch once per thread, not per task (≈ 0.5 MB: per-task allocations are mmaps).
        acc = np.empty((2, limbs, n), dtype=np.uint64)
        buf = np.empty((3, n), dtype=np.uint64)
        spec = np.empty((8, n // 8), dtype=np.uint64)
        xs = np.empty(n, dtype=np.int64)
        y = np.empty((2, k, n), dtype=np.uint64)
        for task in range(chunk, tasks, chunks):
            g = source[task]
            shift = steps[task] % s
            kk = key_index[task]
            _inner(acc, digits[g], key_b[kk], key_a[kk], shift, q, r32, m37, s)
            for c in range(2):
                _mod_down(acc[c], k, tb, r32, m37, crt, to_t, from_t, buf, spec, xs, y[c])
            _finish_rotation(c0[g], y, shift, q, s, out[target[task]])


@njit(cache=True, inline="always")
def _finish_rotation(c0, y, shift, q, s, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out = (σ(c0) + y0, y1): σ a shift by ``shift`` inside each half (two runs each)."""
    for limb in range(c0.shape[0]):
        ql = q[limb]
        for h in range(2):
            base = h * s
            for t0, src0, length in (
                (base, base + shift, s - shift),
                (base + s - shift, base, shift),
            ):
                for x in range(length):
                    v = np.uint64(c0[limb, src0 + x]) + y[0, limb, t0 + x]
                    out[0, limb, t0 + x] = np.uint32(_sub_if(v, ql))
        for t in range(2 * s):
            out[1, limb, t] = np.uint32(y[1, limb, t])

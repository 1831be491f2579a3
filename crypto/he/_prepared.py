"""Numba kernels of the *prepared* path (``crypto/he/prepared.py`` drives them).

The fused kernel (``_kernels.score_and_mask``) multiplies every gallery residue by both
components of every rotation of the probe. Under a single-ciphertext parameter set,
rotation j of the uploaded (c0, a) is (σ_j(c0) + y0_j, y1_j), where the key-switching
outputs y0_j, y1_j depend only on the seeded ``a`` and the gate's rotation keys, never
on the template. The MAC is linear, so the work splits in two halves over the same
gallery, with the same masking randomness:

* ``prepare_half`` (before the probe exists, once the gate has committed its seed):
  the paired MAC over (y0_j | y1_j), giving the finished c1 rows A·Z1 + u·p1 + e2 of
  every masked result ciphertext, the c0 partial sums W0 = Σ_j diag_j ⊙ y0_j + pad_bias,
  and the c0 mask terms (A, R0 = u·p0 + σ_conj(u·p0) + F'), all in result slot order;
* ``score_c0`` (when the probe arrives): Z0 = Σ_j diag_j ⊙ σ_j(c0) + W0 − τ, one product
  per gallery residue, then the c0 rows A·(Z0 + σ_conj(Z0)) + R0 (one modular product
  per slot).
  Every σ_j(c0) is a window of one wrap-padded copy of c0 (16 KB per prime), so the
  probe side stays in L1 and the gallery is the only stream.

Together they compute exactly (bit for bit) what the fused kernel computes: every step
is modular arithmetic. Layouts, tasks, the visit order and the staging pass are those
of ``score_and_mask``; see its docstring.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from crypto.he._kernels import (
    _GROUP,
    _finish_c1,
    _fold,
    _mac,
    _mulmod,
    _pair_row,
    _red,
    _red4,
    _red37,
    _stage,
)


@njit(cache=True, inline="always")
def _mac_c0(acc, gp, c0w, p_off, shift, rr):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """acc[x] += Σ_j gp[j, x] · σ_{(j + shift) % D}(c0)[p_off + x] for one half.

    ``c0w`` is the half of c0 followed by its first positions again (S + _BLOCK + D),
    so σ_i(c0)[t] = c0w[t + i] for every window. Four products per fold, as in
    ``_kernels._mac``; both operands are 32-bit, so each product is one vpmuludq.
    """
    d, width = gp.shape
    rr = np.uint64(np.uint32(rr))
    d4 = d - d % _GROUP
    for j in range(0, d4, _GROUP):
        ga = gp[j]
        gb = gp[j + 1]
        gc = gp[j + 2]
        gd = gp[j + 3]
        oa = p_off + (j + shift) % d
        ob = p_off + (j + 1 + shift) % d
        oc = p_off + (j + 2 + shift) % d
        od = p_off + (j + 3 + shift) % d
        pa = c0w[oa : oa + width]
        pb = c0w[ob : ob + width]
        pc = c0w[oc : oc + width]
        pd = c0w[od : od + width]
        for x in range(width):
            acc[x] = (
                _fold(acc[x], rr)
                + np.uint64(ga[x]) * np.uint64(pa[x])
                + np.uint64(gb[x]) * np.uint64(pb[x])
                + np.uint64(gc[x]) * np.uint64(pc[x])
                + np.uint64(gd[x]) * np.uint64(pd[x])
            )
    for j in range(d4, d):
        g = gp[j]
        o = p_off + (j + shift) % d
        e = c0w[o : o + width]
        for x in range(width):
            acc[x] = _fold(acc[x], rr) + np.uint64(g[x]) * np.uint64(e[x])


@njit(cache=True, inline="always")
def _partial_c0(acc, res, a_off, r_off, pad, c, p, u_off, length, qq, rr):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """res[h, r_off + x] = (acc[h, a_off + x] + pad_bias[h, u_off + a_off + x]) mod q, both
    halves: the c0 partial sums W0 of one result position, in result slot order (the
    pad bias is read at the gallery position, like ``_kernels._finish_c0``)."""
    s = res.shape[1]
    rr = np.uint64(np.uint32(rr))
    m37 = np.uint64((1 << 37) // qq)
    u0 = u_off + a_off
    for h in range(2):
        a = acc[h, a_off : a_off + length]
        bias = pad[c, p, h * s + u0 : h * s + u0 + length]
        out = res[h, r_off : r_off + length]
        for x in range(length):
            y = _red37(_fold(_fold(a[x], rr), rr), qq, m37)
            out[x] = np.uint32(_red(y + np.uint64(bias[x]), qq))


@njit(cache=True, inline="always")
def _mask_terms_c0(masks, pk, i, p, qq, mm, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out = (A, R0) of result position i, prime p, slot order (S each): the c0 masking
    that does not involve the probe, R0 = u·p0 + σ_conj(u·p0) + F + σ_conj(F)."""
    s = out.shape[1]
    amask = masks[i, 0, p, :s]
    flood = masks[i, 0, p, s:]
    u_a = masks[i, 1, p, :s]
    u_b = masks[i, 1, p, s:]
    p0a = pk[0, p, :s]
    p0b = pk[0, p, s:]
    for t in range(s):
        out[0, t] = amask[t]
        r0 = _mulmod(np.uint64(u_a[t]), np.uint64(p0a[t]), qq, mm) + _mulmod(
            np.uint64(u_b[t]), np.uint64(p0b[t]), qq, mm
        )
        out[1, t] = np.uint32(_red4(r0 + np.uint64(flood[t]), qq))


@njit(cache=True, inline="always")
def _finish_prepared(acc, res, a_off, r_off, length, w0, ar, t_off, tq2, qq, rr, mm):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """c0 of ``length`` result slots: A·(acc_0 + acc_1 + W0_0 + W0_1 − 2τ) + R0 mod q.

    Accumulator x = a_off + … is result slot t = t_off + x, written to res[r_off + …];
    w0 (2, S) and ar (2, S) = (A, R0) are indexed by result slot; tq2 = 2·(q − τ) mod q.
    The same value as ``_kernels._finish_c0`` on the fused accumulators.
    """
    rr = np.uint64(np.uint32(rr))
    m37 = np.uint64((1 << 37) // qq)
    t0 = t_off + a_off
    acc_a = acc[0, a_off : a_off + length]
    acc_b = acc[1, a_off : a_off + length]
    w_a = w0[0, t0 : t0 + length]
    w_b = w0[1, t0 : t0 + length]
    amask = ar[0, t0 : t0 + length]
    r0 = ar[1, t0 : t0 + length]
    out = res[r_off : r_off + length]
    for x in range(length):
        za = _red37(_fold(_fold(acc_a[x], rr), rr), qq, m37) + np.uint64(w_a[x])
        zb = _red37(_fold(_fold(acc_b[x], rr), rr), qq, m37) + np.uint64(w_b[x])
        z = _red(_red4(za + zb, qq) + tq2, qq)
        out[x] = np.uint32(_red(_mulmod(np.uint64(amask[x]), z, qq, mm) + np.uint64(r0[x]), qq))


@njit(parallel=True, cache=True, nogil=True)
def prepare_half(  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    gallery,
    probe,
    pad,
    masks,
    pk,
    rotations,
    position,
    visit,
    q,
    r32,
    mu,
    ntt_to_slot,
    out1,
    w0,
    ar,
):
    """The template-independent half of every masked result ciphertext.

    probe: uint32 (D, 2, k, N) slot order, rotation j of (0, a) = (y0_j, y1_j);
    ntt_to_slot: int64 (N,) NTT index → slot position; out1: uint32 (C, k, N), the
    finished c1 rows in SEAL's NTT order; w0: uint32 (C, k, 2, S), the c0 partial sums
    Σ_j diag_j ⊙ y0_j + pad_bias of each result position, rotated, in slot order by
    half; ar: uint32 (C, k, 2, S), its (A, R0) (``_mask_terms_c0``). Other arguments as
    in ``_kernels.score_and_mask``.
    """
    k, blocks, n_ct, _, d, width = gallery.shape
    n = probe.shape[3]
    s = n // 2
    pairs = np.empty((k, 2, d, s + width), dtype=np.uint64)
    for row in prange(k * 2 * d):
        _pair_row(pairs, probe, row, width)
    slots = np.empty((n_ct, k, 2, s), dtype=np.uint32)
    for task in prange(k * blocks):
        p = task // blocks
        blk = task % blocks
        g0 = blk * width
        qq = q[p]
        rr = r32[p]
        acc = np.empty((4, width), dtype=np.uint64)  # (y0, y1) × (half 0, half 1)
        for v in range(n_ct):
            c = visit[v]
            i = position[c]
            r = rotations[c]
            s0 = (g0 - r) % s  # output slot of gallery position g0
            l1 = min(width, s - s0)
            acc[:] = 0
            _stage(gallery[p, blk, c])
            for h in range(2):
                _mac(acc[h], acc[2 + h], gallery[p, blk, c, h], pairs[p, h], s0, r % d, rr)
            _finish_c1(acc[2:4], slots[i, p], 0, s0, l1, masks, i, s0, pk, p, qq, rr, mu[p])
            _partial_c0(acc[0:2], w0[i, p], 0, s0, pad, c, p, g0, l1, qq, rr)
            if l1 < width:
                _finish_c1(
                    acc[2:4], slots[i, p], l1, 0, width - l1, masks, i, -l1, pk, p, qq, rr, mu[p]
                )
                _partial_c0(acc[0:2], w0[i, p], l1, 0, pad, c, p, g0, width - l1, qq, rr)
    for task in prange(n_ct * k):
        i = task // k
        p = task % k
        flat = slots[i, p].reshape(-1)
        o = out1[i, p]
        for u in range(n):
            o[u] = flat[ntt_to_slot[u]]
        _mask_terms_c0(masks, pk, i, p, q[p], mu[p], ar[i, p])


@njit(parallel=True, cache=True, nogil=True)
def score_c0(  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    gallery, c0, w0, ar, tau, rotations, position, visit, q, r32, mu, ntt_to_slot, out
):
    """The c0 rows of every masked result ciphertext, in SEAL's NTT order (``out[:, 0]``).

    c0: uint32 (k, N) slot order, the uploaded ciphertext's c0; w0, ar: uint32 (C, k, 2,
    S) from ``prepare_half``; out: uint32 (C, 2, k, N), row 1 left to the caller. Other
    arguments as in ``_kernels.score_and_mask`` (rotations, position, visit in its
    order; the Python call site is ``_specs.PreparedOnline``).
    """
    k, blocks, n_ct, _, d, width = gallery.shape
    n = c0.shape[1]
    s = n // 2
    c0w = np.empty((k, 2, s + width + d), dtype=np.uint32)
    for p in range(k):
        for h in range(2):
            c0w[p, h, :s] = c0[p, h * s : h * s + s]
            c0w[p, h, s:] = c0w[p, h, : width + d]  # wrap: no division per position
    slots = np.empty((n_ct, k, s), dtype=np.uint32)
    for task in prange(k * blocks):
        p = task // blocks
        blk = task % blocks
        g0 = blk * width
        qq = q[p]
        rr = r32[p]
        tq2 = (np.uint64(2) * (qq - tau[p])) % qq
        mm = mu[p]
        acc = np.empty((2, width), dtype=np.uint64)
        for v in range(n_ct):
            c = visit[v]
            i = position[c]
            r = rotations[c]
            s0 = (g0 - r) % s
            l1 = min(width, s - s0)
            acc[:] = 0
            _stage(gallery[p, blk, c])
            for h in range(2):
                _mac_c0(acc[h], gallery[p, blk, c, h], c0w[p, h], s0, r % d, rr)
            res = slots[i, p]
            _finish_prepared(acc, res, 0, s0, l1, w0[i, p], ar[i, p], s0, tq2, qq, rr, mm)
            if l1 < width:
                _finish_prepared(
                    acc, res, l1, 0, width - l1, w0[i, p], ar[i, p], -l1, tq2, qq, rr, mm
                )
    # NTT index → slot inside a half (the c0 row is conjugation symmetric); computed
    # once here, not as a division per gathered residue
    src = np.empty(n, dtype=np.int64)
    for u in range(n):
        src[u] = ntt_to_slot[u] & (s - 1)
    for task in prange(n_ct * k):
        i = task // k
        p = task % k
        row = slots[i, p]
        o = out[i, 0, p]
        for u in range(n):
            o[u] = row[src[u]]


__all__ = ["prepare_half", "score_c0"]

"""Numba kernels of the *prepared* path (``crypto/he/prepared.py`` drives them).

The fused kernel (``_kernels.score_and_mask``) multiplies every gallery residue by both
components of the rotated probe. Under a single-ciphertext parameter set the c1 of
every rotation, and the key-switching part y0 of every rotation's c0, depend only on
the probe's seeded ``a`` and the gate's rotation keys, never on the template. So the
work splits in two halves over the same gallery, with the same masking randomness:

* ``prepare_c1`` (before the probe exists, once the gate has committed its next seed):
  the c1 rows of every masked result ciphertext, A·Z1 + u·p1 + e2;
* ``score_c0`` (when the probe arrives): the windows z_j = σ_j(c0) + y0_j, one product
  per gallery residue, and the c0 rows A·(Z0 + σ_conj(Z0)) + u·p0 + σ_conj(u·p0) + F'.

Together they compute exactly (bit for bit) what the fused kernel computes: every step
is modular arithmetic and the MAC is linear. Layouts, tasks and the staging pass are
those of ``score_and_mask``; see its docstring.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from crypto.he._kernels import _GROUP, _finish_c0, _finish_c1, _fold, _red, _stage


@njit(cache=True, inline="always")
def _mac_one(acc, gp, win, p_off, shift, rr):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """acc[x] += Σ_j gp[j, x] · win[(j + shift) % D, p_off + x] (one component).

    ``win`` is one half of one component of the rotated probe, (D, S + _BLOCK), each row
    followed by its first positions again (every rotated window is one slice). Four
    products per fold, as in ``_kernels._mac``; both operands are 32-bit, so each
    product is one vpmuludq.
    """
    d, width = gp.shape
    rr = np.uint64(np.uint32(rr))
    d4 = d - d % _GROUP
    for j in range(0, d4, _GROUP):
        ga = gp[j]
        gb = gp[j + 1]
        gc = gp[j + 2]
        gd = gp[j + 3]
        pa = win[(j + shift) % d, p_off : p_off + width]
        pb = win[(j + 1 + shift) % d, p_off : p_off + width]
        pc = win[(j + 2 + shift) % d, p_off : p_off + width]
        pd = win[(j + 3 + shift) % d, p_off : p_off + width]
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
        e = win[(j + shift) % d, p_off : p_off + width]
        for x in range(width):
            acc[x] = _fold(acc[x], rr) + np.uint64(g[x]) * np.uint64(e[x])


@njit(cache=True, inline="always")
def _wrap(row, s, width):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Repeat a window row's first ``width`` positions after its end."""
    for t in range(width):
        row[s + t] = row[t]


@njit(parallel=True, cache=True, nogil=True)
def prepare_c1(  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    gallery, probe1, masks, pk, rotations, position, visit, q, r32, mu, ntt_to_slot, out1
):
    """The c1 rows of every masked result ciphertext, in SEAL's NTT order.

    probe1: uint32 (D, k, N) slot order, the c1 of every rotation of the probe;
    ntt_to_slot: int64 (N,) NTT index → slot position; out1: uint32 (C, k, N). Other
    arguments as in ``_kernels.score_and_mask``.
    """
    k, blocks, n_ct, _, d, width = gallery.shape
    n = probe1.shape[2]
    s = n // 2
    win = np.empty((k, 2, d, s + width), dtype=np.uint32)
    for row in prange(k * 2 * d):
        p = row // (2 * d)
        h = (row // d) % 2
        j = row % d
        w = win[p, h, j]
        w[:s] = probe1[j, p, h * s : h * s + s]
        _wrap(w, s, width)
    slots = np.empty((n_ct, k, 2, s), dtype=np.uint32)
    for task in prange(k * blocks):
        p = task // blocks
        blk = task % blocks
        g0 = blk * width
        acc = np.empty((2, width), dtype=np.uint64)
        for v in range(n_ct):
            c = visit[v]
            i = position[c]
            r = rotations[c]
            s0 = (g0 - r) % s  # output slot of gallery position g0
            l1 = min(width, s - s0)
            acc[:] = 0
            _stage(gallery[p, blk, c])
            for h in range(2):
                _mac_one(acc[h], gallery[p, blk, c, h], win[p, h], s0, r % d, r32[p])
            res = slots[i, p]
            _finish_c1(acc, res, 0, s0, l1, masks, i, s0, pk, p, q[p], r32[p], mu[p])
            if l1 < width:
                _finish_c1(acc, res, l1, 0, width - l1, masks, i, -l1, pk, p, q[p], r32[p], mu[p])
    for task in prange(n_ct * k):
        i = task // k
        p = task % k
        flat = slots[i, p].reshape(-1)
        o = out1[i, p]
        for u in range(n):
            o[u] = flat[ntt_to_slot[u]]


@njit(parallel=True, cache=True, nogil=True)
def score_c0(  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    gallery, c0, y0, pad, tau, masks, pk, rotations, position, visit, q, r32, mu, ntt_to_slot, out
):
    """The c0 rows of every masked result ciphertext, in SEAL's NTT order (``out[:, 0]``).

    c0: uint32 (k, N) slot order, the uploaded ciphertext's c0; y0: uint32 (D, k, N) slot
    order, the key-switching part of each rotation's c0 (y0[0] = 0), so rotation j's c0
    is σ_j(c0) + y0[j]; out: uint32 (C, 2, k, N), row 1 left to the caller. Other
    arguments as in ``_kernels.score_and_mask``.
    """
    k, blocks, n_ct, _, d, width = gallery.shape
    n = c0.shape[1]
    s = n // 2
    win = np.empty((k, 2, d, s + width), dtype=np.uint32)
    for row in prange(k * 2 * d):
        p = row // (2 * d)
        h = (row // d) % 2
        j = row % d
        qq = q[p]
        w = win[p, h, j]
        src = c0[p, h * s : h * s + s]
        add = y0[j, p, h * s : h * s + s]
        for t in range(s - j):  # σ_j: position t reads t + j inside the half
            w[t] = np.uint32(_red(np.uint64(src[t + j]) + np.uint64(add[t]), qq))
        for t in range(s - j, s):
            w[t] = np.uint32(_red(np.uint64(src[t + j - s]) + np.uint64(add[t]), qq))
        _wrap(w, s, width)
    slots = np.empty((n_ct, k, s), dtype=np.uint32)
    for task in prange(k * blocks):
        p = task // blocks
        blk = task % blocks
        g0 = blk * width
        qq = q[p]
        tq = qq - tau[p]
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
                _mac_one(acc[h], gallery[p, blk, c, h], win[p, h], s0, r % d, r32[p])
            res = slots[i, p]
            _finish_c0(acc, res, 0, s0, pad, c, p, g0, l1, tq, masks, i, s0, pk, qq, r32[p], mu[p])
            if l1 < width:
                _finish_c0(
                    acc,
                    res,
                    l1,
                    0,
                    pad,
                    c,
                    p,
                    g0,
                    width - l1,
                    tq,
                    masks,
                    i,
                    -l1,
                    pk,
                    qq,
                    r32[p],
                    mu[p],
                )
    for task in prange(n_ct * k):
        i = task // k
        p = task % k
        row = slots[i, p]
        o = out[i, 0, p]
        for u in range(n):
            o[u] = row[ntt_to_slot[u] % s]  # the c0 row is conjugation symmetric


__all__ = ["prepare_c1", "score_c0"]

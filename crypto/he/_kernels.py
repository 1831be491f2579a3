"""Fused numba kernels over RNS residues (NTT form). Pure functions of arrays.

**Slot order.** SEAL stores NTT residues in bit-reversed order, where a slot rotation
is a scattered permutation. The fast path keeps its own arrays (gallery, expanded
probe, mask material, public key) in *slot order* instead: position t < S = N/2 holds
the NTT point ψ^(3^t), position S + t the point ψ^(−3^t) (``Backend.slot_to_ntt``).
There, a rotation by r slots is a cyclic shift by r inside each half and complex
conjugation swaps the halves, so every kernel below reads memory contiguously and
vectorises. Results are scattered back to SEAL's order only when written to the wire.

**Lazy reduction.** Residues are < q < 2**31, so a product of two fits in 62 bits.
Accumulators are uint64 and are *folded* before each group of four products: with
R = 2**32 mod q, ``lo32 + hi32·R`` is congruent to the accumulator and, for the primes
a parameter set may use (``check_fold_bound``), small enough that four more products
cannot overflow 2**64. One reduction per 4 products instead of one per product.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit, prange, types
from numba.extending import intrinsic

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
_GROUP = 4  # products accumulated between two folds (see check_fold_bound)
_BLOCK = 256  # slots per half per MAC task: 4 accumulators × 256 × 8 B stay in L1
#: Positions per gallery block (the gallery is laid out per MAC task).
GALLERY_BLOCK = _BLOCK


def check_fold_bound(q: np.ndarray) -> None:
    """Raise ``ValueError`` unless fold + ``_GROUP`` products fit in uint64 for every prime."""
    for qq in (int(x) for x in q):
        r32 = (1 << 32) % qq
        folded = (1 << 32) - 1 + ((1 << 32) - 1) * r32
        if qq >= 1 << 31 or folded + _GROUP * (qq - 1) ** 2 >= 1 << 64:
            raise ValueError(f"prime {qq} does not allow lazy reduction by {_GROUP}")
        if (1 << 32) + (1 + r32) * r32 >= 1 << 37:  # two folds must land below 2**37
            raise ValueError(f"prime {qq} does not allow the final reduction")


@njit(cache=True, inline="always")
def _fold(acc: np.uint64, r32: np.uint64) -> np.uint64:  # pragma: no cover - jitted
    return (acc & _MASK32) + (acc >> _SHIFT) * r32


@njit(cache=True, inline="always")
def _red(v: np.uint64, q: np.uint64) -> np.uint64:  # pragma: no cover - jitted
    """v mod q for v < 2q, branch-free (v − q wraps above v when v < q)."""
    return min(v, v - q)


@njit(cache=True, inline="always")
def _red4(v: np.uint64, q: np.uint64) -> np.uint64:  # pragma: no cover - jitted
    """v mod q for v < 4q."""
    v = min(v, v - q - q)
    return min(v, v - q)


@njit(cache=True, inline="always")
def _red37(v: np.uint64, q: np.uint64, m37: np.uint64) -> np.uint64:  # pragma: no cover - jitted
    """v mod q for v < 2**37, Barrett with m37 = floor(2**37 / q) (quotient off by ≤ 1)."""
    return _red(v - ((v * m37) >> np.uint64(37)) * q, q)


@njit(cache=True, inline="always")
def _mulmod(a, b, q, mu):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """a·b mod q for a, b < q < 2**31, Barrett with mu = floor(2**62 / q)."""
    x = a * b
    qhat = ((x >> np.uint64(30)) * mu) >> _SHIFT
    return _red4(x - qhat * q, q)


@njit(cache=True, inline="always")
def _mod_any(w: np.uint64, q: np.uint64, qinv: float) -> np.uint64:  # pragma: no cover - jitted
    """w mod q for any uint64 w and q < 2**31, exactly (float quotient estimate, fixed up).

    float64(w) is within 2**11 of w, so the estimated quotient is off by at most one and
    the signed remainder lies in [−q, 2q).
    """
    qhat = np.uint64(np.float64(w) * qinv)
    r = np.int64(w - qhat * q)
    qi = np.int64(q)
    if r < 0:
        r += qi
    if r >= qi:
        r -= qi
    return np.uint64(r)


# ---- the multiply-accumulate and masking of one query ---------------------------------


@intrinsic
def _keep(typingctx, value):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Make the integer ``value`` observable, so the loads that computed it are not removed."""
    sig = types.void(value)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        fnty = ir.FunctionType(ir.VoidType(), [context.get_value_type(signature.args[0])])
        builder.asm(fnty, "", "r", [args[0]], side_effect=True)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def _stage(chunk):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Read one task's gallery chunk front to back so it is in L2 before the MAC uses it.

    The MAC reads the chunk as four interleaved 1 KB rows. Measured on the 2-core EPYC:
    reading the gallery in that order (no arithmetic) took ~3× as long as one plain
    sequential pass, and the MAC straight from DRAM cost ~2.5× its time from cache;
    software prefetching (every line, or a few per page, 4-32 KB ahead, any hint) made
    it slower still (presumably L1 miss slots shared with the MAC's own misses). A sequential
    pass streams at full bandwidth, after which the MAC runs from L2.
    """
    flat = chunk.reshape(-1).view(np.uint64)  # two residues per word: half the loads
    t = np.uint64(0)
    for x in range(flat.size):
        t |= flat[x]
    _keep(t)  # type: ignore[call-arg]  # the typing context is supplied by numba


@njit(cache=True, inline="always")
def _mac4(acc0, acc1, gp, pair, j, shift, p_off, rr):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Rows j..j+3 of ``gp`` (one fold, four products per accumulator and position).

    ``pair`` holds each probe residue pair as one word, c0 in the low and c1 in the
    high 32 bits: one load serves both products, and ``w · (v & m32)`` and
    ``w · (v >> 32)`` compile to one 32 × 32-bit vpmuludq each (no zero-extension).
    """
    d, width = gp.shape
    ja = (j + shift) % d
    jb = (j + 1 + shift) % d
    jc = (j + 2 + shift) % d
    jd = (j + 3 + shift) % d
    ga = gp[j]
    gb = gp[j + 1]
    gc = gp[j + 2]
    gd = gp[j + 3]
    pa = pair[ja, p_off : p_off + width]
    pb = pair[jb, p_off : p_off + width]
    pc = pair[jc, p_off : p_off + width]
    pd = pair[jd, p_off : p_off + width]
    for x in range(width):
        wa = np.uint64(ga[x])
        wb = np.uint64(gb[x])
        wc = np.uint64(gc[x])
        wd = np.uint64(gd[x])
        va = pa[x]
        vb = pb[x]
        vc = pc[x]
        vd = pd[x]
        acc0[x] = (
            _fold(acc0[x], rr)
            + wa * (va & _MASK32)
            + wb * (vb & _MASK32)
            + wc * (vc & _MASK32)
            + wd * (vd & _MASK32)
        )
        acc1[x] = (
            _fold(acc1[x], rr)
            + wa * (va >> _SHIFT)
            + wb * (vb >> _SHIFT)
            + wc * (vc >> _SHIFT)
            + wd * (vd >> _SHIFT)
        )


@njit(cache=True, inline="always")
def _mac1(acc0, acc1, gp, pair, j, shift, p_off, rr):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Row j of ``gp`` alone (the D mod 4 rows left over)."""
    d, width = gp.shape
    g = gp[j]
    e = pair[(j + shift) % d, p_off : p_off + width]
    for x in range(width):
        w = np.uint64(g[x])
        acc0[x] = _fold(acc0[x], rr) + w * (e[x] & _MASK32)
        acc1[x] = _fold(acc1[x], rr) + w * (e[x] >> _SHIFT)


@njit(cache=True, inline="always")
def _mac(acc0, acc1, gp, pair, p_off, shift, r32):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """acc{0,1}[x] += Σ_j gp[j, x] · c{0,1}, (c0, c1) = pair[(j + shift) % D, p_off + x].

    ``pair`` is one half of the paired probe, extended past its end by its first
    positions, so a rotated window is contiguous even where it wraps around.
    """
    d = gp.shape[0]
    rr = np.uint64(np.uint32(r32))  # < 2**32: the fold multiply is 32 × 32 bits (vpmuludq)
    d4 = d - d % _GROUP
    for j in range(0, d4, _GROUP):
        _mac4(acc0, acc1, gp, pair, j, shift, p_off, rr)
    for j in range(d4, d):
        _mac1(acc0, acc1, gp, pair, j, shift, p_off, rr)


@njit(cache=True, inline="always")
def _finish_c0(  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    acc, res, a_off, r_off, pad, c, p, u_off, length, tq, masks, i, t_off, pk, qq, rr, mm
):
    """The c0 row of ``length`` result slots: A·(Z0 + σ_conj(Z0)) + u·p0 + σ_conj(u·p0) + F'.

    ``acc`` (2, ·) holds the c0 accumulators of both halves; accumulator x = a_off + … is
    slot t = t_off + x, written to ``res[r_off + …]`` (S values: the row is conjugation
    symmetric); the gallery-side (pad bias) position is u_off + x (rotated). Z0 = acc +
    pad_bias − τ (``tq`` = q − τ·Δ). Every operand is a contiguous slice indexed from 0,
    so this loop vectorises without gathers.
    """
    s = pad.shape[2] // 2
    rr = np.uint64(np.uint32(rr))  # < 2**32: the fold multiply is 32 × 32 bits
    m37 = np.uint64((1 << 37) // qq)
    t0 = t_off + a_off
    u0 = u_off + a_off
    acc_a = acc[0, a_off : a_off + length]
    acc_b = acc[1, a_off : a_off + length]
    pad_a = pad[c, p, u0 : u0 + length]
    pad_b = pad[c, p, s + u0 : s + u0 + length]
    amask = masks[i, 0, p, t0 : t0 + length]
    flood = masks[i, 0, p, s + t0 : s + t0 + length]
    u_a = masks[i, 1, p, t0 : t0 + length]
    u_b = masks[i, 1, p, s + t0 : s + t0 + length]
    p0a = pk[0, p, t0 : t0 + length]
    p0b = pk[0, p, s + t0 : s + t0 + length]
    out = res[r_off : r_off + length]
    for x in range(length):
        za = _red4(_red37(_fold(_fold(acc_a[x], rr), rr), qq, m37) + np.uint64(pad_a[x]) + tq, qq)
        zb = _red4(_red37(_fold(_fold(acc_b[x], rr), rr), qq, m37) + np.uint64(pad_b[x]) + tq, qq)
        r0 = _red(
            _mulmod(np.uint64(u_a[x]), np.uint64(p0a[x]), qq, mm)
            + _mulmod(np.uint64(u_b[x]), np.uint64(p0b[x]), qq, mm),
            qq,
        )
        am = np.uint64(amask[x])
        out[x] = np.uint32(
            _red4(_mulmod(am, _red(za + zb, qq), qq, mm) + r0 + np.uint64(flood[x]), qq)
        )


@njit(cache=True, inline="always")
def _finish_c1(acc, res, a_off, r_off, length, masks, i, t_off, pk, p, qq, rr, mm):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """The c1 rows (both halves) of ``length`` result slots: A·Z1 + u·p1 + e2.

    ``acc`` (2, ·) holds the c1 accumulators of both halves, ``res`` (2, S) receives
    them; offsets as in ``_finish_c0``.
    """
    s = masks.shape[3] // 2
    rr = np.uint64(np.uint32(rr))
    m37 = np.uint64((1 << 37) // qq)
    t0 = t_off + a_off
    amask = masks[i, 0, p, t0 : t0 + length]
    for h in range(2):
        acc_h = acc[h, a_off : a_off + length]
        u_h = masks[i, 1, p, h * s + t0 : h * s + t0 + length]
        e2_h = masks[i, 2, p, h * s + t0 : h * s + t0 + length]
        p1_h = pk[1, p, h * s + t0 : h * s + t0 + length]
        out = res[h, r_off : r_off + length]
        for x in range(length):
            y = _red37(_fold(_fold(acc_h[x], rr), rr), qq, m37)
            out[x] = np.uint32(
                _red4(
                    _mulmod(np.uint64(amask[x]), y, qq, mm)
                    + _mulmod(np.uint64(u_h[x]), np.uint64(p1_h[x]), qq, mm)
                    + np.uint64(e2_h[x]),
                    qq,
                )
            )


@njit(cache=True, inline="always")
def _finish(acc, res, a_off, r_off, pad, c, p, u_off, length, tq, masks, i, t_off, pk, qq, rr, mm):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Reduce, threshold, mask and rerandomise ``length`` slot pairs (t, S + t) into ``res``
    (3, S): row 0 = c0 (``_finish_c0``), rows 1-2 = c1 by half (``_finish_c1``)."""
    _finish_c0(
        acc[0:2],
        res[0],
        a_off,
        r_off,
        pad,
        c,
        p,
        u_off,
        length,
        tq,
        masks,
        i,
        t_off,
        pk,
        qq,
        rr,
        mm,
    )
    _finish_c1(acc[2:4], res[1:3], a_off, r_off, length, masks, i, t_off, pk, p, qq, rr, mm)


@njit(cache=True, inline="always")
def _pair_row(pairs, probe, row, width):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Row ``row`` = (p, h, j) of the paired probe: (c0 | c1 << 32) of rotation j, half h,
    prime p, followed by its first ``width`` positions again (see ``score_and_mask``)."""
    d = pairs.shape[2]
    s = pairs.shape[3] - width
    p = row // (2 * d)
    h = (row // d) % 2
    j = row % d
    pr = pairs[p, h, j]
    lo = probe[j, 0, p, h * s : h * s + s]
    hi = probe[j, 1, p, h * s : h * s + s]
    for t in range(s):
        pr[t] = np.uint64(lo[t]) | (np.uint64(hi[t]) << _SHIFT)
    for t in range(width):
        pr[s + t] = pr[t]


@njit(cache=True, nogil=True)
def _ntt_sources(to_ntt):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """NTT index → position in a flat ``slots[i, p]`` row of ``score_and_mask``, for
    c0 (row 0) and c1 (row 1); unsigned, so indexing needs no wraparound check."""
    n = to_ntt.shape[0]
    s = n // 2
    src = np.empty((2, n), dtype=np.uint64)
    for t in range(s):
        src[0, to_ntt[t]] = t
        src[0, to_ntt[s + t]] = t
        src[1, to_ntt[t]] = s + t
        src[1, to_ntt[s + t]] = 2 * s + t
    return src


@njit(parallel=True, cache=True, nogil=True)
def _to_ntt_order(slots, src, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Slot order → SEAL's NTT order, one task and one contiguous output row per (result
    ciphertext, prime): scattering while scoring turned every store into a cache miss."""
    n_ct, k = slots.shape[0], slots.shape[1]
    n = out.shape[3]
    for task in prange(n_ct * k):
        i = task // k
        p = task % k
        res = slots[i, p].reshape(-1)
        o0 = out[i, 0, p]
        o1 = out[i, 1, p]
        for u in range(n):
            o0[u] = res[src[0, u]]
            o1[u] = res[src[1, u]]


@njit(parallel=True, cache=True, nogil=True)
def score_and_mask(  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    gallery, probe, pad, tau, masks, pk, rotations, position, visit, q, r32, mu, to_ntt, out
):
    """Multiply-accumulate, rotate, mask and rerandomise every result ciphertext at once.

    For result position i, block c = order[i], rotation r = rotations[c], the block's
    scores Z = σ_r(Σ_j diag_j ⊙ rot_j(u)) are computed directly in slot order: for
    gallery position g, Z[g − r] = Σ_j diag_j[g] · probe_{(j + r) mod D}[g − r] (the
    probe ciphertexts are under s, so Z is too: no key switch). Then, with the unit of
    mask material i (A, u, F + σ_conj(F), e2) and the public key (p0, p1), all in slot
    order::

        Z0 ← Z0 + pad_bias(σ_r) − τ
        c0 = A·(Z0 + σ_conj(Z0)) + u·p0 + σ_conj(u·p0) + F + σ_conj(F)
        c1 = A·Z1 + u·p1 + e2

    written to ``out[i]`` in SEAL's NTT order. (c0, c1, σ_conj(c1)) decrypts under
    (1, s, σ_conj(s)) to 2·Re(A·Z + R) with R = (u·p0 + F, u·p1 + e2) a fresh public-key
    encryption of zero whose c0 error is the flood F.

    A task is one (prime, block of gallery positions) and walks every gallery block c:
    the gallery is laid out per task, so each (task, c) reads one contiguous
    2 × D × _BLOCK chunk (128 KB for D = 64) from memory once. That chunk is first
    streamed into L2 by one sequential pass (``_stage``) and then multiplied from there:
    read straight from DRAM in the MAC's own order (four interleaved 1 KB rows) it
    streamed at a third of the bandwidth. The probe (2 MB per prime) is read at the
    rotated offset from cache; visiting the blocks in order of their rotation makes
    consecutive windows overlap, so most of those reads hit L2.

    Three parallel passes: (1) the probe's (c0, c1) residues are paired into one uint64
    word per position (``pairs`` (k, 2, D, S + _BLOCK), 4.7 MB: each half followed by
    its first _BLOCK positions again), so the MAC loads each pair once, multiplies both
    halves with 32 × 32-bit vpmuludq without zero-extending shuffles, and reads every
    rotated window as one contiguous slice (no split where it wraps, no scalar tails);
    (2) the tasks above write their results in slot order to a scratch ``slots``
    (C, k, 3, S) (contiguous stores); (3) one task per (result ciphertext, prime) permutes
    its row into SEAL's NTT order (contiguous stores to ``out``; scattering from (2)
    directly turned every store into a cache miss).

    Array shapes and dtypes are stated and checked by ``_specs.FusedScore``, the only
    caller; gallery entry [p, b, c, h, j, x] sits at slot position h·S + b·_BLOCK + x.
    """
    k, blocks, n_ct, _, d, width = gallery.shape
    n = probe.shape[3]
    s = n // 2
    # (c0 | c1 << 32) per probe residue; each half is followed by its first `width`
    # positions again, so every rotated window of a half is one contiguous slice
    pairs = np.empty((k, 2, d, s + width), dtype=np.uint64)
    for row in prange(k * 2 * d):
        _pair_row(pairs, probe, row, width)
    slots = np.empty((n_ct, k, 3, s), dtype=np.uint32)  # c0 (both halves), c1 half 0, half 1
    src = _ntt_sources(to_ntt)
    for task in prange(k * blocks):
        p = task // blocks
        blk = task % blocks
        g0 = blk * width
        qq = q[p]
        rr = r32[p]
        mm = mu[p]
        tq = qq - tau[p]
        acc = np.empty((4, width), dtype=np.uint64)  # (c0, c1) × (half 0, half 1)
        for v in range(n_ct):
            c = visit[v]
            i = position[c]
            r = rotations[c]
            shift = r % d
            s0 = (g0 - r) % s  # output slot of gallery position g0
            l1 = min(width, s - s0)  # up to the end of the half, then wrap to its start
            acc[:] = 0
            _stage(gallery[p, blk, c])
            for h in range(2):
                _mac(acc[h], acc[2 + h], gallery[p, blk, c, h], pairs[p, h], s0, shift, rr)
            res = slots[i, p]
            _finish(acc, res, 0, s0, pad, c, p, g0, l1, tq, masks, i, s0, pk, qq, rr, mm)
            if l1 < width:
                _finish(
                    acc, res, l1, 0, pad, c, p, g0, width - l1, tq, masks, i, -l1, pk, qq, rr, mm
                )
    _to_ntt_order(slots, src, out)


# ---- probe expansion ------------------------------------------------------------------


@njit(cache=True, nogil=True)
def expand_probe(c0, c1_words, q, to_ntt, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out[i] = (c0[i], c1_words[i] mod q) gathered from SEAL's NTT order into slot order.

    c0: uint32 (m, k, N) < q; c1_words: uint64 (m, k, N), any values (uniform words from
    the seed's PRG, reduced here exactly as ``wire.expand_seed`` does); q: uint64 (k,);
    to_ntt: int64 (N,); out: uint32 (≥ m, 2, k, N). Single-threaded on purpose: it is
    ~0.2 ms of work, less than what a parallel region risks waiting for a descheduled
    thread on a busy machine.
    """
    m, k, n = c0.shape
    for task in range(m * k):
        i = task // k
        p = task % k
        qq = q[p]
        qinv = 1.0 / np.float64(qq)
        for t in range(n):
            src = to_ntt[t]
            out[i, 0, p, t] = c0[i, p, src]
            out[i, 1, p, t] = np.uint32(_mod_any(c1_words[i, p, src], qq, qinv))


# ---- mask material --------------------------------------------------------------------

#: uint64 words of randomness one unit of mask material consumes (plus ``mask_weight``).
WORDS_PER_COEFF = 3


@njit(cache=True, inline="always")
def _mask_unit(words, weight, flood_bits, q, mu, psi_rev, psi_shoup, to_ntt, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """One unit of mask material (3, k, N) uint32 in slot order from uniform uint64 words.

    Coefficients (identical for every prime): u ternary uniform (word mod 3 − 1, bias
    < 2**-62); F uniform in [−2**fb, 2**fb) (top bits); e2 centred binomial η = 21
    (σ ≈ 3.24, SEAL's 3.2); h sparse ternary with ``weight`` signed unit coefficients
    (positions may collide, which only lowers |h(ζ)|). Outputs A = 1 + H·σ_conj(H)
    (exactly real slots in [1, weight² + 1]), F + σ_conj(F), u and e2, NTT'd.
    """
    k = q.shape[0]
    n = to_ntt.shape[0]
    s = n // 2
    coeffs = np.zeros((4, n), dtype=np.int64)  # h, u, F, e2
    half = np.int64(1) << np.int64(flood_bits)
    top = np.uint64(63 - flood_bits)
    low21 = np.uint64((1 << 21) - 1)
    for x in range(n):
        coeffs[1, x] = np.int64(words[x] % np.uint64(3)) - 1
        coeffs[2, x] = np.int64(words[n + x] >> top) - half
        w = words[2 * n + x]
        coeffs[3, x] = np.int64(_popcount(w & low21)) - np.int64(
            _popcount((w >> np.uint64(21)) & low21)
        )
    for m in range(weight):
        w = words[3 * n + m]
        pos = np.int64(w & np.uint64(n - 1))
        coeffs[0, pos] += 1 if (w >> np.uint64(63)) else -1
    a = np.empty(n, dtype=np.uint32)
    spec = np.empty((4, n), dtype=np.uint64)
    for p in range(k):
        qq = q[p]
        qi = np.int64(qq)
        for row in range(4):
            for x in range(n):
                v = coeffs[row, x]
                a[x] = np.uint32(v + qi if v < 0 else v)
            _ntt_one(a, psi_rev[p], psi_shoup[p], qq)
            for t in range(n):
                spec[row, t] = np.uint64(a[to_ntt[t]])
        for t in range(s):
            hh = _mulmod(spec[0, t], spec[0, s + t], qq, mu[p])
            out[0, p, t] = np.uint32(_red(hh + np.uint64(1), qq))
            out[0, p, s + t] = np.uint32(_red(spec[2, t] + spec[2, s + t], qq))
        for t in range(n):
            out[1, p, t] = np.uint32(spec[1, t])
            out[2, p, t] = np.uint32(spec[3, t])


@njit(cache=True, inline="always")
def _popcount(x: np.uint64) -> np.uint64:  # pragma: no cover - jitted
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True, nogil=True)
def mask_units(words, weight, flood_bits, q, mu, psi_rev, psi_shoup, to_ntt, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """``out[m] = unit from words[m]`` on the calling thread (the pool's background filler)."""
    for m in range(out.shape[0]):
        _mask_unit(words[m], weight, flood_bits, q, mu, psi_rev, psi_shoup, to_ntt, out[m])


@njit(parallel=True, cache=True, nogil=True)
def mask_units_parallel(words, weight, flood_bits, q, mu, psi_rev, psi_shoup, to_ntt, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """Same as ``mask_units`` on every core (the cold path: the pool was empty)."""
    for m in prange(out.shape[0]):
        _mask_unit(words[m], weight, flood_bits, q, mu, psi_rev, psi_shoup, to_ntt, out[m])


# ---- NTT ------------------------------------------------------------------------------


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

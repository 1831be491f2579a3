"""Gate-side decryption of a masked result on the RNS residues (two data primes).

A masked result ciphertext is (c0, c1) in SEAL's NTT order, with the conjugated
component σ_conj(c1) implied (``crypto.he.protocol``); it decrypts under (1, s,
σ_conj(s)) to m = c0 + c1·s + σ_conj(c1)·σ_conj(s). SEAL cannot decrypt that
three-component form directly, and going through SEAL plaintexts one ciphertext at a
time cost ≈ 0.9 ms each (≈ 45 ms for the 49 results of a 100k watchlist). Here, for
all result ciphertexts at once:

1. m mod q_i per prime, elementwise (exact modular arithmetic), and
2. the inverse NTT of every row (``_keyswitch.intt_t`` with the key-switching
   context's tables, checked against SEAL when the context is built), both in
   ``_decrypt_coefficients``;
3. the two residues combined by CRT into the centred integer coefficient in
   (−Q/2, Q/2], Q = q0·q1 < 2**62, as float64 (``_crt_centred``; relative error
   2**-53 per coefficient: far below the masking noise);
4. the canonical embedding by one complex FFT: slot t of a half holds m(ζ^(3^t)), ζ =
   exp(iπ/N), and for odd e = 2j + 1, m(ζ^e) = N · ifft(m_i · ζ^i)[j].

The real part of each slot, divided by the scale, is what ``reveal`` thresholds. A test
compares it with SEAL's own decoding (agreement to ~1e-13). The values never leave
the gate.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from numba import njit

from crypto.he._kernels import _mulmod, _red, mu_for
from crypto.he._keyswitch import intt_t, reduction_fits
from crypto.he._rounding import rounded_products
from crypto.he._seal import backend
from crypto.he.keys import GateKeyBundle
from crypto.he.params import ParameterSet
from crypto.he.rotkeys import context
from crypto.he.rounding import C0_BITS, C1_BITS, RoundedPolys

__all__ = ["masked_values", "rounded_values", "supports"]


def supports(params: ParameterSet) -> bool:
    """Whether ``masked_values`` handles this parameter set (two data primes and the
    key-switching context whose transforms it reuses)."""
    return params.single_ciphertext and len(params.data_primes) == 2


@njit(cache=True, nogil=True)
def _decrypt_coefficients(polys, s, sc, conj, mu, tb, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out[i, p] = INTT_p(c0 + c1·s + c1[conj]·sc mod q_p), natural coefficient order.

    polys: uint32 (C, 2, k, N) residues < q in SEAL's NTT order; s, sc: uint64 (k, N)
    the secret key and its conjugate, < q; conj: int64 (N,) the conjugation's index
    map; mu: Barrett constants of the data primes; tb: ``SwitchContext.tables`` (data
    limbs first); out: uint64 (C, k, N). Each row is written straight into the
    transposed layout ``_keyswitch.intt_t`` reads. One thread on purpose: a gate (or a
    simulator running many gates in one process) calls this from its own threads, where
    a parallel region's spinning threads cost more than the ≈ 5 ms it would save.
    """
    count, _, k, n = polys.shape
    q = tb[0]
    spec = np.empty((8, n // 8), dtype=np.uint64)
    for i in range(count):
        for p in range(k):
            qq = q[p]
            mm = mu[p]
            c0 = polys[i, 0, p]
            c1 = polys[i, 1, p]
            for e in range(n):
                a = _mulmod(np.uint64(c1[e]), s[p, e], qq, mm)
                b = _mulmod(np.uint64(c1[conj[e]]), sc[p, e], qq, mm)
                spec[e % 8, e // 8] = _red(_red(np.uint64(c0[e]) + a, qq) + b, qq)
            intt_t(spec, out[i, p], tb[3][p], tb[4][p], tb[7][p], tb[8][p], qq, tb[9][p], tb[10][p])


@njit(cache=True, nogil=True)
def _crt_centred(coeffs, q0, q1, inv, mu1, out):  # type: ignore[no-untyped-def]  # pragma: no cover - jitted
    """out[i, x] = the integer ≡ coeffs[i, p, x] mod q_p (p = 0, 1) in (−Q/2, Q/2], as
    float64; Q = q0·q1 < 2**62 and q0 < 2·q1; inv = q0^{-1} mod q1, mu1 Barrett for q1."""
    count, _, n = coeffs.shape
    big_q = q0 * q1
    half = big_q >> np.uint64(1)
    for i in range(count):
        for x in range(n):
            r0 = coeffs[i, 0, x]
            r1 = coeffs[i, 1, x]
            lift = _mulmod(_red(r1 + q1 - _red(r0, q1), q1), inv, q1, mu1)
            whole = r0 + q0 * lift  # < Q
            if whole > half:
                out[i, x] = -np.float64(big_q - whole)
            else:
                out[i, x] = np.float64(whole)


@functools.lru_cache(maxsize=4)
def _embedding(params: ParameterSet) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.int64]]:
    """(twist ζ^i for i < N, FFT bin of slot t for t < slots)."""
    n = params.poly_degree
    twist = np.exp(1j * np.pi * np.arange(n) / n)
    exponents = np.array([pow(3, t, 2 * n) for t in range(params.slots)], dtype=np.int64)
    return twist, (exponents - 1) // 2


def masked_values(keys: GateKeyBundle, polys: npt.NDArray[np.uint32]) -> npt.NDArray[np.float64]:
    """Real parts of the decrypted slots, (C, slots) float64, of result residues
    ``polys`` (C, 2, k, N) made under ``keys`` (the caller checked key and parameters)."""
    params = keys.params
    if not supports(params):
        raise ValueError(f"{params.name} is not decrypted on the residues")
    be = backend(params)
    ctx = context(params)
    count, _, k, n = polys.shape
    _, s = keys.secret_residues()
    conj = be.galois_perm(be.conj_elt)
    s = np.ascontiguousarray(s, dtype=np.uint64)
    sc = np.ascontiguousarray(s[:, conj])
    coeffs = np.empty((count, k, n), dtype=np.uint64)
    polys = np.ascontiguousarray(polys)
    _decrypt_coefficients(polys, s, sc, conj, mu_for(be.q), ctx.tables, coeffs)
    q0, q1 = be.q[0], be.q[1]
    centred = np.empty((count, n), dtype=np.float64)
    inv = np.uint64(pow(int(q0), -1, int(q1)))
    _crt_centred(coeffs, q0, q1, inv, mu_for(be.q)[1], centred)
    twist, bins = _embedding(params)
    spectrum = np.fft.ifft(centred * twist, axis=1)
    scale = 2.0 ** (params.probe_scale_bits + params.template_scale_bits)
    return np.ascontiguousarray(spectrum[:, bins].real * (n / scale))


def rounded_values(keys: GateKeyBundle, rounded: RoundedPolys) -> npt.NDArray[np.float64]:
    """Real parts of the decrypted slots, (C, slots) float64, of a rounded result
    (``crypto.he.rounding``) made under ``keys`` (the caller checked key and parameters).

    m' = c0'·2^(b1−b0) + [c1'·s + σ_conj(c1')·σ_conj(s)] mod 2^b1, centred: the bracket
    is computed exactly through the data primes (``_rounding.rounded_products``; its
    coefficients are below 2^(b1+12) < Q/2, so the CRT is exact and so is its float64),
    the rest in int64. m' is the decryption of the unrounded result times 2^b1/Q plus
    the rounding noise; the embedding is then the same FFT as ``masked_values``.
    """
    params = keys.params
    if not supports(params):
        raise ValueError(f"{params.name} is not decrypted on the residues")
    if not all(reduction_fits(q, (1 << C1_BITS) - 1) for q in params.data_primes):
        raise ValueError(f"{params.name}: rounded c1 cannot be reduced exactly")
    be = backend(params)
    ctx = context(params)
    count, n = rounded.count, params.poly_degree
    _, s = keys.secret_residues()
    conj = be.galois_perm(be.conj_elt)
    s = np.ascontiguousarray(s, dtype=np.uint64)
    sc = np.ascontiguousarray(s[:, conj])
    mu = mu_for(be.q)
    coeffs = np.empty((count, be.k, n), dtype=np.uint64)
    rounded_products(np.ascontiguousarray(rounded.c1), C1_BITS, s, sc, conj, mu, ctx.tables, coeffs)
    q0, q1 = be.q[0], be.q[1]
    products = np.empty((count, n), dtype=np.float64)
    _crt_centred(coeffs, q0, q1, np.uint64(pow(int(q0), -1, int(q1))), mu[1], products)
    half = n // 2
    c0 = np.zeros((count, n), dtype=np.int64)
    c0[:, :half] = rounded.c0
    c0[:, half + 1 :] = -c0[:, half - 1 : 0 : -1]  # c0_{N−t} = −c0_t; c0_{N/2} = 0
    mask = np.int64((1 << C1_BITS) - 1)
    m = ((c0 << (C1_BITS - C0_BITS)) + products.astype(np.int64)) & mask
    m -= (m >> (C1_BITS - 1)) << C1_BITS  # centred in [−2^(b1−1), 2^(b1−1))
    twist, bins = _embedding(params)
    spectrum = np.fft.ifft(m.astype(np.float64) * twist, axis=1)
    scale = 2.0 ** (params.probe_scale_bits + params.template_scale_bits)
    big_q = float(int(q0) * int(q1))
    return np.ascontiguousarray(spectrum[:, bins].real * (n * big_q / 2.0**C1_BITS / scale))

"""The match protocol of the brief, as four functions.

1. gate     ``encrypt_probe(keys, template) → Probe``
2. service  ``score_masked(probe, gallery, threshold, public) → (MaskedResult, QueryMapping)``
3. gate     ``reveal(keys, masked) → positions``  (positions only; values never leave)
4. service  ``resolve(positions, mapping) → gallery rows that matched``

Masking (step 2), per query and per result ciphertext c, all on NTT residues:

* subtract the threshold and push empty slots to −pad_bias (always negative);
* add a flooding polynomial with coefficients uniform in ±2**flood_bits;
* rotate the slots by a fresh uniform r_c (the probe is read through the inverse
  automorphism so the gallery streams contiguously; the result is then permuted);
* keep only the real part and scale each slot by a fresh positive A_k = 1 + |h(ζ_k)|²
  (h a fresh sparse ternary polynomial, so A_k ∈ [1, w² + 1] exactly real): the result
  (c0, c1) has a conjugation-symmetric c0 and decrypts, with the implied third part
  conj(c1), under (1, s, conj(s)) to 2·Re(A ⊙ scores);
* rerandomise with a fresh public-key encryption of zero (the flood is its c0 error);
* shuffle the order of the result ciphertexts.

The gate sees A_k·(score_k − τ) + noise: its sign, and a magnitude drawn afresh each time.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crypto.errors import (
    GalleryError,
    KeyMismatchError,
    MalformedInputError,
    ParameterMismatchError,
)
from crypto.he._kernels import mac_rotated, mask_combine, mu_for, r32_for
from crypto.he._seal import Backend, backend
from crypto.he.gallery import Gallery
from crypto.he.keys import GateKeyBundle, PublicKeyBundle
from crypto.he.params import ParameterSet
from crypto.he.wire import MaskedResult, Probe, expand_seed

__all__ = ["QueryMapping", "encrypt_probe", "resolve", "reveal", "score_masked"]

U64 = npt.NDArray[np.uint64]


def _default_rng() -> np.random.Generator:
    # A fresh 128-bit seed from the OS per query: no state links two queries.
    return np.random.Generator(np.random.Philox(secrets.randbits(128)))


@dataclass(frozen=True)
class QueryMapping:
    """The service's secret for one query: how result positions map to gallery rows."""

    query_id: bytes
    gallery_version: str
    size: int
    slots: int
    order: tuple[int, ...] = field(repr=False)  # order[i] = gallery block of result ct i
    rotations: tuple[int, ...] = field(repr=False)  # rotations[c] = left rotation of block c


# ---- gate ---------------------------------------------------------------------------


def encrypt_probe(
    keys: GateKeyBundle,
    template: npt.ArrayLike,
    *,
    rng: np.random.Generator | None = None,
) -> Probe:
    """Encrypt an L2-normalised template (d floats) under the gate's own key.

    The gate uses its *secret* key (symmetric CKKS encryption): the noise is smaller
    than public-key encryption and each ciphertext can be seeded, halving the upload.
    It sends ``baby_steps`` copies of the packed probe, pre-rotated in the clear.
    ``rng`` only chooses the seeds (tests); SEAL draws the encryption noise.
    """
    params = keys.params
    v = np.asarray(template, dtype=np.float64)
    if v.ndim != 1 or not np.isfinite(v).all():
        raise MalformedInputError("template must be a finite 1-D vector")
    if abs(float(np.linalg.norm(v)) - 1.0) > 1e-3:
        raise MalformedInputError("template must be L2-normalised")
    try:
        diag_count, baby = params.probe_layout(v.shape[0])
    except ValueError as exc:
        raise MalformedInputError(str(exc)) from None
    be = backend(params)
    sk, s = keys.secret_residues()
    padded = np.zeros(2 * diag_count)
    padded[: v.shape[0]] = v
    u = padded[:diag_count] + 1j * padded[diag_count:]
    slots = np.arange(params.slots)
    scale = 2.0**params.probe_scale_bits
    q = be.q.reshape(-1, 1)
    seeds: list[bytes] = []
    c0 = np.empty((baby, be.k, be.n), dtype=np.uint32)
    for i in range(baby):
        plain = be.encode(u[(slots + i) % diag_count], scale)
        ct = be.encrypt_symmetric(sk, plain, scale)
        # ct = (−a·s + e + m, a); re-seed: keep e + m, replace a by expand(seed).
        message = (ct[0] + ct[1] * s % q) % q
        seed = rng.bytes(32) if rng is not None else os.urandom(32)
        a = expand_seed(params, seed)
        c0[i] = ((message + q - a * s % q) % q).astype(np.uint32)
        seeds.append(seed)
    return Probe(params=params, key_id=keys.key_id, dim=v.shape[0], seeds=tuple(seeds), c0=c0)


def reveal(keys: GateKeyBundle, masked: MaskedResult) -> list[int]:
    """Decrypt a masked result and return the positions whose value is positive.

    Positions are ``ciphertext_index · slots + slot``. The decrypted values themselves are
    dropped here: they must never leave the gate (CKKS key-recovery risk).
    """
    values = _masked_values(keys, masked)
    return [int(x) for x in np.flatnonzero(values.reshape(-1) > 0)]


def _masked_values(keys: GateKeyBundle, masked: MaskedResult) -> npt.NDArray[np.float64]:
    """Decrypted real parts, shape (count, slots). Gate-internal; tests use it too."""
    _check_same(keys.params, masked.params, keys.key_id, masked.key_id)
    be = backend(keys.params)
    _, s = keys.secret_residues()
    conj = be.galois_perm(be.conj_elt)
    sc = s[:, conj]
    q = be.q.reshape(-1, 1)
    scale = 2.0 ** (keys.params.probe_scale_bits + keys.params.template_scale_bits)
    polys = masked.polys.astype(np.uint64)
    out = np.empty((masked.count, keys.params.slots), dtype=np.float64)
    for i in range(masked.count):
        c0, c1 = polys[i]
        c2 = c1[:, conj]  # the conjugated component is implied: σ_conj(c1)
        m = (c0 + c1 * s % q + c2 * sc % q) % q
        out[i] = be.decode_residues(m, scale).real
    return out


# ---- service ------------------------------------------------------------------------


def _check_same(p1: ParameterSet, p2: ParameterSet, k1: str, k2: str) -> None:
    if p1.hash != p2.hash:
        raise ParameterMismatchError(f"made under {p2.name}, expected {p1.name}")
    if k1 != k2:
        raise KeyMismatchError(f"made under key {k2}, expected key {k1}")


def _expand_probe(be: Backend, probe: Probe, public: PublicKeyBundle) -> npt.NDArray[np.uint32]:
    """All D rotations of the packed probe, (D, 2, k, N) uint32."""
    params = probe.params
    diag_count, baby = params.probe_layout(probe.dim)
    full = np.empty((diag_count, 2, be.k, be.n), dtype=np.uint32)
    for i in range(baby):
        full[i, 0] = probe.c0[i]
        full[i, 1] = expand_seed(params, probe.seeds[i])
    if diag_count > baby:
        galois = public.galois()
        scale = 2.0**params.probe_scale_bits
        for j in range(baby, diag_count):
            prev = full[j - baby].astype(np.uint64)
            full[j] = be.rotate(prev, scale, baby, galois)
    return full


def _check_inputs(probe: Probe, gallery: Gallery, public: PublicKeyBundle) -> None:
    _check_same(public.params, probe.params, public.key_id, probe.key_id)
    if gallery.params.hash != probe.params.hash:
        raise ParameterMismatchError("gallery and probe use different parameter sets")
    if gallery.dim != probe.dim:
        raise GalleryError(f"probe has dimension {probe.dim}, gallery {gallery.dim}")


class _Clock:
    """Accumulates stage timings into ``sink`` (no-op when ``sink`` is None)."""

    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.sink is not None:
            now = time.perf_counter()
            self.sink[stage] = self.sink.get(stage, 0.0) + now - self.last
            self.last = now


def _mac(
    be: Backend,
    probe: Probe,
    gallery: Gallery,
    public: PublicKeyBundle,
    rotations: U64,
    clock: _Clock | None = None,
) -> U64:
    clock = clock or _Clock(None)
    full = _expand_probe(be, probe, public)
    clock.lap("probe_expand_rotate")
    diag_count = full.shape[0]
    gathers = np.stack(
        [be.galois_perm(pow(be.rotation_elt(int(r)), -1, 2 * be.n)) for r in rotations]
    )
    out = np.empty((gallery.ciphertexts, 2, be.k, be.n), dtype=np.uint64)
    shifts = (rotations % diag_count).astype(np.int64)
    mac_rotated(gallery.diagonals, full, shifts, gathers, be.q, r32_for(be.q), out)
    clock.lap("multiply_accumulate")
    return out


def _centered_binomial(rng: np.random.Generator, shape: tuple[int, ...]) -> npt.NDArray[np.int64]:
    """Centered binomial with η = 21 (σ ≈ 3.24, |x| ≤ 21): SEAL's σ = 3.2 error, cheaply."""
    bits = rng.integers(0, 1 << 42, size=shape, dtype=np.int64)
    low = np.bitwise_count(bits & ((1 << 21) - 1)).astype(np.int64)
    high = np.bitwise_count(bits >> 21).astype(np.int64)
    return np.asarray(low - high, dtype=np.int64)


def _small_polys(
    params: ParameterSet, count: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Per result ciphertext: h (sparse ternary), u (ternary), F (flood), e2 — (count, 4, N)."""
    n = params.poly_degree
    out = np.empty((count, 4, n), dtype=np.int64)
    out[:, 0] = 0
    # h: mask_weight signed unit coefficients (collisions only lower the L1 norm, so
    # |h(ζ)| <= mask_weight still bounds the mask A <= mask_weight**2 + 1).
    pos = rng.integers(0, n, size=(count, params.mask_weight))
    signs = rng.integers(0, 2, size=(count, params.mask_weight)) * 2 - 1
    np.add.at(out[:, 0], (np.arange(count)[:, None], pos), signs)
    out[:, 1] = rng.integers(-1, 2, size=(count, n), dtype=np.int8)
    bound = 1 << params.flood_bits
    out[:, 2] = rng.integers(-bound, bound + 1, size=(count, n), dtype=np.int64)
    out[:, 3] = _centered_binomial(rng, (count, n))
    return out


def score_masked(
    probe: Probe,
    gallery: Gallery,
    threshold: float,
    public: PublicKeyBundle,
    *,
    rng: np.random.Generator | None = None,
    profile: dict[str, float] | None = None,
) -> tuple[MaskedResult, QueryMapping]:
    """Score ``probe`` against every gallery row; disclose only sign(score − threshold).

    ``public`` must be the bundle the key registry returned for ``probe.key_id``.
    Returns the result for the gate and the mapping the service keeps secret.
    ``profile``, if given, receives seconds spent per stage (for the benchmark).
    """
    clock = _Clock(profile)
    if not -1.0 < threshold < 1.0:
        raise ValueError("threshold must be in (-1, 1)")
    _check_inputs(probe, gallery, public)
    rng = rng or _default_rng()
    params = probe.params
    be = backend(params)
    count = gallery.ciphertexts
    rotations = rng.integers(0, params.slots, size=count).astype(np.uint64)
    y = _mac(be, probe, gallery, public, rotations, clock)

    scale_bits = params.probe_scale_bits + params.template_scale_bits
    tau = np.array([round(threshold * 2.0**scale_bits) % int(p) for p in be.q], dtype=np.uint64)
    small = be.ntt_fast(_small_polys(params, count, rng).reshape(count * 4, -1))
    small = small.reshape(count, 4, be.k, be.n)
    clock.lap("mask_sampling")
    rot_perms = np.stack([be.galois_perm(be.rotation_elt(int(r))) for r in rotations])
    order = rng.permutation(count)
    out = np.empty((count, 2, be.k, be.n), dtype=np.uint32)
    mask_combine(
        y,
        gallery.pad_bias,
        tau,
        small,
        public.public_residues(),
        rot_perms,
        be.galois_perm(be.conj_elt),
        be.q,
        mu_for(be.q),
        order,
        out,
    )
    clock.lap("masking")
    query_id = rng.bytes(16)
    result = MaskedResult(params=params, key_id=probe.key_id, query_id=query_id, polys=out)
    mapping = QueryMapping(
        query_id=query_id,
        gallery_version=gallery.version,
        size=len(gallery),
        slots=params.slots,
        order=tuple(int(c) for c in order),
        rotations=tuple(int(r) for r in rotations),
    )
    return result, mapping


def resolve(positions: Iterable[int], mapping: QueryMapping) -> list[int]:
    """Gallery rows behind the revealed positions (sorted, unique).

    A position outside the result, or one that lands on an empty slot (which the
    masking makes negative, so an honest gate never reports it), raises
    ``MalformedInputError``.
    """
    rows: set[int] = set()
    count = len(mapping.order)
    for pos in positions:
        if not isinstance(pos, int) or not 0 <= pos < count * mapping.slots:
            raise MalformedInputError("revealed position out of range")
        block = mapping.order[pos // mapping.slots]
        slot = (pos % mapping.slots + mapping.rotations[block]) % mapping.slots
        row = block * mapping.slots + slot
        if row >= mapping.size:
            raise MalformedInputError("revealed position is an empty slot")
        rows.add(row)
    return sorted(rows)


def debug_scores(
    probe: Probe, gallery: Gallery, public: PublicKeyBundle, keys: GateKeyBundle
) -> npt.NDArray[np.float64]:
    """Unmasked decrypted scores, for tests and benchmarks only (needs the secret key).

    Never used by the protocol: it exists to measure HE fidelity against numpy.
    """
    _check_inputs(probe, gallery, public)
    be = backend(probe.params)
    y = _mac(be, probe, gallery, public, np.zeros(gallery.ciphertexts, dtype=np.uint64))
    _, s = keys.secret_residues()
    q = be.q.reshape(-1, 1)
    scale = 2.0 ** (probe.params.probe_scale_bits + probe.params.template_scale_bits)
    scores = [
        be.decode_residues((y[c, 0] + y[c, 1] * s % q) % q, scale).real for c in range(len(y))
    ]
    return np.concatenate(scores)[: len(gallery)]

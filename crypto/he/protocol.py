"""The match protocol of the brief, as four functions.

1. gate     ``encrypt_probe(keys, template) → Probe``
2. service  ``score_masked(probe, gallery, threshold, public) → (MaskedResult, QueryMapping)``
3. gate     ``reveal(keys, masked) → positions``  (positions only; values never leave)
4. service  ``resolve(positions, mapping) → gallery rows that matched``

Masking (step 2), per query and per result ciphertext c, all on NTT residues:

* subtract the threshold and push empty slots to −pad_bias (always negative);
* add a flooding polynomial with coefficients uniform in [−2**flood_bits, 2**flood_bits);
* rotate the slots by a fresh uniform r_c (a rotation is a permutation of NTT residues:
  the kernel reads the probe at the rotated offset, so the result stays under the
  gate's key s without a key switch);
* keep only the real part and scale each slot by a fresh positive A_k = 1 + |h(ζ_k)|²
  (h a fresh sparse ternary polynomial, so A_k ∈ [1, w² + 1] exactly real): the result
  (c0, c1) has a conjugation-symmetric c0 and decrypts, with the implied third part
  conj(c1), under (1, s, conj(s)) to 2·Re(A ⊙ scores);
* rerandomise with a fresh public-key encryption of zero (the flood is its c0 error);
* shuffle the order of the result ciphertexts.

The per-ciphertext randomness (A, u, F, e2 and their NTTs) is independent of the
probe, gallery and key, so it is produced ahead of time by ``crypto.he.masks.MaskPool``
and each unit is used once; an empty pool means generating it now (slower, as safe).

The gate sees A_k·(score_k − τ) + noise: its sign, and a magnitude drawn afresh each time.
"""

from __future__ import annotations

import os
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
from crypto.he import decrypt
from crypto.he._inputs import mask_units, primes, query_layout, query_randomness, tau_residues
from crypto.he._seal import Backend, backend
from crypto.he._specs import FusedScore, ProbeExpansion
from crypto.he.gallery import Gallery
from crypto.he.keys import GateKeyBundle, PublicKeyBundle
from crypto.he.masks import MaskPool
from crypto.he.params import ParameterSet
from crypto.he.prepared import PreparedQuery, score_prepared
from crypto.he.rotkeys import rotate_all
from crypto.he.wire import SEED_BYTES, MaskedResult, Probe, expand_seed, seed_words

__all__ = ["QueryMapping", "encrypt_probe", "resolve", "reveal", "score_masked"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


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
    seed: bytes | None = None,
) -> Probe:
    """Encrypt an L2-normalised template (d floats) under the gate's own key.

    The gate uses its *secret* key (symmetric CKKS encryption): the noise is smaller
    than public-key encryption and each ciphertext can be seeded, halving the upload.
    Under ckks-v1 it sends ``baby_steps`` copies of the packed probe, pre-rotated in the
    clear; under single-ciphertext sets (ckks-v2) exactly one, and the service rotates
    it with the gate's rotation keys.
    ``rng`` only chooses the seeds (tests); SEAL draws the encryption noise.

    ``seed`` (single-ciphertext sets only) is the seed of ``a`` the gate committed to
    in advance so the service could prepare the query (``crypto.he.prepared``). The
    caller must use a committed seed for one template only: two templates under one
    ``a`` would reveal their difference to the service.
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
    if seed is not None and (baby != 1 or len(seed) != SEED_BYTES):
        raise MalformedInputError(f"a committed seed is {SEED_BYTES} bytes, for one ciphertext")
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
        if seed is None:
            seed_i = rng.bytes(SEED_BYTES) if rng is not None else os.urandom(SEED_BYTES)
        else:
            seed_i = seed
        a = expand_seed(params, seed_i)
        c0[i] = ((message + q - a * s % q) % q).astype(np.uint32)
        seeds.append(seed_i)
    return Probe(params=params, key_id=keys.key_id, dim=v.shape[0], seeds=tuple(seeds), c0=c0)


def reveal(keys: GateKeyBundle, masked: MaskedResult) -> list[int]:
    """Decrypt a masked result and return the positions whose value is positive.

    Positions are ``ciphertext_index · slots + slot``. The decrypted values themselves are
    dropped here: they must never leave the gate (CKKS key-recovery risk).
    """
    values = _masked_values(keys, masked)
    return [int(x) for x in np.flatnonzero(values.reshape(-1) > 0)]


def _masked_values(keys: GateKeyBundle, masked: MaskedResult) -> npt.NDArray[np.float64]:
    """Decrypted real parts, shape (count, slots). Gate-internal; tests use it too.

    On the residues, all ciphertexts at once (``crypto.he.decrypt``) where the parameter
    set allows; otherwise through SEAL plaintexts (``_masked_values_seal``).
    """
    _check_same(keys.params, masked.params, keys.key_id, masked.key_id)
    if masked.rounded is not None:
        return decrypt.rounded_values(keys, masked.rounded)
    if decrypt.supports(keys.params):
        return decrypt.masked_values(keys, masked.residues())
    return _masked_values_seal(keys, masked)


def _masked_values_seal(keys: GateKeyBundle, masked: MaskedResult) -> npt.NDArray[np.float64]:
    """``_masked_values`` one ciphertext at a time, decoded by SEAL (any parameter set)."""
    be = backend(keys.params)
    _, s = keys.secret_residues()
    conj = be.galois_perm(be.conj_elt)
    sc = s[:, conj]
    q = be.q.reshape(-1, 1)
    scale = 2.0 ** (keys.params.probe_scale_bits + keys.params.template_scale_bits)
    polys = masked.residues().astype(np.uint64)
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


def _expand_probe(
    be: Backend, probe: Probe, public: PublicKeyBundle, clock: Clock | None = None
) -> npt.NDArray[np.uint32]:
    """All D rotations of the packed probe, (D, 2, k, N) uint32 in slot order."""
    params = probe.params
    diag_count, baby = params.probe_layout(probe.dim)
    full = np.empty((diag_count, 2, be.k, be.n), dtype=np.uint32)
    ProbeExpansion(
        c0=probe.c0,
        c1_words=seed_words(params, probe.seeds),
        primes=primes(be),
        to_ntt=be.slot_to_ntt,
        out=full,
    ).run()
    if params.single_ciphertext:
        # One uploaded ciphertext: the D − 1 rotations by hoisted key switching.
        keys = public.rotation_key_pair()
        if clock is not None:
            clock.lap("probe_expand")
        rotate_all(params, full[0].copy(), keys, full)
        if clock is not None:
            clock.lap("rotations")
    elif diag_count > baby:
        # d > 2·max_probe_ciphertexts only: SEAL rotations by ``baby`` (key switching),
        # in SEAL's own order.
        galois = public.galois()
        scale = 2.0**params.probe_scale_bits
        to_ntt = be.slot_to_ntt
        for j in range(baby, diag_count):
            prev = np.empty((2, be.k, be.n), dtype=np.uint64)
            prev[..., to_ntt] = full[j - baby]
            full[j] = be.to_slot_order(be.rotate(prev, scale, baby, galois))
    return full


def _check_inputs(probe: Probe, gallery: Gallery, public: PublicKeyBundle) -> None:
    _check_same(public.params, probe.params, public.key_id, probe.key_id)
    if gallery.params.hash != probe.params.hash:
        raise ParameterMismatchError("gallery and probe use different parameter sets")
    if gallery.dim != probe.dim:
        raise GalleryError(f"probe has dimension {probe.dim}, gallery {gallery.dim}")


class Clock:
    """Accumulates stage timings into ``sink`` (no-op when ``sink`` is None)."""

    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.sink is not None:
            now = time.perf_counter()
            self.sink[stage] = self.sink.get(stage, 0.0) + now - self.last
            self.last = now


def _score_kernel(
    be: Backend,
    probe_full: npt.NDArray[np.uint32],
    gallery: Gallery,
    threshold: float,
    units: npt.NDArray[np.uint32],
    public: PublicKeyBundle,
    rotations: I64,
    order: I64,
) -> npt.NDArray[np.uint32]:
    out = np.empty((gallery.ciphertexts, 2, be.k, be.n), dtype=np.uint32)
    FusedScore(
        diagonals=gallery.diagonals,
        pad=gallery.pad_bias,
        probe=probe_full,
        tau=tau_residues(be, gallery, threshold),
        masks=units,
        pk=public.public_slot_residues(),
        layout=query_layout(gallery.params, rotations, order),
        primes=primes(be),
        to_ntt=be.slot_to_ntt,
        out=out,
    ).run()
    return out


def score_masked(
    probe: Probe,
    gallery: Gallery,
    threshold: float,
    public: PublicKeyBundle,
    *,
    rng: np.random.Generator | None = None,
    profile: dict[str, float] | None = None,
    pool: MaskPool | None = None,
    prepared: PreparedQuery | None = None,
) -> tuple[MaskedResult, QueryMapping]:
    """Score ``probe`` against every gallery row; disclose only sign(score − threshold).

    ``public`` must be the bundle the key registry returned for ``probe.key_id``.
    Returns the result for the gate and the mapping the service keeps secret.

    Mask material comes from ``pool`` (default: this process's ``default_pool``, filled
    in idle time); an empty pool falls back to generating it now. ``prepared`` (from
    ``prepare_query`` for this probe's key and seed and this gallery) supplies the
    template-independent half, random choices included, and is claimed (single use):
    ``PreparedQueryError`` if it does not fit or was used. An injected ``rng``
    (tests) makes every random choice from it and bypasses pools. ``profile``, if given,
    receives seconds spent per stage (for the benchmark).
    """
    clock = Clock(profile)
    if not -1.0 < threshold < 1.0:
        raise ValueError("threshold must be in (-1, 1)")
    _check_inputs(probe, gallery, public)
    params = probe.params
    be = backend(params)
    count = gallery.ciphertexts
    if prepared is not None:
        out = score_prepared(be, probe, gallery, threshold, public, prepared)
        rotations, order, query_id = prepared.rotations, prepared.order, prepared.query_id
        clock.lap("score_prepared")
    else:
        rotations, order, query_id = query_randomness(count, params.slots, rng)
        full = _expand_probe(be, probe, public, clock)
        clock.lap("probe_expand")
        units = mask_units(params, count, rng, pool)
        clock.lap("mask_material")
        out = _score_kernel(be, full, gallery, threshold, units, public, rotations, order)
        clock.lap("score_and_mask")
    result = MaskedResult(
        params=params,
        key_id=probe.key_id,
        query_id=query_id,
        polys=out,
        c1_rounded=None if prepared is None else prepared.c1_rounded,
    )
    mapping = QueryMapping(
        query_id=query_id,
        gallery_version=gallery.version,
        size=len(gallery),
        slots=params.slots,
        order=tuple(int(c) for c in order),
        rotations=tuple(int(r) for r in rotations),
    )
    clock.lap("result")
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

    Never used by the protocol: it exists to measure HE fidelity against numpy. It runs
    the production kernel with neutral mask material (A = 1, u = F = e2 = 0), no
    rotation, the identity order and τ = 0, so the result decrypts to 2·score.
    """
    _check_inputs(probe, gallery, public)
    params = probe.params
    be = backend(params)
    count = gallery.ciphertexts
    units = np.zeros((count, 3, be.k, be.n), dtype=np.uint32)
    units[:, 0, :, : params.slots] = 1
    out = _score_kernel(
        be,
        _expand_probe(be, probe, public),
        gallery,
        0.0,
        units,
        public,
        np.zeros(count, dtype=np.int64),
        np.arange(count, dtype=np.int64),
    )
    result = MaskedResult(params=params, key_id=probe.key_id, query_id=bytes(16), polys=out)
    return _masked_values(keys, result).reshape(-1)[: len(gallery)] / 2.0

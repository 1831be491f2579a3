"""Rotation keys and hoisted rotations: how a gate uploads a single ciphertext.

The matching kernel needs every rotation rot_j(u), j < D, of the packed probe
(``docs/crypto.md``, "Packing"). With parameter sets that have ``switch_primes``
(ckks-v2) the gate uploads **one** ciphertext and, once per key, a set of rotation
keys; the service derives the D − 1 rotations itself by key switching on the NTT
residues, *hoisted*: the expensive digit decomposition is done once per source
ciphertext and shared by all its rotations (``crypto/he/_keyswitch.py``).

Baby-step/giant-step keys: keys exist for steps 1..B−1 and B, 2B, …, (G−1)B
(``ParameterSet.rotation_key_steps``). Rotation j = g·B + b is a giant step of the
uploaded ciphertext (hoisted over g) followed by a baby step (hoisted over b): D − 1
key switches for D diagonals, with B + G − 2 keys instead of D − 1. A rotation made of
two switches carries two rounding errors (≈ 15 coefficient units each, ``docs/crypto.md``).

Key switching uses veilmatch's own special modulus P = Π ``switch_primes`` (not
SEAL's): two primes < 2**31 so every limb is uint32 like the data limbs. The keys live
modulo Q·P, which the parameter set keeps within the HE-standard bound for 128 bits.

Rotation keys wire format, version 1 (inside the public key bundle)::

    magic "VMRK" | version u8 = 1 | params hash 32 B | count u16
    | count × (step u16 | seed 32 B | b residues k·L·N u32, slot order)

Each key is seeded: its ``a`` part (k digits × L limbs) is expanded from the seed with
AES-256-CTR, so only ``b`` travels.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numba
import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from crypto.errors import CryptoError, LayoutError, MalformedInputError, OversizedInputError
from crypto.he import _keyswitch as ks
from crypto.he._specs import KernelSpecError, check_array
from crypto.he.params import ParameterSet, get_parameter_set

if TYPE_CHECKING:  # SEAL is imported lazily, only where a backend is made
    from crypto.he._seal import Backend

__all__ = [
    "RotationKeyPair",
    "RotationKeys",
    "RotationPlan",
    "SwitchContext",
    "generate_rotation_keys",
    "rotate_all",
    "steps_needed",
]

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

_MAGIC = b"VMRK"
_VERSION = 1
_HEAD = struct.Struct("<4sB32sH")
_ENTRY = struct.Struct("<H32s")
SEED_BYTES = 32
#: Coefficients of the key errors: centred binomial with η = 21 (σ ≈ 3.24, SEAL's 3.2).
_ETA = 21


def _primitive_root(q: int, order: int) -> int:
    """Smallest element of multiplicative order exactly ``order`` (a power of two) mod q."""
    for g in range(2, q):
        root = pow(g, (q - 1) // order, q)
        if pow(root, order // 2, q) == q - 1:
            return root
    raise ValueError(f"no primitive {order}-th root of unity mod {q}")


def _bitrev(n: int) -> npt.NDArray[np.int64]:
    bits = n.bit_length() - 1
    return np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n)], dtype=np.int64)


@dataclass(frozen=True)
class SwitchContext:
    """Transform tables and constants for all limbs (data primes, then switch primes).

    Built once per process and parameter set (``context``), and checked on
    construction: the data-limb NTT must equal SEAL's bit for bit, every inverse must
    invert, and SEAL's NTT order must be the textbook bit-reversed one the switch limbs
    use (otherwise a rotation would not be the same shift in every limb).
    """

    params: ParameterSet
    q: U64  # (L,)
    psi: U64  # (L, N) bit-reversed powers of ψ_l
    psi_shoup: U64
    ipsi: U64  # (L, N) bit-reversed powers of ψ_l^{-1}
    ipsi_shoup: U64
    n_inv: U64  # (L,)
    n_inv_shoup: U64
    crt: U64  # ModDown constants, in the order ``_keyswitch._mod_down`` documents
    p_mod_q: U64  # (k,) P mod q_i (the gadget factor in the keys)
    to_ntt: npt.NDArray[np.int64]  # (N,) slot position -> NTT index
    k: int  # number of data limbs
    tail: U64  # (L, 7, N/8) twiddles of the transposed last stages (_keyswitch.ntt_t)
    tail_shoup: U64
    itail: U64  # (L, 7, N/8) the same for the inverse
    itail_shoup: U64

    @functools.cached_property
    def to_t(self) -> npt.NDArray[np.int64]:
        """Slot position → flat index in the kernels' transposed-tail layout."""
        e = self.to_ntt
        n = self.params.poly_degree
        return np.ascontiguousarray((e % 8) * (n // 8) + e // 8)

    @functools.cached_property
    def from_t(self) -> npt.NDArray[np.int64]:
        """T-layout index → slot position (the inverse of ``to_t``)."""
        return np.ascontiguousarray(np.argsort(self.to_t))

    @property
    def tables(self) -> tuple[U64, ...]:
        """The limb tables the kernels take, in ``_keyswitch``'s documented order."""
        return (
            self.q,
            self.psi,
            self.psi_shoup,
            self.ipsi,
            self.ipsi_shoup,
            self.tail,
            self.tail_shoup,
            self.itail,
            self.itail_shoup,
            self.n_inv,
            self.n_inv_shoup,
        )

    @property
    def limbs(self) -> int:
        return int(self.q.shape[0])

    def ntt(self, polys: U64, limbs: npt.NDArray[np.int64]) -> U64:
        """NTT (SEAL order) of natural-order rows ``polys`` (R, N), row r in limb limbs[r]."""
        out = np.ascontiguousarray(polys, dtype=np.uint64).copy()
        ks.ntt_rows(out, limbs, self.tables)
        return out

    def intt(self, polys: U64, limbs: npt.NDArray[np.int64]) -> U64:
        out = np.ascontiguousarray(polys, dtype=np.uint64).copy()
        ks.intt_rows(out, limbs, self.tables)
        return out

    def signed_to_slots(self, coeffs: npt.NDArray[np.int64]) -> U64:
        """Small signed polynomials (R, N) → NTT residues in slot order, (R, L, N)."""
        rows, n = coeffs.shape
        lim = self.limbs
        q = self.q.astype(np.int64).reshape(1, lim, 1)
        natural = (coeffs[:, None, :] % q).astype(np.uint64).reshape(rows * lim, n)
        limbs = np.tile(np.arange(lim, dtype=np.int64), rows)
        done = self.ntt(natural, limbs).reshape(rows, lim, n)
        return np.ascontiguousarray(done[..., self.to_ntt])


def _check_reductions(primes: list[int], k: int, big_p: int) -> None:
    """``ValueError`` unless ``_keyswitch._mod`` is exact at every call site and limb:
    inner products (two products of residues < q_l), lifted digits (v + q_i < 3·q_i/2)
    and, on the k data limbs, the ModDown lift (< P + q_l)."""
    lifted = 3 * max(primes[:k]) // 2 + 1
    for limb, q in enumerate(primes):
        bounds = [2 * (q - 1) ** 2, lifted] + ([big_p + q] if limb < k else [])
        if not all(ks.reduction_fits(q, w) for w in bounds):
            raise ValueError(f"prime {q} is outside what the key-switching reduction handles")


@functools.lru_cache(maxsize=4)
def context(params: ParameterSet) -> SwitchContext:
    """The process-wide ``SwitchContext`` of a single-ciphertext parameter set."""
    from crypto.he._seal import backend

    if not params.single_ciphertext or len(params.switch_primes) != 2:
        raise ValueError(f"{params.name} has no two-prime switching modulus")
    pa, pb = params.switch_primes
    if not pb < pa < 2 * pb or max(params.data_primes) >= 1 << 31:
        raise ValueError("the ModDown kernel needs p_b < p_a < 2·p_b and primes < 2**31")
    be = backend(params)
    n = params.poly_degree
    k = len(params.data_primes)
    rev = _bitrev(n)
    if not np.array_equal(be.exponents, 2 * rev + 1):
        raise LayoutError("SEAL's NTT order is not the bit-reversed order rotations assume")
    seal_psi, _ = be.ntt_tables
    roots = [int(seal_psi[i, 1 << (n.bit_length() - 2)]) for i in range(k)]
    # psi_rev[n/2] = ψ^{bitrev(n/2)} = ψ^1: SEAL's own ψ per data prime.
    roots += [_primitive_root(p, 2 * n) for p in params.switch_primes]
    primes = [*params.data_primes, *params.switch_primes]
    lim = len(primes)
    psi = np.empty((lim, n), dtype=np.uint64)
    ipsi = np.empty((lim, n), dtype=np.uint64)
    for limb, (q, root) in enumerate(zip(primes, roots, strict=True)):
        inv = pow(root, -1, q)
        powers = np.empty(n, dtype=np.uint64)
        ipowers = np.empty(n, dtype=np.uint64)
        acc, iacc = 1, 1
        for e in range(n):
            powers[e], ipowers[e] = acc, iacc
            acc, iacc = acc * root % q, iacc * inv % q
        psi[limb] = powers[rev]
        ipsi[limb] = ipowers[rev]
    qv = np.array(primes, dtype=np.uint64)
    tail, itail = _tail(psi), _tail(ipsi)
    shoup = (psi << np.uint64(32)) // qv.reshape(-1, 1)
    ishoup = (ipsi << np.uint64(32)) // qv.reshape(-1, 1)
    n_inv = np.array([pow(n, -1, q) for q in primes], dtype=np.uint64)
    big_p = pa * pb
    _check_reductions(primes, k, big_p)
    ainv = pow(pa, -1, pb)
    crt_values = [ainv, (ainv << 32) // pb, big_p]
    for q in params.data_primes:
        pinv = pow(big_p, -1, q)
        crt_values += [pinv, (pinv << 32) // q, q * -(-(big_p // 2) // q)]
    crt = np.array(crt_values, dtype=np.uint64)
    ctx = SwitchContext(
        params=params,
        q=qv,
        psi=psi,
        psi_shoup=shoup,
        ipsi=ipsi,
        ipsi_shoup=ishoup,
        n_inv=n_inv,
        n_inv_shoup=(n_inv << np.uint64(32)) // qv,
        crt=crt,
        p_mod_q=np.array([big_p % q for q in params.data_primes], dtype=np.uint64),
        to_ntt=np.asarray(be.slot_to_ntt, dtype=np.int64),
        k=k,
        tail=tail,
        tail_shoup=(tail << np.uint64(32)) // qv.reshape(-1, 1, 1),
        itail=itail,
        itail_shoup=(itail << np.uint64(32)) // qv.reshape(-1, 1, 1),
    )
    _self_check(ctx, be)
    return ctx


def _tail(psi: U64) -> U64:
    """Per limb, the 7 twiddle rows of the three transposed stages (see ``_keyswitch``)."""
    n = psi.shape[1]
    c = np.arange(n // 8)
    rows = [n // 8 + c, n // 4 + 2 * c, n // 4 + 2 * c + 1]
    rows += [n // 2 + 4 * c + h for h in range(4)]
    return np.ascontiguousarray(np.stack([psi[:, r] for r in rows], axis=1))


def _self_check(ctx: SwitchContext, be: Backend) -> None:
    """Our data-limb NTT equals SEAL's; every limb's inverse inverts; rotation = shift."""
    n = ctx.params.poly_degree
    rng = np.random.default_rng(7)
    coeffs = rng.integers(-(1 << 20), 1 << 20, size=(1, n))
    ours = ctx.signed_to_slots(coeffs)[0]  # (L, N) slot order
    seal_order = be.ntt_fast(coeffs)[0]  # (k, N) SEAL order
    if not np.array_equal(ours[: ctx.k], seal_order[:, ctx.to_ntt]):
        raise LayoutError("the key-switching NTT does not reproduce SEAL's NTT")
    lim = np.arange(ctx.limbs, dtype=np.int64)
    natural = (coeffs % ctx.q.astype(np.int64).reshape(-1, 1)).astype(np.uint64)
    if not np.array_equal(ctx.intt(ctx.ntt(natural, lim), lim), natural):
        raise LayoutError("the key-switching inverse NTT does not invert")
    # σ_3 (rotation by one) in coefficients: X^i -> X^{3i} mod X^N + 1.
    moved = np.zeros_like(coeffs)
    idx = (3 * np.arange(n)) % (2 * n)
    np.add.at(moved[0], idx % n, np.where(idx >= n, -coeffs[0], coeffs[0]))
    rot = ctx.signed_to_slots(moved)[0]
    s = n // 2
    t = np.arange(s)
    shifted = np.concatenate([ours[:, (t + 1) % s], ours[:, s + (t + 1) % s]], axis=1)
    if not np.array_equal(rot, shifted):
        raise LayoutError("a rotation is not a shift in every key-switching limb")


# ---- keys -------------------------------------------------------------------------------


def expand_key_seed(params: ParameterSet, seed: bytes) -> U32:
    """The ``a`` part of one rotation key, (k, L, N) uint32 in slot order, from its seed.

    AES-256-CTR under SHA-256(domain ‖ parameter hash ‖ seed); 64-bit words reduced mod
    each limb's prime (bias < 2**-32).
    """
    k = len(params.data_primes)
    primes = np.array([*params.data_primes, *params.switch_primes], dtype=np.uint64)
    n = params.poly_degree
    count = k * len(primes) * n
    key = hashlib.sha256(b"veilmatch/he/rotation-key/v1\x00" + params.hash + seed).digest()
    prg = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()
    words = np.frombuffer(prg.update(bytes(8 * count)), dtype="<u8").reshape(k, len(primes), n)
    reduced: U32 = (words % primes.reshape(1, -1, 1)).astype(np.uint32)
    return reduced


def _centred_binomial(rows: int, n: int, rng: np.random.Generator | None) -> npt.NDArray[np.int64]:
    """Key errors: (rows, N) centred binomial η = 21 from os.urandom (or ``rng`` in tests)."""
    nbytes = rows * n * 2 * _ETA // 8 + 1
    raw = rng.bytes(nbytes) if rng is not None else os.urandom(nbytes)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[: rows * n * 2 * _ETA]
    pairs = bits.reshape(rows, n, 2, _ETA).sum(axis=3, dtype=np.int64)
    errors: npt.NDArray[np.int64] = pairs[..., 0] - pairs[..., 1]
    return errors


@dataclass(frozen=True)
class RotationKeys:
    """A gate's rotation keys: for each step, a seed (the ``a`` part) and ``b``.

    Invariant: ``steps`` equals ``params.rotation_key_steps`` and every residue of ``b``
    is below its limb's prime (checked on construction).
    """

    params: ParameterSet
    steps: tuple[int, ...]
    seeds: tuple[bytes, ...]
    b: U32 = field(repr=False)  # (K, k, L, N) slot order

    def __post_init__(self) -> None:
        p = self.params
        k, lim, n = len(p.data_primes), len(p.data_primes) + len(p.switch_primes), p.poly_degree
        if self.steps != p.rotation_key_steps or len(self.seeds) != len(self.steps):
            raise MalformedInputError(f"rotation keys do not cover {p.name}'s steps")
        if self.b.shape != (len(self.steps), k, lim, n) or self.b.dtype != np.uint32:
            raise MalformedInputError("rotation keys have the wrong shape")
        if any(len(s) != SEED_BYTES for s in self.seeds):
            raise MalformedInputError("rotation key seeds must be 32 bytes")
        primes = np.array([*p.data_primes, *p.switch_primes], dtype=np.uint32)
        if (self.b >= primes.reshape(1, 1, -1, 1)).any():
            raise MalformedInputError("rotation key has a residue out of range")

    @staticmethod
    def size_for(params: ParameterSet) -> int:
        k = len(params.data_primes)
        lim = k + len(params.switch_primes)
        per_key = _ENTRY.size + 4 * k * lim * params.poly_degree
        return _HEAD.size + len(params.rotation_key_steps) * per_key

    def to_bytes(self) -> bytes:
        parts = [_HEAD.pack(_MAGIC, _VERSION, self.params.hash, len(self.steps))]
        for step, seed, b in zip(self.steps, self.seeds, self.b, strict=True):
            parts.append(_ENTRY.pack(step, seed))
            parts.append(np.ascontiguousarray(b, dtype="<u4").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_size: int = 16 << 20) -> RotationKeys:
        """Parse and validate; typed errors for oversized, malformed or foreign input."""
        if len(data) > max_size:
            raise OversizedInputError(f"rotation keys of {len(data)} bytes > {max_size}")
        if len(data) < _HEAD.size:
            raise MalformedInputError("rotation keys truncated")
        magic, version, phash, count = _HEAD.unpack_from(data, 0)
        if magic != _MAGIC or version != _VERSION:
            raise MalformedInputError("not version-1 rotation keys")
        params = get_parameter_set(phash)
        if (
            not params.single_ciphertext
            or count != len(params.rotation_key_steps)
            or len(data) != cls.size_for(params)
        ):
            raise MalformedInputError("rotation keys length does not match their parameters")
        k = len(params.data_primes)
        lim = k + len(params.switch_primes)
        n = params.poly_degree
        per_key = _ENTRY.size + 4 * k * lim * n
        steps, seeds = [], []
        b = np.empty((count, k, lim, n), dtype=np.uint32)
        for i in range(count):
            off = _HEAD.size + i * per_key
            step, seed = _ENTRY.unpack_from(data, off)
            steps.append(step)
            seeds.append(seed)
            b[i] = np.frombuffer(
                data, dtype="<u4", count=k * lim * n, offset=off + _ENTRY.size
            ).reshape(k, lim, n)
        return cls(params=params, steps=tuple(steps), seeds=tuple(seeds), b=b)

    def expanded_a(self) -> U32:
        """All ``a`` parts, (K, k, L, N) uint32 slot order (≈ 4 MB for ckks-v2)."""
        return np.stack([expand_key_seed(self.params, seed) for seed in self.seeds])


def generate_rotation_keys(
    params: ParameterSet, secret_ntt: U64, *, rng: np.random.Generator | None = None
) -> RotationKeys:
    """Rotation keys for ``params.rotation_key_steps`` from the gate's secret key.

    ``secret_ntt``: the secret's data-level NTT residues (k, N) in SEAL's order
    (``GateKeyBundle.secret_residues``). Key for step j switches σ_j(s) → s:
    b_i = −a_i·s + e_i + [P]_{q_i}·σ_j(s) on limb q_i (the CRT gadget times P), mod
    every limb. Randomness: seeds and errors from os.urandom; ``rng`` only in tests.
    """
    ctx = context(params)
    n, k, lim = params.poly_degree, ctx.k, ctx.limbs
    # Recover the ternary coefficients of s, then its residues in every limb.
    coeffs = ctx.intt(secret_ntt[:1], np.zeros(1, dtype=np.int64))[0]
    q0 = int(ctx.q[0])
    signed = np.where(coeffs > q0 // 2, coeffs.astype(np.int64) - q0, coeffs.astype(np.int64))
    if np.abs(signed).max() > 1:
        raise LayoutError("the secret key is not ternary: unexpected SEAL key layout")
    s_slots = ctx.signed_to_slots(signed.reshape(1, n))[0]  # (L, N) uint64
    if not np.array_equal(s_slots[:k], secret_ntt[:, ctx.to_ntt]):
        raise LayoutError("secret key residues disagree between limbs")
    q = ctx.q.reshape(-1, 1)
    half = n // 2
    t = np.arange(half)
    steps = params.rotation_key_steps
    seeds = tuple(
        (rng.bytes(SEED_BYTES) if rng is not None else os.urandom(SEED_BYTES)) for _ in steps
    )
    errors = ctx.signed_to_slots(_centred_binomial(len(steps) * k, n, rng)).reshape(
        len(steps), k, lim, n
    )
    b = np.empty((len(steps), k, lim, n), dtype=np.uint32)
    for idx, (step, seed) in enumerate(zip(steps, seeds, strict=True)):
        shift = np.concatenate([(t + step) % half, half + (t + step) % half])
        s_rot = s_slots[:, shift]
        a = expand_key_seed(params, seed).astype(np.uint64)
        for i in range(k):
            v = (errors[idx, i] + q - a[i] * s_slots % q) % q
            v[i] = (v[i] + ctx.p_mod_q[i] * s_rot[i]) % q[i]
            b[idx, i] = v.astype(np.uint32)
    return RotationKeys(params=params, steps=steps, seeds=seeds, b=b)


# ---- service side -------------------------------------------------------------------------


def steps_needed(params: ParameterSet, diagonals: int) -> tuple[int, ...]:
    """The rotation-key steps ``rotate_all`` uses for ``diagonals`` rotations, in key order."""
    baby, _ = params.rotation_steps
    giants = (diagonals + baby - 1) // baby
    return tuple(range(1, min(baby, diagonals))) + tuple(baby * g for g in range(1, giants))


@dataclass(frozen=True)
class RotationKeyPair:
    """A gate's rotation keys as the key-switching kernel takes them: key i switches
    σ_{steps[i]}(s) → s, its ``b`` and expanded ``a`` parts each (K, k, L, N) uint32 in
    slot order. Named so the two same-shaped halves cannot be swapped at a call site;
    checked on construction (dtype, shapes, contiguity, one step per key)."""

    steps: tuple[int, ...]
    b: U32 = field(repr=False)
    a: U32 = field(repr=False)

    def __post_init__(self) -> None:
        shape = (len(self.steps), -1, -1, -1)
        check_array("rotation keys b", self.b, np.uint32, shape)
        check_array("rotation keys a", self.a, np.uint32, self.b.shape)
        if len(set(self.steps)) != len(self.steps) or min(self.steps, default=1) < 1:
            raise KernelSpecError("rotation key steps must be distinct and positive")


@dataclass(frozen=True)
class RotationPlan:
    """One batch of hoisted rotations, int64 (T,) each: task t writes
    σ_{steps[t]}(source ciphertext ``source[t]``) to ``out[target[t]]`` with rotation key
    ``key_index[t]``. Checked on construction: equal lengths, and each key index holds
    the key for its step (so steps and key indices cannot be confused)."""

    source: I64
    steps: I64
    key_index: I64
    target: I64

    def __post_init__(self) -> None:
        tasks = self.steps.shape[0] if isinstance(self.steps, np.ndarray) else -1
        for name in ("source", "steps", "key_index", "target"):
            check_array(name, getattr(self, name), np.int64, (tasks,))

    @classmethod
    def of(
        cls, keys: RotationKeyPair, source: list[int], steps: list[int], target: list[int]
    ) -> RotationPlan:
        index = {step: i for i, step in enumerate(keys.steps)}
        return cls(
            source=np.array(source, dtype=np.int64),
            steps=np.array(steps, dtype=np.int64),
            key_index=np.array([index[s] for s in steps], dtype=np.int64),
            target=np.array(target, dtype=np.int64),
        )

    def check(self, keys: RotationKeyPair, sources: int, targets: int) -> None:
        """``KernelSpecError`` unless every index is in range for these operands."""
        if self.steps.size == 0:
            return
        if self.source.min() < 0 or self.source.max() >= sources:
            raise KernelSpecError("a rotation source is out of range")
        if self.target.min() < 0 or self.target.max() >= targets:
            raise KernelSpecError("a rotation target is out of range")
        if self.key_index.min() < 0 or self.key_index.max() >= len(keys.steps):
            raise KernelSpecError("a rotation key index is out of range")
        if any(keys.steps[i] != s for i, s in zip(self.key_index, self.steps, strict=True)):
            raise KernelSpecError("a rotation uses the key of another step")


def rotate_all(params: ParameterSet, first: U32, keys: RotationKeyPair, out: U32) -> None:
    """Fill out[1..D−1] with rotations of out[0] (= ``first``), all under the gate's key.

    first: (2, k, N) uint32 slot order (the uploaded ciphertext); keys: the gate's
    rotation keys (all of ``params.rotation_key_steps``, or a subset holding
    ``steps_needed``); out: (D, 2, k, N) uint32. D − 1 key switches: giant steps g·B
    from the upload, then baby steps b from each giant (each source decomposed once:
    hoisting).
    """
    ctx = context(params)
    d = out.shape[0]
    baby, _ = params.rotation_steps
    out[0] = first
    giants = (d + baby - 1) // baby
    missing = set(steps_needed(params, d)) - set(keys.steps)
    if missing:
        raise CryptoError(f"no rotation key for steps {sorted(missing)}")
    if giants > 1:
        g_steps = [g * baby for g in range(1, giants)]
        plan = RotationPlan.of(keys, [0] * len(g_steps), g_steps, g_steps)
        _rotate(ctx, out[0:1, 0], out[0:1, 1], keys, plan, out)
    b_src, b_steps, b_dst = [], [], []
    for g in range(giants):
        for b in range(1, baby):
            if g * baby + b < d:
                b_src.append(g)
                b_steps.append(b)
                b_dst.append(g * baby + b)
    if b_src:
        sources = out[0 : giants * baby : baby]
        _rotate(
            ctx,
            np.ascontiguousarray(sources[:, 0]),
            np.ascontiguousarray(sources[:, 1]),
            keys,
            RotationPlan.of(keys, b_src, b_steps, b_dst),
            out,
        )


def _rotate(
    ctx: SwitchContext, c0: U32, c1: U32, keys: RotationKeyPair, plan: RotationPlan, out: U32
) -> None:
    """Decompose the sources (c0, c1), (G, k, N) each, once; then run ``plan`` into out."""
    n = ctx.params.poly_degree
    c0 = np.ascontiguousarray(c0)
    c1 = np.ascontiguousarray(c1)
    check_array("c0", c0, np.uint32, (-1, ctx.k, n))
    check_array("c1", c1, np.uint32, c0.shape)
    check_array("out", out, np.uint32, (-1, 2, ctx.k, n), writeable=True)
    check_array("rotation keys b", keys.b, np.uint32, (-1, ctx.k, ctx.limbs, n))
    plan.check(keys, c0.shape[0], out.shape[0])
    digits = np.empty((c1.shape[0], ctx.k, ctx.limbs, n), dtype=np.uint32)
    ks.decompose(c1, ctx.tables, ctx.to_t, ctx.from_t, digits)
    ks.rotate_hoisted(
        c0,
        digits,
        keys.b,
        keys.a,
        plan.source,
        plan.steps,
        plan.key_index,
        plan.target,
        ctx.tables,
        ctx.crt,
        ctx.to_t,
        ctx.from_t,
        numba.get_num_threads(),
        out,
    )

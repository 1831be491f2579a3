"""Versioned binary wire formats for probes and masked results.

Both formats carry the parameter hash and the gate key id, and their total size is
fully determined by the header: ``from_bytes`` refuses input over ``max_size`` before
reading anything, then checks magic, version, known parameters, the exact length, and
that every residue is below its prime. Residues travel as little-endian uint32 (the
data primes are < 2**31).

Probe, version 1 (gate → service)::

    magic "VMPB" | version u8 = 1 | params hash 32 B | key id 16 B | dim u16
    | count u16 (pre-rotated ciphertexts) | count × (seed 32 B | c0 residues k·N u32)

Each ciphertext is seeded: its c1 is ``expand_seed`` of the seed, so only c0 is sent.

Masked result, version 1 (service → gate)::

    magic "VMMR" | version u8 = 1 | params hash 32 B | key id 16 B | query id 16 B
    | count u32 | count × (2 polynomials × k·N u32)

A result ciphertext (c0, c1) decrypts, together with the implied third polynomial
conj(c1), under the key (1, s, conj(s)) — see ``docs/crypto.md``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from crypto.errors import MalformedInputError, OversizedInputError
from crypto.he.params import ParameterSet, get_parameter_set

__all__ = [
    "MAX_PROBE_BYTES",
    "MAX_RESULT_BYTES",
    "MaskedResult",
    "Probe",
    "expand_seed",
    "seed_words",
]

_PROBE_MAGIC = b"VMPB"
_RESULT_MAGIC = b"VMMR"
_VERSION = 1
_PROBE_HEAD = struct.Struct("<4sB32s16sHH")
_RESULT_HEAD = struct.Struct("<4sB32s16s16sI")
SEED_BYTES = 32
# Default parse limits: above any probe/result a released parameter set produces for
# d <= 512 and 1M templates. Callers that know more (the service) pass a tighter limit.
MAX_PROBE_BYTES = 16 << 20
MAX_RESULT_BYTES = 64 << 20

U32 = npt.NDArray[np.uint32]


def expand_seed(params: ParameterSet, seed: bytes) -> npt.NDArray[np.uint64]:
    """Uniform polynomial (k, N) mod each data prime from a 32-byte seed.

    PRG: AES-256-CTR (AES-NI, ~10× faster than SHAKE-256 here) under the key
    SHA-256(domain ‖ parameter hash ‖ seed), zero counter. 64-bit words reduced mod a
    31-bit prime: bias below 2**-32 per coefficient.
    """
    k = len(params.data_primes)
    words = seed_words(params, (seed,))[0]
    q = np.array(params.data_primes, dtype=np.uint64).reshape(k, 1)
    reduced: npt.NDArray[np.uint64] = words % q
    return reduced


def seed_words(params: ParameterSet, seeds: tuple[bytes, ...]) -> npt.NDArray[np.uint64]:
    """The PRG words behind ``expand_seed`` for many seeds, (m, k, N) uint64, unreduced.

    The service reduces them mod q itself (fused with its reordering); one buffer, no
    per-seed allocation.
    """
    k, n = len(params.data_primes), params.poly_degree
    stride = 8 * k * n
    zeros = bytes(stride)
    buf = bytearray(stride * len(seeds) + 15)  # update_into wants block_size − 1 spare
    view = memoryview(buf)
    for i, seed in enumerate(seeds):
        key = hashlib.sha256(b"veilmatch/he/seed/v1\x00" + params.hash + seed).digest()
        prg = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()
        prg.update_into(zeros, view[i * stride : (i + 1) * stride + 15])
    words: npt.NDArray[np.uint64] = np.frombuffer(buf, dtype="<u8", count=len(seeds) * k * n)
    return words.reshape(len(seeds), k, n)


def _check_residues(params: ParameterSet, arr: U32, what: str) -> None:
    if arr.ndim != 3 or arr.shape[1:] != (len(params.data_primes), params.poly_degree):
        raise MalformedInputError(f"{what} has the wrong shape")
    # The maximum of each row against its prime: no temporary mask as large as the
    # input (a result is ≈ 3 MB at 100k rows); rows are contiguous, so this vectorises.
    q = np.array(params.data_primes, dtype=np.uint32)
    if arr.size and (arr.max(axis=2) >= q).any():
        raise MalformedInputError(f"{what} has a residue out of range")


@dataclass(frozen=True)
class Probe:
    """An encrypted face template from one gate: ``count`` seeded ciphertexts."""

    params: ParameterSet
    key_id: str
    dim: int
    seeds: tuple[bytes, ...]
    c0: U32 = field(repr=False)  # (count, k, N)

    def __post_init__(self) -> None:
        _, baby = self.params.probe_layout(self.dim)
        if len(self.seeds) != baby or self.c0.shape[0] != baby:
            raise MalformedInputError(f"a dim-{self.dim} probe has {baby} ciphertexts")
        if any(len(s) != SEED_BYTES for s in self.seeds):
            raise MalformedInputError("probe seeds must be 32 bytes")
        _check_residues(self.params, self.c0, "probe")
        if len(bytes.fromhex(self.key_id)) != 16:
            raise MalformedInputError("key id must be 16 bytes")

    @staticmethod
    def size_for(params: ParameterSet, dim: int) -> int:
        """Exact serialized size in bytes of a probe for templates of ``dim``."""
        _, baby = params.probe_layout(dim)
        k, n = len(params.data_primes), params.poly_degree
        return _PROBE_HEAD.size + baby * (SEED_BYTES + 4 * k * n)

    def to_bytes(self) -> bytes:
        head = _PROBE_HEAD.pack(
            _PROBE_MAGIC,
            _VERSION,
            self.params.hash,
            bytes.fromhex(self.key_id),
            self.dim,
            len(self.seeds),
        )
        parts = [head]
        for seed, c0 in zip(self.seeds, self.c0, strict=True):
            parts.append(seed)
            parts.append(np.ascontiguousarray(c0, dtype="<u4").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_size: int = MAX_PROBE_BYTES) -> Probe:
        """Parse a probe; ``OversizedInputError`` if ``len(data) > max_size``."""
        if len(data) > max_size:
            raise OversizedInputError(f"probe of {len(data)} bytes > limit {max_size}")
        if len(data) < _PROBE_HEAD.size:
            raise MalformedInputError("probe truncated")
        magic, version, phash, kid, dim, count = _PROBE_HEAD.unpack_from(data, 0)
        if magic != _PROBE_MAGIC or version != _VERSION:
            raise MalformedInputError("not a version-1 probe")
        params = get_parameter_set(phash)
        try:
            expected = cls.size_for(params, dim)
            _, baby = params.probe_layout(dim)
        except ValueError as exc:
            raise MalformedInputError(f"probe dimension invalid: {exc}") from None
        if count != baby or len(data) != expected:
            raise MalformedInputError("probe length does not match its header")
        k, n = len(params.data_primes), params.poly_degree
        stride = SEED_BYTES + 4 * k * n
        seeds = []
        c0 = np.empty((count, k, n), dtype=np.uint32)
        for i in range(count):
            off = _PROBE_HEAD.size + i * stride
            seeds.append(data[off : off + SEED_BYTES])
            c0[i] = np.frombuffer(data, dtype="<u4", count=k * n, offset=off + SEED_BYTES).reshape(
                k, n
            )
        return cls(params=params, key_id=kid.hex(), dim=dim, seeds=tuple(seeds), c0=c0)


@dataclass(frozen=True)
class MaskedResult:
    """The masked scores of one query, as the gate receives them."""

    params: ParameterSet
    key_id: str
    query_id: bytes
    polys: U32 = field(repr=False)  # (count, 2, k, N)

    def __post_init__(self) -> None:
        k, n = len(self.params.data_primes), self.params.poly_degree
        if self.polys.ndim != 4 or self.polys.shape[1:] != (2, k, n) or self.polys.shape[0] < 1:
            raise MalformedInputError("masked result has the wrong shape")
        _check_residues(self.params, self.polys.reshape(-1, k, n), "masked result")
        if len(self.query_id) != 16 or len(bytes.fromhex(self.key_id)) != 16:
            raise MalformedInputError("masked result ids must be 16 bytes")

    @property
    def count(self) -> int:
        """Number of result ciphertexts (each holds ``params.slots`` positions)."""
        return int(self.polys.shape[0])

    @staticmethod
    def size_for(params: ParameterSet, count: int) -> int:
        k, n = len(params.data_primes), params.poly_degree
        return _RESULT_HEAD.size + count * 2 * 4 * k * n

    def to_bytes(self) -> bytes:
        head = _RESULT_HEAD.pack(
            _RESULT_MAGIC,
            _VERSION,
            self.params.hash,
            bytes.fromhex(self.key_id),
            self.query_id,
            self.count,
        )
        body = np.ascontiguousarray(self.polys, dtype="<u4")
        return b"".join((head, body.data.cast("B")))  # one copy of the residues

    @classmethod
    def from_bytes(cls, data: bytes, *, max_size: int = MAX_RESULT_BYTES) -> MaskedResult:
        """Parse a masked result; ``OversizedInputError`` if ``len(data) > max_size``."""
        if len(data) > max_size:
            raise OversizedInputError(f"masked result of {len(data)} bytes > limit {max_size}")
        if len(data) < _RESULT_HEAD.size:
            raise MalformedInputError("masked result truncated")
        magic, version, phash, kid, qid, count = _RESULT_HEAD.unpack_from(data, 0)
        if magic != _RESULT_MAGIC or version != _VERSION:
            raise MalformedInputError("not a version-1 masked result")
        params = get_parameter_set(phash)
        if count < 1 or len(data) != cls.size_for(params, count):
            raise MalformedInputError("masked result length does not match its header")
        k, n = len(params.data_primes), params.poly_degree
        polys = np.frombuffer(data, dtype="<u4", offset=_RESULT_HEAD.size).reshape(count, 2, k, n)
        return cls(params=params, key_id=kid.hex(), query_id=qid, polys=polys.copy())

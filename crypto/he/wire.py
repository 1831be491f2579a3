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

Masked result, version 1 (service → gate; residues, 32 bytes per watchlist row)::

    magic "VMMR" | version u8 = 1 | params hash 32 B | key id 16 B | query id 16 B
    | count u32 | count × (2 polynomials × k·N u32)

Masked result, version 2 (rounded, ``crypto/he/rounding.py``; 14 bytes per row)::

    magic "VMMR" | version u8 = 2 | params hash 32 B | key id 16 B | query id 16 B
    | count u32 | c0 bits u8 = 32 | c1 bits u8 = 40
    | count × (c0' N/2 × u32 | c1' N × 5-byte little-endian)

c0' and c1' are the result's integer coefficients switched from mod Q to mod 2^bits
(c0': only the first N/2, the rest follow from c0's conjugation symmetry). A result
ciphertext (c0, c1) decrypts, together with the implied third polynomial conj(c1),
under the key (1, s, conj(s)) — see ``docs/crypto.md``. ``MaskedResult.to_bytes`` writes
version 2 for parameter sets that support it (ckks-v2) and version 1 otherwise;
``from_bytes`` reads both and refuses any other version (``MalformedInputError``).
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
from crypto.he.rounding import C0_BITS, C1_BITS, RoundedPolys, round_polys
from crypto.he.rounding import supports as rounding_supports

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
#: Result format versions: residues (1) and rounded coefficients (2).
RESULT_RESIDUES = 1
RESULT_ROUNDED = 2
_PROBE_HEAD = struct.Struct("<4sB32s16sHH")
_RESULT_HEAD = struct.Struct("<4sB32s16s16sI")
_ROUNDED_BITS = struct.Struct("<BB")
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
    """The masked scores of one query, as the gate receives them.

    Exactly one of ``polys`` (the exact result: residues (count, 2, k, N) in SEAL's
    NTT order, what ``score_masked`` returns and version 1 carries) and ``rounded``
    (what version 2 carries, ``crypto.he.rounding``) is set.
    """

    params: ParameterSet
    key_id: str
    query_id: bytes
    polys: U32 | None = field(default=None, repr=False)  # (count, 2, k, N)
    rounded: RoundedPolys | None = field(default=None, repr=False)
    #: With ``polys``: their c1 rows already rounded (a prepared query does it in idle
    #: time), so writing version 2 rounds only the c0 rows.
    c1_rounded: npt.NDArray[np.uint64] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        k, n = len(self.params.data_primes), self.params.poly_degree
        if (self.polys is None) == (self.rounded is None):
            raise MalformedInputError("a masked result holds residues or a rounded body")
        if self.polys is not None:
            p = self.polys
            if p.ndim != 4 or p.shape[1:] != (2, k, n) or p.shape[0] < 1:
                raise MalformedInputError("masked result has the wrong shape")
            _check_residues(self.params, p.reshape(-1, k, n), "masked result")
        elif self.rounded is not None and self.rounded.c1.shape[1] != n:
            raise MalformedInputError("rounded result has the wrong ring degree")
        if self.c1_rounded is not None and (
            self.polys is None or self.c1_rounded.shape != (self.polys.shape[0], n)
        ):
            raise MalformedInputError("pre-rounded c1 rows do not match the residues")
        if len(self.query_id) != 16 or len(bytes.fromhex(self.key_id)) != 16:
            raise MalformedInputError("masked result ids must be 16 bytes")

    @property
    def count(self) -> int:
        """Number of result ciphertexts (each holds ``params.slots`` positions)."""
        if self.polys is not None:
            return int(self.polys.shape[0])
        assert self.rounded is not None
        return self.rounded.count

    def residues(self) -> U32:
        """The exact residues (results from ``score_masked`` and version 1 only)."""
        if self.polys is None:
            raise MalformedInputError("a rounded result has no residues")
        return self.polys

    @staticmethod
    def default_version(params: ParameterSet) -> int:
        """The format ``to_bytes`` writes for results under ``params``."""
        return RESULT_ROUNDED if rounding_supports(params) else RESULT_RESIDUES

    @staticmethod
    def size_for(params: ParameterSet, count: int, version: int | None = None) -> int:
        """Exact serialized size of ``count`` result ciphertexts in format ``version``
        (default: ``default_version(params)``)."""
        k, n = len(params.data_primes), params.poly_degree
        if (version or MaskedResult.default_version(params)) == RESULT_ROUNDED:
            per = RoundedPolys.bytes_per_ciphertext(n)
            return _RESULT_HEAD.size + _ROUNDED_BITS.size + count * per
        return _RESULT_HEAD.size + count * 2 * 4 * k * n

    def to_bytes(self, version: int | None = None) -> bytes:
        """Serialize in format ``version`` (default: ``default_version``). Rounding is
        one-way: a result parsed from version 2 cannot be written as version 1."""
        version = version or self.default_version(self.params)
        if version not in (RESULT_RESIDUES, RESULT_ROUNDED):
            raise MalformedInputError(f"no masked result version {version}")
        head = _RESULT_HEAD.pack(
            _RESULT_MAGIC,
            version,
            self.params.hash,
            bytes.fromhex(self.key_id),
            self.query_id,
            self.count,
        )
        if version == RESULT_RESIDUES:
            if self.polys is None:
                raise MalformedInputError("a rounded result cannot be written as version 1")
            body = np.ascontiguousarray(self.polys, dtype="<u4")
            return b"".join((head, body.data.cast("B")))  # one copy of the residues
        rounded = self.rounded or round_polys(self.params, self.residues(), c1=self.c1_rounded)
        return b"".join((head, _ROUNDED_BITS.pack(C0_BITS, C1_BITS), rounded.to_bytes()))

    @classmethod
    def from_bytes(cls, data: bytes, *, max_size: int = MAX_RESULT_BYTES) -> MaskedResult:
        """Parse a masked result of version 1 or 2; ``OversizedInputError`` if
        ``len(data) > max_size``, ``MalformedInputError`` for anything else wrong
        (another version, a length that does not match the header, bad residues)."""
        if len(data) > max_size:
            raise OversizedInputError(f"masked result of {len(data)} bytes > limit {max_size}")
        if len(data) < _RESULT_HEAD.size:
            raise MalformedInputError("masked result truncated")
        magic, version, phash, kid, qid, count = _RESULT_HEAD.unpack_from(data, 0)
        if magic != _RESULT_MAGIC or version not in (RESULT_RESIDUES, RESULT_ROUNDED):
            raise MalformedInputError("not a version-1 or version-2 masked result")
        params = get_parameter_set(phash)
        if count < 1 or len(data) != cls.size_for(params, count, version):
            raise MalformedInputError("masked result length does not match its header")
        k, n = len(params.data_primes), params.poly_degree
        ids = {"params": params, "key_id": kid.hex(), "query_id": qid}
        if version == RESULT_RESIDUES:
            body = np.frombuffer(data, dtype="<u4", offset=_RESULT_HEAD.size)
            return cls(**ids, polys=body.reshape(count, 2, k, n).copy())  # type: ignore[arg-type]
        if cls.default_version(params) != RESULT_ROUNDED:
            raise MalformedInputError(f"{params.name} results are not rounded")
        bits = _ROUNDED_BITS.unpack_from(data, _RESULT_HEAD.size)
        if bits != (C0_BITS, C1_BITS):
            raise MalformedInputError("rounded result with unsupported coefficient widths")
        start = _RESULT_HEAD.size + _ROUNDED_BITS.size
        rounded = RoundedPolys.from_bytes(memoryview(data)[start:], count, n)
        return cls(**ids, rounded=rounded)  # type: ignore[arg-type]

"""Named, validated argument groups for the numba kernels (the kernels' Python call sites).

The kernels in ``_kernels.py``, ``_prepared.py`` and ``_keyswitch.py`` take long
positional lists of same-dtype arrays: (rotations, position, visit) are three int64
(C,) arrays, a rotation key's ``b`` and ``a`` two uint32 arrays of one shape, the NTT
powers and their Shoup companions two more. Numba cannot tell a swapped pair apart, so a
swap at a call site would compute garbage silently (or, worse, something plausible).

Every kernel call therefore goes through one of the frozen objects below: the arrays
are grouped by role and named, each object checks on construction what it can (dtype,
shape, agreement of dimensions with its siblings, C-contiguity, writability of
outputs, and for the query layout the invariants that tell its permutations apart), and
its ``run`` method is the only place that unpacks it into the kernel's positional order.
Construction costs a few shape comparisons and O(C) checks per query: nothing next to
the kernels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crypto.errors import CryptoError
from crypto.he import _kernels, _prepared

__all__ = [
    "FusedScore",
    "KernelSpecError",
    "MaskMaterial",
    "NttTables",
    "PreparedHalf",
    "PreparedOnline",
    "Primes",
    "ProbeExpansion",
    "QueryLayout",
]

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


class KernelSpecError(CryptoError, ValueError):
    """A kernel argument group is inconsistent: a programming error inside ``crypto.he``
    (user input is validated, with its own errors, before it reaches a kernel)."""


def check_array(
    name: str,
    arr: np.ndarray,
    dtype: type[np.generic],
    shape: tuple[int, ...],
    *,
    writeable: bool = False,
) -> None:
    """``KernelSpecError`` unless ``arr`` has exactly ``dtype`` and ``shape`` (−1: any
    length), is C-contiguous, and (``writeable``) can be written."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.dtype(dtype):
        got = getattr(arr, "dtype", type(arr).__name__)
        raise KernelSpecError(f"{name}: dtype {got}, expected {np.dtype(dtype)}")
    if arr.ndim != len(shape) or any(
        w not in (-1, g) for g, w in zip(arr.shape, shape, strict=True)
    ):
        raise KernelSpecError(f"{name}: shape {arr.shape}, expected {shape}")
    if not arr.flags.c_contiguous:
        raise KernelSpecError(f"{name}: not C-contiguous")
    if writeable and not arr.flags.writeable:
        raise KernelSpecError(f"{name}: output is read-only")


@dataclass(frozen=True)
class Primes:
    """Per data prime: q, 2**32 mod q (the fold constant) and ⌊2**62 / q⌋ (Barrett).
    All uint64 (k,). Build with :meth:`of`; the constants are checked against q."""

    q: U64
    r32: U64
    mu: U64

    def __post_init__(self) -> None:
        k = self.q.shape[0] if isinstance(self.q, np.ndarray) else -1
        for name in ("q", "r32", "mu"):
            check_array(name, getattr(self, name), np.uint64, (k,))
        if not (
            np.array_equal(self.r32, _kernels.r32_for(self.q))
            and np.array_equal(self.mu, _kernels.mu_for(self.q))
        ):
            raise KernelSpecError("prime constants do not belong to these primes")

    @property
    def k(self) -> int:
        return int(self.q.shape[0])

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _cached(primes: tuple[int, ...]) -> Primes:
        q = np.array(primes, dtype=np.uint64)
        made = Primes(q=q, r32=_kernels.r32_for(q), mu=_kernels.mu_for(q))
        for arr in (made.q, made.r32, made.mu):
            arr.setflags(write=False)  # shared by every caller: never modified
        return made

    @classmethod
    def of(cls, q: npt.ArrayLike) -> Primes:
        """The constants of primes ``q`` (cached per tuple of primes)."""
        return cls._cached(tuple(int(x) for x in np.asarray(q).reshape(-1)))


@dataclass(frozen=True)
class QueryLayout:
    """How one query walks and places its C gallery blocks; int64 (C,) each.

    ``rotations[c]``: the secret slot rotation of block c, in [0, S); ``position[c]``:
    the result position of block c (the inverse of the secret result order);
    ``visit``: the blocks in the order the kernels walk them, sorted by rotation so
    consecutive rotated windows overlap in cache. Both are permutations of range(C);
    they are told apart by ``rotations[visit]`` being non-decreasing, which a swap
    breaks for all but a vanishing fraction of random orders (and the kernels only ever
    receive them by name). Build with :meth:`of`.
    """

    rotations: I64
    position: I64
    visit: I64

    def __post_init__(self) -> None:
        count = self.rotations.shape[0] if isinstance(self.rotations, np.ndarray) else -1
        for name in ("rotations", "position", "visit"):
            check_array(name, getattr(self, name), np.int64, (count,))
        # C is small (≈ 49 at 100k rows): one stacked sort checks both permutations.
        both = np.sort(np.stack((self.position, self.visit)), axis=1)
        if not (both == np.arange(count)).all():
            raise KernelSpecError("position or visit is not a permutation of the blocks")
        if count and (np.diff(self.rotations[self.visit]) < 0).any():
            raise KernelSpecError("visit does not walk the blocks in order of rotation")

    @property
    def count(self) -> int:
        return int(self.rotations.shape[0])

    @classmethod
    def of(cls, rotations: I64, order: I64, slots: int) -> QueryLayout:
        """From the query's secret choices: rotation per block and result order
        (``order[i]`` = block at result position i)."""
        rot = np.ascontiguousarray(rotations, dtype=np.int64)
        if rot.size and (rot.min() < 0 or rot.max() >= slots):
            raise KernelSpecError("a rotation is outside [0, slots)")
        return cls(
            rotations=rot,
            position=np.argsort(order).astype(np.int64),
            visit=np.argsort(rot, kind="stable").astype(np.int64),
        )


def _gallery_dims(diagonals: U32, pad: U32, k: int) -> tuple[int, int, int]:
    """(C, D, N) of an encoded gallery, checking its two arrays agree (``Gallery``)."""
    check_array("gallery", diagonals, np.uint32, (k, -1, -1, 2, -1, _kernels.GALLERY_BLOCK))
    _, blocks, count, _, diag, width = diagonals.shape
    n = 2 * blocks * width
    check_array("pad_bias", pad, np.uint32, (count, k, n))
    return count, diag, n


@dataclass(frozen=True)
class FusedScore:
    """Arguments of ``_kernels.score_and_mask`` (see its docstring for every layout):
    the whole masked result of one unprepared query."""

    diagonals: U32  # Gallery.diagonals
    pad: U32  # Gallery.pad_bias
    probe: U32  # (D, 2, k, N) all rotations of the probe, slot order
    tau: U64  # (k,) τ·Δ mod q
    masks: U32  # (C, 3, k, N) one unit of mask material per result position
    pk: U32  # (2, k, N) the gate's public key, slot order
    layout: QueryLayout
    primes: Primes
    to_ntt: I64  # (N,) slot position → NTT index
    out: U32 = field(repr=False)  # (C, 2, k, N) SEAL's NTT order

    def __post_init__(self) -> None:
        k = self.primes.k
        count, diag, n = _gallery_dims(self.diagonals, self.pad, k)
        check_array("probe", self.probe, np.uint32, (diag, 2, k, n))
        check_array("tau", self.tau, np.uint64, (k,))
        check_array("masks", self.masks, np.uint32, (count, 3, k, n))
        check_array("pk", self.pk, np.uint32, (2, k, n))
        check_array("to_ntt", self.to_ntt, np.int64, (n,))
        check_array("out", self.out, np.uint32, (count, 2, k, n), writeable=True)
        if self.layout.count != count:
            raise KernelSpecError("query layout and gallery disagree on the block count")

    def run(self) -> None:
        lay, pr = self.layout, self.primes
        _kernels.score_and_mask(
            self.diagonals,
            self.probe,
            self.pad,
            self.tau,
            self.masks,
            self.pk,
            lay.rotations,
            lay.position,
            lay.visit,
            pr.q,
            pr.r32,
            pr.mu,
            self.to_ntt,
            self.out,
        )


@dataclass(frozen=True)
class PreparedHalf:
    """Arguments of ``_prepared.prepare_half``: the template-independent half."""

    diagonals: U32
    pad: U32
    probe: U32  # (D, 2, k, N) rotations of (0, a) = (y0_j, y1_j), slot order
    masks: U32  # (C, 3, k, N)
    pk: U32  # (2, k, N)
    layout: QueryLayout
    primes: Primes
    ntt_to_slot: I64  # (N,) NTT index → slot position
    out1: U32 = field(repr=False)  # (C, k, N) c1 rows, SEAL's NTT order
    w0: U32 = field(repr=False)  # (C, k, 2, S)
    ar: U32 = field(repr=False)  # (C, k, 2, S)

    def __post_init__(self) -> None:
        k = self.primes.k
        count, diag, n = _gallery_dims(self.diagonals, self.pad, k)
        check_array("probe", self.probe, np.uint32, (diag, 2, k, n))
        check_array("masks", self.masks, np.uint32, (count, 3, k, n))
        check_array("pk", self.pk, np.uint32, (2, k, n))
        check_array("ntt_to_slot", self.ntt_to_slot, np.int64, (n,))
        # out1 is a strided view (the c1 rows of the result): rows contiguous suffice.
        if (
            self.out1.dtype != np.uint32
            or self.out1.shape != (count, k, n)
            or self.out1.strides[-1] != 4
            or not self.out1.flags.writeable
        ):
            raise KernelSpecError("out1: expected writeable uint32 (C, k, N) rows")
        check_array("w0", self.w0, np.uint32, (count, k, 2, n // 2), writeable=True)
        check_array("ar", self.ar, np.uint32, (count, k, 2, n // 2), writeable=True)
        if self.layout.count != count:
            raise KernelSpecError("query layout and gallery disagree on the block count")

    def run(self) -> None:
        lay, pr = self.layout, self.primes
        _prepared.prepare_half(
            self.diagonals,
            self.probe,
            self.pad,
            self.masks,
            self.pk,
            lay.rotations,
            lay.position,
            lay.visit,
            pr.q,
            pr.r32,
            pr.mu,
            self.ntt_to_slot,
            self.out1,
            self.w0,
            self.ar,
        )


@dataclass(frozen=True)
class PreparedOnline:
    """Arguments of ``_prepared.score_c0``: the online c0 rows of a prepared query."""

    diagonals: U32
    c0: U32  # (k, N) the uploaded c0, slot order
    w0: U32  # (C, k, 2, S) from ``PreparedHalf``
    ar: U32  # (C, k, 2, S)
    tau: U64  # (k,)
    layout: QueryLayout
    primes: Primes
    ntt_to_slot: I64  # (N,)
    out: U32 = field(repr=False)  # (C, 2, k, N); row 0 written

    def __post_init__(self) -> None:
        k = self.primes.k
        check_array("gallery", self.diagonals, np.uint32, (k, -1, -1, 2, -1, -1))
        _, blocks, count, _, _, width = self.diagonals.shape
        n = 2 * blocks * width
        check_array("c0", self.c0, np.uint32, (k, n))
        check_array("w0", self.w0, np.uint32, (count, k, 2, n // 2))
        check_array("ar", self.ar, np.uint32, (count, k, 2, n // 2))
        check_array("tau", self.tau, np.uint64, (k,))
        check_array("ntt_to_slot", self.ntt_to_slot, np.int64, (n,))
        check_array("out", self.out, np.uint32, (count, 2, k, n), writeable=True)
        if self.layout.count != count:
            raise KernelSpecError("query layout and gallery disagree on the block count")

    def run(self) -> None:
        lay, pr = self.layout, self.primes
        _prepared.score_c0(
            self.diagonals,
            self.c0,
            self.w0,
            self.ar,
            self.tau,
            lay.rotations,
            lay.position,
            lay.visit,
            pr.q,
            pr.r32,
            pr.mu,
            self.ntt_to_slot,
            self.out,
        )


@dataclass(frozen=True)
class ProbeExpansion:
    """Arguments of ``_kernels.expand_probe``: uploaded seeded ciphertexts → slot order."""

    c0: U32  # (m, k, N) SEAL's NTT order
    c1_words: U64  # (m, k, N) the seeds' PRG words, unreduced
    primes: Primes
    to_ntt: I64  # (N,)
    out: U32 = field(repr=False)  # (≥ m, 2, k, N)

    def __post_init__(self) -> None:
        k = self.primes.k
        check_array("c0", self.c0, np.uint32, (-1, k, -1))
        m, _, n = self.c0.shape
        check_array("c1_words", self.c1_words, np.uint64, (m, k, n))
        check_array("to_ntt", self.to_ntt, np.int64, (n,))
        check_array("out", self.out, np.uint32, (-1, 2, k, n), writeable=True)
        if self.out.shape[0] < m:
            raise KernelSpecError("out has fewer rows than the probe has ciphertexts")

    def run(self) -> None:
        _kernels.expand_probe(self.c0, self.c1_words, self.primes.q, self.to_ntt, self.out)


@dataclass(frozen=True)
class NttTables:
    """SEAL-order NTT powers ψ^bitrev(i) and their Shoup companions, uint32 (k, N)."""

    psi_rev: U32
    psi_shoup: U32

    def __post_init__(self) -> None:
        shape = self.psi_rev.shape if isinstance(self.psi_rev, np.ndarray) else (-1, -1)
        check_array("psi_rev", self.psi_rev, np.uint32, shape)
        check_array("psi_shoup", self.psi_shoup, np.uint32, shape)
        # Shoup companions are ⌊w·2**32 / q⌋ ≥ w for q < 2**32 (equal only for w = 0):
        # a swap shows in the first row's non-trivial powers.
        if shape[1] > 1 and np.any(self.psi_shoup[:, 1:] < self.psi_rev[:, 1:]):
            raise KernelSpecError("psi_shoup is not the Shoup companion of psi_rev")


@dataclass(frozen=True)
class MaskMaterial:
    """Arguments of ``_kernels.mask_units`` / ``mask_units_parallel``."""

    words: U64  # (count, words per unit) uniform
    weight: int  # nonzero coefficients of the sparse mask polynomial h
    flood_bits: int  # the flood is uniform in [−2**flood_bits, 2**flood_bits)
    primes: Primes
    ntt: NttTables
    to_ntt: I64  # (N,)
    out: U32 = field(repr=False)  # (count, 3, k, N)

    def __post_init__(self) -> None:
        k = self.primes.k
        n = self.to_ntt.shape[0] if isinstance(self.to_ntt, np.ndarray) else -1
        check_array("out", self.out, np.uint32, (-1, 3, k, n), writeable=True)
        count = self.out.shape[0]
        per_unit = _kernels.WORDS_PER_COEFF * n + self.weight
        check_array("words", self.words, np.uint64, (count, per_unit))
        check_array("to_ntt", self.to_ntt, np.int64, (n,))
        if self.ntt.psi_rev.shape != (k, n):
            raise KernelSpecError("NTT tables do not match the primes and ring degree")
        if not 0 < self.flood_bits < 62 or not 0 < self.weight < n:
            raise KernelSpecError("mask weight or flood width out of range")

    def run(self, *, parallel: bool) -> None:
        kernel = _kernels.mask_units_parallel if parallel else _kernels.mask_units
        kernel(
            self.words,
            self.weight,
            self.flood_bits,
            self.primes.q,
            self.primes.mu,
            self.ntt.psi_rev,
            self.ntt.psi_shoup,
            self.to_ntt,
            self.out,
        )

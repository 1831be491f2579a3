"""Rounded masked results: the result ciphertexts switched to a power-of-two modulus.

A masked result ciphertext (c0, c1) lives mod Q = q0·q1 ≈ 2^62: 2 polynomials × N
coefficients × 62 bits for S = N/2 watchlist rows, 32 bytes per row on the wire as
uint32 residues. The gate needs only the sign of each slot, and everything below the
noise floor is noise anyway, so before a result leaves the service its coefficients are
*modulus-switched* from Z_Q to Z_{2^b} and rounded (``docs/crypto.md``, "Rounded
results"):

* c1 → c1' = ⌊c1·2^40 / Q⌉ mod 2^40 (``C1_BITS``): N coefficients of 5 bytes;
* c0 → c0' = ⌊c0·2^32 / Q⌉ mod 2^32 (``C0_BITS``): only the first N/2 coefficients,
  since the masked c0 is conjugation-symmetric (σ_conj(c0) = c0 ⇔ c0_{N−t} = −c0_t and
  c0_{N/2} = 0; checked here before anything is dropped, and rebuilt by the gate).

The gate decrypts m' = c0'·2^8 + c1'·s + σ_conj(c1')·σ_conj(s) mod 2^40, which is
m·2^40/Q plus the rounding noise e0·2^8 + e1·s + σ_conj(e1·s) (|e0|, |e1| ≤ 1/2 per
coefficient). 2 bytes + 2 × 5 bytes per 2 rows: **14 bytes per row** (28,672 bytes per
result ciphertext instead of 65,536).

Security: the rounded ciphertext is a public, deterministic function of the ciphertext
the gate would otherwise have received (no key, no secret randomness), so it cannot
tell the gate anything the full one would not: the masking argument carries over
unchanged. Correctness: the rounding noise must stay far below the smallest decisive
signal; ``noise_budget`` computes it and the parameter set is refused if it does not.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crypto.errors import CryptoError, MalformedInputError, ParameterMismatchError
from crypto.he import _rounding
from crypto.he._kernels import mu_for
from crypto.he._specs import check_array
from crypto.he.params import ParameterSet
from crypto.he.rotkeys import context

__all__ = [
    "C0_BITS",
    "C1_BITS",
    "NoiseBudget",
    "RoundedPolys",
    "noise_budget",
    "round_polys",
    "supports",
]

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]

#: Bits kept per coefficient of a rounded result's c0 and c1.
C0_BITS = 32
C1_BITS = 40
_C1_BYTES = C1_BITS // 8

#: Worst slot of a uniform ternary secret, as a multiple of the mean of |s(ζ)|² (2N/3):
#: |s(ζ)|² is close to exponential, so some slot exceeds 23× its mean with probability
#: ≈ N·e^−23 ≈ 4·10⁻⁷ per key at N = 4096.
_SECRET_TAIL = 23.0


@dataclass(frozen=True)
class RoundedPolys:
    """A rounded result body: per ciphertext, c0' (the first N/2 coefficients of c0
    switched to mod 2^C0_BITS) as uint32 (C, N/2) and c1' (all N coefficients switched
    to mod 2^C1_BITS) as uint64 (C, N), every value below 2^C1_BITS (checked)."""

    c0: U32 = field(repr=False)
    c1: npt.NDArray[np.uint64] = field(repr=False)

    def __post_init__(self) -> None:
        c0, c1 = self.c0, self.c1
        if (
            not isinstance(c0, np.ndarray)
            or not isinstance(c1, np.ndarray)
            or c0.dtype != np.uint32
            or c1.dtype != np.uint64
            or c0.ndim != 2
            or c1.shape != (c0.shape[0], 2 * c0.shape[1])
            or c0.shape[0] < 1
        ):
            raise MalformedInputError("rounded result has the wrong shape")
        if c1.size and int(c1.max()) >> C1_BITS:
            raise MalformedInputError("rounded result has a coefficient out of range")

    @property
    def count(self) -> int:
        return int(self.c0.shape[0])

    @staticmethod
    def bytes_per_ciphertext(n: int) -> int:
        """Wire bytes of one rounded ciphertext of ring degree ``n``."""
        return 4 * (n // 2) + _C1_BYTES * n

    def to_bytes(self) -> bytes:
        count, n = self.c1.shape
        body = np.empty((count, 4 * (n // 2) + _C1_BYTES * n), dtype=np.uint8)
        body[:, : 2 * n] = np.ascontiguousarray(self.c0, dtype="<u4").view(np.uint8)
        c1 = np.ascontiguousarray(self.c1, dtype="<u8").view(np.uint8).reshape(count, n, 8)
        body[:, 2 * n :] = c1[:, :, :_C1_BYTES].reshape(count, -1)
        return body.tobytes()

    @classmethod
    def from_bytes(cls, data: memoryview, count: int, n: int) -> RoundedPolys:
        """Parse ``count`` ciphertext bodies of ring degree ``n`` (length checked by the
        caller)."""
        body = np.frombuffer(data, dtype=np.uint8).reshape(count, -1)
        c0 = body[:, : 2 * n].copy().view("<u4").astype(np.uint32)
        c1 = np.zeros((count, n, 8), dtype=np.uint8)
        c1[:, :, :_C1_BYTES] = body[:, 2 * n :].reshape(count, n, _C1_BYTES)
        return cls(c0=c0, c1=c1.view("<u8").reshape(count, n).astype(np.uint64))


def supports(params: ParameterSet) -> bool:
    """Whether results under ``params`` are rounded (two data primes, and the
    key-switching context whose transforms the kernels reuse)."""
    return params.single_ciphertext and len(params.data_primes) == 2


class NoiseBudget:
    """What rounding costs a decision, in units of the message's modulus fraction.

    ``signal`` is the smallest decisive slot value (a row 10⁻³ from τ with mask A = 1):
    2·10⁻³·Δv·Δt / Q. ``sigma`` is the standard deviation of the rounding noise on a
    slot's real part at the worst slot of a worst-case key (``_SECRET_TAIL``):
    c0 rounding √(N/12)·2^−b0 (c0' is symmetric, so its noise is real), c1 rounding
    |s(ζ)|·√(N/6)·2^−b1 for the real part of e1(ζ)s(ζ) + conj.
    """

    def __init__(self, params: ParameterSet) -> None:
        n = params.poly_degree
        big_q = math.prod(params.data_primes)
        scale = 2.0 ** (params.probe_scale_bits + params.template_scale_bits)
        self.signal = 2 * 1e-3 * scale / big_q
        secret_max = math.sqrt(_SECRET_TAIL * 2 * n / 3)
        c0 = math.sqrt(n / 12) * 2.0**-C0_BITS
        c1 = secret_max * math.sqrt(n / 6) * 2.0**-C1_BITS
        self.sigma = math.hypot(c0, c1)

    @property
    def margin(self) -> float:
        """signal / sigma: how many standard deviations a decision 10⁻³ from τ is from
        flipping because of the rounding."""
        return self.signal / self.sigma


@functools.lru_cache(maxsize=4)
def noise_budget(params: ParameterSet) -> NoiseBudget:
    """The rounding budget of ``params``; ``ParameterMismatchError`` if the smallest
    decisive signal is not at least 16 standard deviations of rounding noise."""
    budget = NoiseBudget(params)
    if budget.margin < 16:
        raise ParameterMismatchError(f"{params.name}: rounded results would flip decisions")
    return budget


def _round_row(
    params: ParameterSet, polys: U32, row: int, bits: int, width: int
) -> tuple[U64, npt.NDArray[np.int64]]:
    """(rounded coefficients (C, width) uint64, asymmetry count per ciphertext) of row
    ``row`` of every ciphertext in ``polys``."""
    if not supports(params):
        raise ParameterMismatchError(f"{params.name} results are not rounded")
    noise_budget(params)
    ctx = context(params)
    count = polys.shape[0]
    q0, q1 = params.data_primes
    polys = np.ascontiguousarray(polys, dtype=np.uint32)
    check_array("polys", polys, np.uint32, (count, 2, 2, params.poly_degree))
    out = np.empty((count, width), dtype=np.uint64)
    asym = np.zeros(count, dtype=np.int64)
    inv = np.uint64(pow(q0, -1, q1))
    mu1 = mu_for(ctx.q[:2])[1]
    scale = 2.0**bits / (q0 * q1)
    _rounding.round_rows(polys, row, ctx.tables, inv, mu1, scale, bits, out, asym)
    return out, asym


def round_c1(params: ParameterSet, polys: U32) -> U64:
    """The rounded c1 rows (C, N) of ``polys`` (C, 2, 2, N), whose c0 rows may still be
    unset: a prepared query rounds them in idle time (``crypto.he.prepared``)."""
    c1, _ = _round_row(params, polys, 1, C1_BITS, params.poly_degree)
    return c1


def round_polys(params: ParameterSet, polys: U32, *, c1: U64 | None = None) -> RoundedPolys:
    """Round masked result residues ``polys`` (C, 2, 2, N) (SEAL's NTT order) to the
    rounded format; ``c1``: their c1 rows already rounded (``round_c1``), else they are
    rounded here. ``CryptoError`` if a c0 row is not conjugation-symmetric (the
    masking's real-part step did not hold, so dropping half of c0 would be wrong)."""
    c0, asym = _round_row(params, polys, 0, C0_BITS, params.poly_degree // 2)
    if asym.any():
        raise CryptoError("a masked c0 is not conjugation-symmetric: result not sent")
    if c1 is None:
        c1 = round_c1(params, polys)
    return RoundedPolys(c0=c0.astype(np.uint32), c1=c1)

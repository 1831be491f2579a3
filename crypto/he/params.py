"""Named, versioned CKKS parameter sets.

A parameter set fixes everything that must agree between a gate and the service: ring
degree, the exact RNS primes, the fixed-point scales, the probe layout and the masking
constants. Its ``hash`` (SHA-256 over a canonical encoding of every field) travels in
every key bundle, probe and result, so an object made under other parameters is refused
before any arithmetic. Settings only *choose* a set by name (``he_parameter_set``); the
sets themselves live here, in code, and are never edited once released — a change is a
new name.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

from crypto.errors import UnknownParameterSetError

__all__ = ["DEFAULT_PARAMETER_SET", "PARAMETER_SETS", "ParameterSet", "get_parameter_set"]


@dataclass(frozen=True)
class ParameterSet:
    """One CKKS configuration. Invariants are checked on construction.

    Attributes:
        name: Public name, e.g. ``"ckks-v1"``.
        poly_degree: Ring degree N (power of two); the ring has N/2 complex slots.
        primes: RNS primes; all but the last are data primes (each < 2**31 so residues
            fit in uint32 and products of two fit in uint64), the last is SEAL's special
            prime for key switching (never seen by the fast path, so it may be
            larger). Total bits must respect the HE-standard bound for 128-bit
            security at this N (checked by SEAL on context creation).
        probe_scale_bits: log2 of the fixed-point scale of the probe encoding.
        template_scale_bits: log2 of the scale of the gallery diagonals.
        max_probe_ciphertexts: how many pre-rotated ciphertexts a gate uploads at most
            (baby steps); the service makes the remaining rotations with one Galois key.
            Sets with ``switch_primes`` upload exactly one ciphertext (this is 1).
        mask_weight: Hamming weight of the sparse ternary polynomial h whose squared
            modulus |h(ζ)|² (+1) is the per-slot masking scale: in [1, mask_weight²+1].
        flood_bits: coefficients of the flooding polynomial are uniform in
            [−2**flood_bits, 2**flood_bits).
        pad_bias: score offset given to empty slots so they always reveal negative.
        noise_sigma: standard deviation of the rerandomisation errors (SEAL's 3.2).
        switch_primes: the special modulus P of veilmatch's own *hoisted* key switching
            (``crypto/he/rotkeys.py``), as primes < 2**31 (uint32 residues). Empty: the
            gate uploads every rotation pre-rotated (ckks-v1). Non-empty: the gate
            uploads one ciphertext and a set of rotation keys, and the service derives
            the rotations itself. Data primes and these primes together must respect
            the HE-standard bound (the keys live modulo their product).
        rotation_steps: (B, G): rotation keys exist for steps 1..B−1 (baby) and
            B, 2B, …, (G−1)B (giant), so any rotation below B·G is one giant and one
            baby key switch; templates need padded_dim/2 <= B·G.
    """

    name: str
    poly_degree: int
    primes: tuple[int, ...]
    probe_scale_bits: int
    template_scale_bits: int
    max_probe_ciphertexts: int
    mask_weight: int
    flood_bits: int
    pad_bias: float
    noise_sigma: float
    switch_primes: tuple[int, ...] = ()
    rotation_steps: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        n = self.poly_degree
        if n < 1024 or n & (n - 1):
            raise ValueError("poly_degree must be a power of two >= 1024")
        if len(self.primes) < 2 or len(set(self.primes)) != len(self.primes):
            raise ValueError("need at least one data prime and a special prime, all distinct")
        for q in self.primes:
            if not (1 << 20) < q < (1 << 60) or (q - 1) % (2 * n):
                raise ValueError("every prime must be < 2**60 and congruent to 1 mod 2N")
        if max(self.data_primes) >= 1 << 31:
            raise ValueError("data primes must be < 2**31 (uint32 residues)")
        if self.max_probe_ciphertexts < 1 or self.max_probe_ciphertexts & (
            self.max_probe_ciphertexts - 1
        ):
            raise ValueError("max_probe_ciphertexts must be a power of two")
        if self.switch_primes:
            self._check_switching()
        # Largest decrypted magnitude: 2·Re (conjugate trick) × mask × |score − τ| with
        # |score − τ| <= 1 + pad_bias + 1, at scale 2**(probe+template); it must stay
        # below q/4 so flooding and rounding noise never wrap around q/2.
        q = math.prod(self.data_primes)
        peak = 2 * (self.mask_weight**2 + 1) * (2 + self.pad_bias)
        if peak * 2.0 ** (self.probe_scale_bits + self.template_scale_bits) > q / 4:
            raise ValueError("scales and mask range do not fit in the data modulus")

    def _check_switching(self) -> None:
        n = self.poly_degree
        if len(set(self.switch_primes) | set(self.primes)) != len(self.switch_primes) + len(
            self.primes
        ):
            raise ValueError("switch primes must differ from each other and the SEAL primes")
        for p in self.switch_primes:
            if not (1 << 20) < p < (1 << 31) or (p - 1) % (2 * n):
                raise ValueError("switch primes must be < 2**31 and congruent to 1 mod 2N")
        bits = math.log2(math.prod(self.data_primes) * math.prod(self.switch_primes))
        if bits > HE_STANDARD_MAX_BITS[n]:
            raise ValueError(f"{bits:.1f} bits of key-switching modulus exceed 128-bit security")
        baby, giant = self.rotation_steps
        if baby < 2 or giant < 1 or self.max_probe_ciphertexts != 1:
            raise ValueError("single-ciphertext sets need rotation_steps and one probe ciphertext")

    @property
    def single_ciphertext(self) -> bool:
        """True when the gate uploads one ciphertext and rotation keys (hoisted switching)."""
        return bool(self.switch_primes)

    @property
    def rotation_key_steps(self) -> tuple[int, ...]:
        """Rotation steps with a key: baby steps 1..B−1, then giant steps B..(G−1)·B."""
        baby, giant = self.rotation_steps
        return tuple(range(1, baby)) + tuple(baby * g for g in range(1, giant))

    @property
    def slots(self) -> int:
        """Complex slots per ciphertext (N/2): templates per result ciphertext."""
        return self.poly_degree // 2

    @property
    def data_primes(self) -> tuple[int, ...]:
        """The primes ciphertexts live under (all but the special prime)."""
        return self.primes[:-1]

    @property
    def hash(self) -> bytes:
        """32-byte SHA-256 of the canonical JSON of every field (the parameter id)."""
        fields = asdict(self)
        # Fields added after ckks-v1 enter the hash only when set, so released hashes
        # (stored with every registered key) never change.
        for name, absent in (("switch_primes", ()), ("rotation_steps", (0, 0))):
            if tuple(fields[name]) == absent:
                del fields[name]
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(b"veilmatch/he/params/v1\x00" + blob).digest()

    def padded_dim(self, dim: int) -> int:
        """Template dimension rounded up to a power of two (at least 2)."""
        if dim < 1:
            raise ValueError("dimension must be positive")
        p = 2
        while p < dim:
            p *= 2
        if p // 2 > self.slots:
            raise ValueError(f"dimension {dim} too large for {self.slots} slots")
        return p

    def probe_layout(self, dim: int) -> tuple[int, int]:
        """``(diagonals, baby_steps)`` for templates of dimension ``dim``.

        Complex packing puts two coordinates in one slot, so there are padded_dim/2
        diagonals; the gate uploads ``baby_steps`` of them pre-rotated and the service
        derives the rest with rotations by ``baby_steps`` (one Galois key).
        """
        diagonals = self.padded_dim(dim) // 2
        if self.single_ciphertext:
            baby, giant = self.rotation_steps
            if diagonals > baby * giant:
                raise ValueError(
                    f"dimension {dim} needs {diagonals} rotations; {self.name} has keys "
                    f"for {baby * giant}"
                )
        return diagonals, min(diagonals, self.max_probe_ciphertexts)


#: Largest total modulus (bits) for 128-bit security with a ternary secret, by ring
#: degree (HomomorphicEncryption.org standard, Table 1; SEAL's ``CoeffModulus.MaxBitCount``).
HE_STANDARD_MAX_BITS = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}

# Released sets. Never edit one: add a new name instead.
PARAMETER_SETS: dict[str, ParameterSet] = {
    p.name: p
    for p in (
        ParameterSet(
            name="ckks-v1",
            poly_degree=4096,
            # Two 31-bit data primes (62 bits) + a 47-bit special prime = 109 bits: the
            # HE-standard bound for 128-bit security at N = 4096 (SEAL checks it). The
            # large special prime keeps key-switching noise ~2**-16 of what a 31-bit one
            # gives, which the d = 512 service-side rotations at scale 2**25 need.
            primes=(2147352577, 2147377153, 140737488273409),
            probe_scale_bits=25,
            template_scale_bits=21,
            # The gate uploads every rotation for d <= 512 (no service key switching, no
            # key-switching noise: d = 512 stays within 1e-4). Larger d uses rotations by
            # 256 with the one Galois key, at ~2e-5 extra error per key switch.
            max_probe_ciphertexts=256,
            mask_weight=32,
            flood_bits=26,
            pad_bias=2.0,
            noise_sigma=3.2,
        ),
        ParameterSet(
            name="ckks-v2",
            poly_degree=4096,
            # Same SEAL context as ckks-v1 (SEAL still does keygen, encode, encrypt).
            primes=(2147352577, 2147377153, 140737488273409),
            # Key switching adds ~15 coefficient units of rounding noise per switch
            # (up to two per rotation): the probe scale goes up 3 bits to keep scores
            # within 1e-4, paid for by a narrower mask range (w = 12: A ∈ [1, 145]).
            probe_scale_bits=28,
            template_scale_bits=21,
            max_probe_ciphertexts=1,
            mask_weight=12,
            # Three bits more than ckks-v1, as the scores are: same margin at 1e-3.
            flood_bits=29,
            pad_bias=2.0,
            noise_sigma=3.2,
            # P = 11673601 · 11624449 (2**46.9): 61.999 + 46.947 = 108.95 bits <= 109.
            switch_primes=(11673601, 11624449),
            # Keys for steps 1..15 and 16..240: rotations up to 255, i.e. d <= 512.
            rotation_steps=(16, 16),
        ),
    )
}
DEFAULT_PARAMETER_SET = "ckks-v2"


def get_parameter_set(name_or_hash: str | bytes) -> ParameterSet:
    """Look a set up by name, or by its 32-byte hash; raise if unknown."""
    for params in PARAMETER_SETS.values():
        if name_or_hash in (params.name, params.hash):
            return params
    shown = name_or_hash if isinstance(name_or_hash, str) else name_or_hash.hex()[:16]
    raise UnknownParameterSetError(f"unknown HE parameter set {shown!r}")

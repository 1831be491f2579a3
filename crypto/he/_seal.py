"""The only module that imports the SEAL bindings (``seal-python``).

It turns SEAL objects into numpy RNS residues and back by reading and writing SEAL's
own serialization (compression none), whose layout is checked field by field when a
backend is created: if a SEAL build lays bytes out differently, ``LayoutError`` is
raised at start-up instead of computing on misread residues.

Serialized ciphertext (SEAL 4.x, little endian)::

    SEALHeader   16 B   magic 0xA15E, header size 16, version 4.x, compr 0, total size
    parms_id     32 B   four uint64
    is_ntt_form   1 B
    size          8 B   number of polynomials
    poly_degree   8 B
    coeff_mod_sz  8 B   number of RNS primes
    scale         8 B   float64
    correction    8 B   uint64 (1)
    DynArray     16 B   SEALHeader of the data array (compr 0)
    count         8 B   size · coeff_mod_sz · poly_degree
    data          8·count B  uint64 residues, [poly][prime][coefficient]

Plaintexts are the same without is_ntt_form/size/correction (parms_id, coeff_count,
scale, DynArray). Backends are per process (SEAL objects are not shared across
processes) and cached by parameter hash.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import seal

from crypto.errors import LayoutError, MalformedInputError
from crypto.he.params import ParameterSet

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

_MAGIC = 0xA15E
_HDR = struct.Struct("<HBBBBHQ")
_CT_META = struct.Struct("<32sBQQQdQ")
_PT_META = struct.Struct("<32sQd")
_ARR = struct.Struct("<Q")
_CT_OFFSET = _HDR.size + _CT_META.size + _HDR.size + _ARR.size  # 113
_PT_OFFSET = _HDR.size + _PT_META.size + _HDR.size + _ARR.size  # 88


def _header(total: int, minor: int) -> bytes:
    return _HDR.pack(_MAGIC, _HDR.size, 4, minor, 0, 0, total)


def _parms_bytes(parms_id: Any) -> bytes:
    return struct.pack("<4Q", *[int(x) for x in parms_id])


@dataclass(frozen=True)
class KeyMaterial:
    """SEAL keys of one gate as serialized bytes plus the residues the fast path needs."""

    secret: bytes
    public: bytes
    galois: bytes | None


class Backend:
    """SEAL context and helpers for one parameter set, in one process."""

    def __init__(self, params: ParameterSet) -> None:
        self.params = params
        n = params.poly_degree
        parms = seal.EncryptionParameters(seal.scheme_type.ckks)
        parms.set_poly_modulus_degree(n)
        parms.set_coeff_modulus([seal.Modulus(q) for q in params.primes])
        self.context = seal.SEALContext(parms, True, seal.sec_level_type.tc128)
        if not self.context.parameters_set():
            raise LayoutError(
                f"SEAL rejects parameter set {params.name}: "
                f"{self.context.parameter_error_message()}"
            )
        self.n = n
        self.k = len(params.data_primes)
        self.q = np.array(params.data_primes, dtype=np.uint64)
        self.data_parms = self.context.first_parms_id()
        self.data_parms_bytes = _parms_bytes(self.data_parms)
        self.key_parms_bytes = _parms_bytes(self.context.key_context_data().parms_id())
        self.encoder = seal.CKKSEncoder(self.context)
        self.evaluator = seal.Evaluator(self.context)
        self._minor = 0
        self._check_layout()
        self.exponents = self._ntt_exponents()
        # index of the NTT point with exponent e, for e odd in [0, 2N)
        self._index_of = np.full(2 * n, -1, dtype=np.int64)
        self._index_of[self.exponents] = np.arange(n)
        self.slot_to_ntt = self._slot_order()
        self._init_fast_ntt()

    # ---- layout ---------------------------------------------------------------------

    def _check_layout(self) -> None:
        """Serialize a known ciphertext and plaintext; every field must be where we expect."""
        pt = self.encoder.encode(np.arange(self.params.slots, dtype=np.float64), 2.0**20)
        keygen = seal.KeyGenerator(self.context)
        enc = seal.Encryptor(self.context, keygen.create_public_key())
        ct = enc.encrypt(pt)
        raw = ct.to_string(seal.compr_mode_type.none)
        magic, hsize, major, minor, compr, _, total = _HDR.unpack_from(raw, 0)
        expected = _CT_OFFSET + 8 * 2 * self.k * self.n
        if (magic, hsize, major, compr, total) != (_MAGIC, 16, 4, 0, len(raw)) or (
            len(raw) != expected
        ):
            raise LayoutError("SEAL ciphertext header differs from the layout veilmatch reads")
        self._minor = minor
        pid, ntt, size, deg, cms, scale, corr = _CT_META.unpack_from(raw, _HDR.size)
        if (pid, ntt, size, deg, cms, scale, corr) != (
            self.data_parms_bytes,
            1,
            2,
            self.n,
            self.k,
            2.0**20,
            1,
        ):
            raise LayoutError("SEAL ciphertext metadata differs from the expected layout")
        arr = _HDR.size + _CT_META.size
        a_magic, _, _, _, a_compr, _, a_total = _HDR.unpack_from(raw, arr)
        (count,) = _ARR.unpack_from(raw, arr + _HDR.size)
        if (a_magic, a_compr, count, a_total) != (_MAGIC, 0, 2 * self.k * self.n, len(raw) - arr):
            raise LayoutError("SEAL ciphertext data array differs from the expected layout")
        # Round trip through our own writer must give back SEAL's bytes exactly.
        res = self.ct_to_residues(ct)
        if self.residues_to_ct_bytes(res, 2.0**20) != raw:
            raise LayoutError("re-serialized ciphertext differs from SEAL's bytes")
        praw = pt.to_bytes(seal.compr_mode_type.none)
        if len(praw) != _PT_OFFSET + 8 * self.k * self.n:
            raise LayoutError("SEAL plaintext layout differs from the expected layout")
        if self.residues_to_plain_bytes(self.plain_to_residues(pt), 2.0**20) != praw:
            raise LayoutError("re-serialized plaintext differs from SEAL's bytes")

    # ---- residues <-> SEAL ----------------------------------------------------------

    def ct_to_residues(self, ct: Any) -> U64:
        """Residues of a data-level ciphertext, shape (size, k, N), uint64 < q."""
        raw = ct.to_string(seal.compr_mode_type.none)
        size = (len(raw) - _CT_OFFSET) // (8 * self.k * self.n)
        if ct.coeff_modulus_size() != self.k or not ct.is_ntt_form():
            raise LayoutError("ciphertext is not at the data level in NTT form")
        out = np.frombuffer(raw, dtype=np.uint64, offset=_CT_OFFSET)
        return out.reshape(size, self.k, self.n).copy()

    def residues_to_ct_bytes(self, res: U64, scale: float, *, ntt: bool = True) -> bytes:
        size = res.shape[0]
        count = size * self.k * self.n
        arr_total = _HDR.size + _ARR.size + 8 * count
        total = _CT_OFFSET + 8 * count
        return b"".join(
            (
                _header(total, self._minor),
                _CT_META.pack(self.data_parms_bytes, int(ntt), size, self.n, self.k, scale, 1),
                _header(arr_total, self._minor),
                _ARR.pack(count),
                np.ascontiguousarray(res, dtype=np.uint64).tobytes(),
            )
        )

    def residues_to_ct(self, res: U64, scale: float, *, ntt: bool = True) -> Any:
        """A SEAL ciphertext from residues (size, k, N); SEAL validates the values."""
        ct = seal.Ciphertext()
        try:
            ct.load_bytes(self.context, self.residues_to_ct_bytes(res, scale, ntt=ntt))
        except Exception as exc:  # SEAL raises ValueError/RuntimeError subclasses
            kind = type(exc).__name__
            raise MalformedInputError(f"ciphertext rejected by SEAL: {kind}") from None
        return ct

    def plain_to_residues(self, pt: Any) -> U64:
        """Residues of an NTT-form data-level plaintext, shape (k, N)."""
        raw = pt.to_bytes(seal.compr_mode_type.none)
        out = np.frombuffer(raw, dtype=np.uint64, offset=_PT_OFFSET)
        return out.reshape(self.k, self.n).copy()

    def residues_to_plain_bytes(self, res: U64, scale: float) -> bytes:
        count = self.k * self.n
        return b"".join(
            (
                _header(_PT_OFFSET + 8 * count, self._minor),
                _PT_META.pack(self.data_parms_bytes, count, scale),
                _header(_HDR.size + _ARR.size + 8 * count, self._minor),
                _ARR.pack(count),
                np.ascontiguousarray(res, dtype=np.uint64).tobytes(),
            )
        )

    def decode_residues(self, res: U64, scale: float) -> npt.NDArray[np.complex128]:
        """Decode NTT-form residues (k, N) at ``scale`` into N/2 complex slot values."""
        pt = seal.Plaintext()
        pt.load_bytes(self.context, self.residues_to_plain_bytes(res, scale))
        return np.asarray(self.encoder.decode_complex(pt))

    def encode(self, values: npt.NDArray[np.complex128], scale: float) -> U64:
        """Encode N/2 complex slot values at ``scale``; residues (k, N) in NTT form."""
        return self.plain_to_residues(self.encoder.encode_complex(values, scale))

    def ntt(self, coeffs: I64) -> U64:
        """Forward NTT (SEAL's) of small signed polynomials, shape (m, N) → (m, k, N).

        Coefficients must satisfy |c| < min(q)/2. Uses SEAL's own transform on a
        ciphertext-shaped container (SEAL accepts sizes 2..16), so the NTT ordering is
        SEAL's by construction.
        """
        m = coeffs.shape[0]
        out = np.empty((m, self.k, self.n), dtype=np.uint64)
        q = self.q.reshape(1, self.k, 1).astype(np.int64)
        for start in range(0, m, 15):
            block = coeffs[start : start + 15]
            # One extra nonzero polynomial: SEAL refuses "transparent" ciphertexts.
            res = np.zeros((block.shape[0] + 1, self.k, self.n), dtype=np.int64)
            res[: block.shape[0]] = block[:, None, :]
            res[-1, :, 0] = 1
            res %= q
            ct = self.residues_to_ct(res.astype(np.uint64), 1.0, ntt=False)
            self.evaluator.transform_to_ntt_inplace(ct)
            done = self.ct_to_residues(ct)
            out[start : start + block.shape[0]] = done[: block.shape[0]]
        return out

    def _init_fast_ntt(self) -> None:
        """Tables for the numba NTT, then a cross-check against SEAL's own transform."""
        from crypto.he._kernels import ntt_tables

        x = np.zeros((1, self.n), dtype=np.int64)
        x[0, 1] = 1
        psis = [int(v) for v in self.ntt(x)[0][:, 0]]  # NTT(X) at index 0 is ψ itself
        self._psi_rev, self._psi_shoup = ntt_tables(self.q, psis, self.n)
        probe = np.random.default_rng(0).integers(-(1 << 26), 1 << 26, size=(3, self.n))
        if not np.array_equal(self.ntt_fast(probe), self.ntt(probe)):
            raise LayoutError("the numba NTT does not reproduce SEAL's NTT")

    def ntt_fast(self, coeffs: I64) -> U64:
        """Same as ``ntt`` (bit-identical, checked at start-up) with the numba kernel."""
        from crypto.he._kernels import ntt_many

        out = np.empty((coeffs.shape[0], self.k, self.n), dtype=np.uint64)
        ntt_many(
            np.ascontiguousarray(coeffs, dtype=np.int64),
            self.q,
            self._psi_rev,
            self._psi_shoup,
            out,
        )
        return out

    # ---- Galois automorphisms in NTT form -------------------------------------------

    def _ntt_exponents(self) -> I64:
        """e_i with NTT point i = ψ^{e_i} (ψ a primitive 2N-th root mod q0)."""
        x = np.zeros((1, self.n), dtype=np.int64)
        x[0, 1] = 1
        vals = self.ntt(x)[0]
        n2 = 2 * self.n
        exps = np.empty(self.n, dtype=np.int64)
        for p, q in enumerate(self.params.data_primes):
            psi = int(vals[p, 0])
            table: dict[int, int] = {}
            acc = 1
            for e in range(n2):
                table[acc] = e
                acc = acc * psi % q
            e_p = np.array([table.get(int(v), -1) for v in vals[p]], dtype=np.int64)
            if len(table) != n2 or (e_p < 0).any() or not (e_p % 2 == 1).all():
                raise LayoutError("SEAL's NTT points are not odd powers of a 2N-th root")
            # Same ordering for every prime: the index→exponent map must agree.
            if p == 0:
                exps = e_p
            elif not np.array_equal(
                (e_p * pow(int(exps[0]), -1, n2)) % n2, (exps * pow(int(e_p[0]), -1, n2)) % n2
            ):
                raise LayoutError("SEAL's NTT ordering differs between primes")
        return exps

    def _slot_order(self) -> I64:
        """Slot position → NTT index: t < N/2 is the point ψ^(3^t), N/2 + t is ψ^(−3^t).

        In this order the rotation by r (Galois element 3^r) is a cyclic shift by r
        inside each half and conjugation swaps the halves; checked here, because the
        fast path's kernels (``crypto/he/_kernels.py``) rely on both.
        """
        n, s, n2 = self.n, self.params.slots, 2 * self.n
        powers = np.array([pow(3, t, n2) for t in range(s)], dtype=np.int64)
        order = np.concatenate([self._index_of[powers], self._index_of[(n2 - powers) % n2]])
        if (order < 0).any() or len(np.unique(order)) != n:
            raise LayoutError("the slot order is not a permutation of SEAL's NTT points")
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n)
        t = np.arange(s)
        for r in (1, 5, s - 1):
            moved = inverse[self.galois_perm(self.rotation_elt(r))[order]]
            if not (
                np.array_equal(moved[:s], (t + r) % s)
                and np.array_equal(moved[s:], s + (t + r) % s)
            ):
                raise LayoutError("a rotation is not a shift in the slot order")
        conj = inverse[self.galois_perm(self.conj_elt)[order]]
        if not np.array_equal(conj, np.concatenate([t + s, t])):
            raise LayoutError("conjugation does not swap the halves of the slot order")
        order.setflags(write=False)
        return order

    def to_slot_order(self, res: U64) -> npt.NDArray[np.uint32]:
        """NTT residues (..., k, N) in SEAL's order → uint32 in slot order."""
        return np.ascontiguousarray(res[..., self.slot_to_ntt], dtype=np.uint32)

    @property
    def ntt_tables(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
        """(ψ powers in bit-reversed order, Shoup companions), each (k, N)."""
        return self._psi_rev, self._psi_shoup

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one backend per process
    def galois_perm(self, galois_elt: int) -> I64:
        """Index map π with NTT(f(X^g)) = NTT(f)[π]."""
        n2 = 2 * self.n
        perm = self._index_of[(galois_elt * self.exponents) % n2]
        perm.setflags(write=False)
        return perm

    def rotation_elt(self, steps: int) -> int:
        """Galois element of a left rotation by ``steps`` slots (SEAL's convention)."""
        return pow(3, steps % self.params.slots, 2 * self.n)

    @property
    def conj_elt(self) -> int:
        return 2 * self.n - 1

    # ---- keys -----------------------------------------------------------------------

    def generate_keys(self, galois_steps: tuple[int, ...]) -> KeyMaterial:
        keygen = seal.KeyGenerator(self.context)
        secret = keygen.secret_key().to_string()
        public = keygen.create_public_key().to_string()
        galois = None
        if galois_steps:
            gk = seal.GaloisKeys()
            keygen.create_galois_keys(list(galois_steps), gk)
            galois = gk.to_string()
        return KeyMaterial(secret=secret, public=public, galois=galois)

    def load_secret(self, data: bytes) -> tuple[Any, U64]:
        """SEAL secret key and its data-level NTT residues (k, N)."""
        sk = self._load(self.context.from_secret_str, data, "secret key")
        res = np.frombuffer(data, dtype=np.uint64, offset=_PT_OFFSET)
        if res.size != len(self.params.primes) * self.n:
            raise LayoutError("secret key layout differs from the expected layout")
        return sk, res.reshape(-1, self.n)[: self.k].copy()

    def load_public(self, data: bytes) -> U64:
        """Public key residues at the data level, shape (2, k, N)."""
        self._load(self.context.from_public_str, data, "public key")
        kk = len(self.params.primes)
        res = np.frombuffer(data, dtype=np.uint64, offset=_CT_OFFSET)
        if res.size != 2 * kk * self.n:
            raise MalformedInputError("public key has the wrong size")
        return res.reshape(2, kk, self.n)[:, : self.k].copy()

    def load_galois(self, data: bytes) -> Any:
        return self._load(self.context.from_galois_str, data, "Galois keys")

    def _load(self, loader: Any, data: bytes, what: str) -> Any:
        try:
            return loader(data)
        except Exception as exc:  # SEAL's loaders raise various std:: exceptions
            raise MalformedInputError(f"{what} rejected by SEAL: {type(exc).__name__}") from None

    def encrypt_symmetric(self, secret: Any, res_plain: U64, scale: float) -> U64:
        """Encrypt NTT-form plaintext residues under the secret key; residues (2, k, N)."""
        enc = seal.Encryptor(self.context, secret)
        pt = seal.Plaintext()
        pt.load_bytes(self.context, self.residues_to_plain_bytes(res_plain, scale))
        return self.ct_to_residues(enc.encrypt_symmetric(pt))

    def rotate(self, res: U64, scale: float, steps: int, galois: Any) -> U64:
        """Rotate a (2, k, N) ciphertext left by ``steps`` slots with SEAL (key switch)."""
        ct = self.residues_to_ct(res, scale)
        self.evaluator.rotate_vector_inplace(ct, steps, galois)
        return self.ct_to_residues(ct)


@functools.lru_cache(maxsize=8)
def backend(params: ParameterSet) -> Backend:
    """The process-wide backend for ``params`` (created on first use in each process)."""
    return Backend(params)

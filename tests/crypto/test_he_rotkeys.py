"""Rotation keys and hoisted key switching (ckks-v2: the gate uploads one ciphertext)."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest

from crypto.errors import (
    CryptoError,
    MalformedInputError,
    OversizedInputError,
    UnknownParameterSetError,
)
from crypto.he import GateKeyBundle, ParameterSet, Probe, PublicKeyBundle, encrypt_probe
from crypto.he._seal import backend
from crypto.he.rotkeys import RotationKeys, context, rotate_all, steps_needed
from tests.crypto.conftest import unit_rows


def _encrypt_packed(keys: GateKeyBundle, values: np.ndarray) -> np.ndarray:
    """A fresh symmetric encryption of ``values`` (N/2 complex), (2, k, N) slot order."""
    be = backend(keys.params)
    sk, _ = keys.secret_residues()
    scale = 2.0**keys.params.probe_scale_bits
    ct = be.encrypt_symmetric(sk, be.encode(values, scale), scale)
    return be.to_slot_order(ct)


def _decrypt(keys: GateKeyBundle, ct_slots: np.ndarray) -> np.ndarray:
    be = backend(keys.params)
    _, s = keys.secret_residues()
    res = np.empty((2, be.k, be.n), dtype=np.uint64)
    res[..., be.slot_to_ntt] = ct_slots
    q = be.q.reshape(-1, 1)
    return be.decode_residues((res[0] + res[1] * s % q) % q, 2.0**keys.params.probe_scale_bits)


def test_every_rotation_decrypts_to_the_rotated_plaintext(
    keys: GateKeyBundle, params: ParameterSet
) -> None:
    # 256 rotations (the most ckks-v2 supports): every giant and baby key is used.
    rng = np.random.default_rng(3)
    d = 256
    u = rng.uniform(-1, 1, d) + 1j * rng.uniform(-1, 1, d)
    slots = np.arange(params.slots)
    out = np.empty((d, 2, len(params.data_primes), params.poly_degree), dtype=np.uint32)
    rotate_all(params, _encrypt_packed(keys, u[slots % d]), keys.public().rotation_key_pair(), out)
    errors = [np.abs(_decrypt(keys, out[j]) - u[(slots + j) % d]).max() for j in range(d)]
    # Largest slot error: fresh ≈ 2.5e-6; after one or two key switches ≈ 3e-5 (rounding
    # of ≈ 15 coefficient units per switch at Δv = 2**28, see docs/crypto.md).
    assert max(errors) < 6e-5, max(errors)
    assert errors[0] < 1e-5  # the uploaded ciphertext itself is untouched


def test_rotation_with_another_gates_keys_is_garbage(
    keys: GateKeyBundle, other_keys: GateKeyBundle, params: ParameterSet
) -> None:
    # Keys are bound to the secret they were made from: the service cannot rotate one
    # gate's probe with another gate's keys (the result decrypts to noise).
    rng = np.random.default_rng(4)
    u = rng.uniform(-1, 1, 16) + 0j
    slots = np.arange(params.slots)
    out = np.empty((16, 2, len(params.data_primes), params.poly_degree), dtype=np.uint32)
    other = other_keys.public().rotation_key_pair()
    rotate_all(params, _encrypt_packed(keys, u[slots % 16]), other, out)
    assert np.abs(_decrypt(keys, out[1]) - u[(slots + 1) % 16]).max() > 1.0


def test_probe_is_one_seeded_ciphertext(keys: GateKeyBundle, params: ParameterSet) -> None:
    v = unit_rows(np.random.default_rng(5), 1, 128)[0].astype(np.float64)
    blob = encrypt_probe(keys, v).to_bytes()
    k = len(params.data_primes)
    assert len(blob) == Probe.size_for(params, 128) < 4 * k * params.poly_degree + 200
    assert len(Probe.from_bytes(blob).seeds) == 1


def test_rotation_keys_round_trip_and_size(keys: GateKeyBundle, params: ParameterSet) -> None:
    blob = keys.public().galois_keys
    assert blob is not None
    parsed = RotationKeys.from_bytes(blob)
    assert parsed.steps == params.rotation_key_steps == (*range(1, 16), *range(16, 256, 16))
    assert len(blob) == RotationKeys.size_for(params)
    assert parsed.to_bytes() == blob
    assert keys.public().sizes["bundle"] < 4_200_000  # 30 seeded keys ≈ 3.9 MB, once per key


def _head(blob: bytes) -> tuple[bytes, int, bytes, int]:
    magic, version, phash, count = struct.unpack_from("<4sB32sH", blob, 0)
    return magic, version, phash, count


def test_rotation_keys_malformed_input_raises_typed_errors(keys: GateKeyBundle) -> None:
    blob = keys.public().galois_keys
    assert blob is not None
    with pytest.raises(OversizedInputError):
        RotationKeys.from_bytes(blob, max_size=1000)
    for cut in (0, 10, 40, len(blob) - 1):
        with pytest.raises(MalformedInputError):
            RotationKeys.from_bytes(blob[:cut])
    with pytest.raises(MalformedInputError):
        RotationKeys.from_bytes(b"XXXX" + blob[4:])
    with pytest.raises(MalformedInputError):
        RotationKeys.from_bytes(blob + b"\0")
    with pytest.raises(UnknownParameterSetError):
        RotationKeys.from_bytes(blob[:5] + bytes(32) + blob[37:])
    for count in (0, 29, 31, 0xFFFF):  # header count must be the parameter set's
        wrong_count = bytearray(blob)
        struct.pack_into("<H", wrong_count, 37, count)
        with pytest.raises(MalformedInputError):
            RotationKeys.from_bytes(bytes(wrong_count))
    bad_step = bytearray(blob)
    struct.pack_into("<H", bad_step, 39, 3)  # the first key claims another step
    with pytest.raises(MalformedInputError, match="steps"):
        RotationKeys.from_bytes(bytes(bad_step))
    too_big = bytearray(blob)
    too_big[39 + 34 : 39 + 38] = b"\xff\xff\xff\xff"  # first residue of key 0 >= prime
    with pytest.raises(MalformedInputError, match="out of range"):
        RotationKeys.from_bytes(bytes(too_big))


def test_bundle_without_or_with_foreign_rotation_keys_is_refused(
    keys: GateKeyBundle, params: ParameterSet
) -> None:
    public = keys.public()
    stripped = PublicKeyBundle(params, public.key_id, public.public_key, None)
    with pytest.raises(MalformedInputError, match="rotation keys"):
        PublicKeyBundle.from_bytes(stripped.to_bytes())
    with pytest.raises(CryptoError):
        stripped.rotation_keys()
    garbled = PublicKeyBundle(params, public.key_id, public.public_key, b"VMRK" + bytes(60))
    with pytest.raises(MalformedInputError):
        PublicKeyBundle.from_bytes(garbled.to_bytes())


def test_switching_modulus_respects_the_security_bound(params: ParameterSet) -> None:
    import math

    bits = math.log2(math.prod(params.data_primes) * math.prod(params.switch_primes))
    assert bits <= 109  # HE standard, N = 4096, 128-bit security
    ctx = context(params)
    assert ctx.limbs == 4 and int(ctx.crt[2]) == math.prod(params.switch_primes)


def test_rotation_keys_are_fresh_per_gate(keys: GateKeyBundle, other_keys: GateKeyBundle) -> None:
    mine = RotationKeys.from_bytes(keys.public().galois_keys or b"")
    theirs = RotationKeys.from_bytes(other_keys.public().galois_keys or b"")
    assert set(mine.seeds).isdisjoint(theirs.seeds)
    assert not np.array_equal(mine.b[0], theirs.b[0])


def test_random_corruption_only_raises_crypto_errors(keys: GateKeyBundle) -> None:
    blob = keys.public().galois_keys
    assert blob is not None
    rng = np.random.default_rng(9)
    for _ in range(200):
        data = bytearray(blob)
        where = rng.integers(0, 120) if rng.random() < 0.7 else rng.integers(0, len(data))
        data[where] ^= 1 << int(rng.integers(0, 8))
        with contextlib.suppress(CryptoError):  # a typed refusal; anything else fails
            RotationKeys.from_bytes(bytes(data))
    with pytest.raises(CryptoError):
        RotationKeys.from_bytes(rng.bytes(len(blob)))


def test_scoring_copy_keeps_only_the_keys_its_dimension_needs(
    keys: GateKeyBundle, params: ParameterSet
) -> None:
    from crypto.he import Gallery, resolve, reveal, score_masked
    from tests.crypto.conftest import unit_rows

    public = keys.public()
    compact = public.for_scoring(128)
    assert compact.galois_keys is None
    assert compact.rotation_key_steps == steps_needed(params, 64)
    assert len(compact.rotation_key_steps) == 18
    rng = np.random.default_rng(12)
    templates = unit_rows(rng, 500, 128)
    v = templates[42].astype(np.float64)
    gallery = Gallery.build(templates, params)
    probe = encrypt_probe(keys, v)
    masked, mapping = score_masked(probe, gallery, 0.9, compact)
    assert resolve(reveal(keys, masked), mapping) == [42]
    # A d = 512 probe needs keys the compact copy dropped: a typed refusal, not garbage.
    wide = Gallery.build(unit_rows(rng, 10, 512), params)
    wide_probe = encrypt_probe(keys, unit_rows(rng, 1, 512)[0].astype(np.float64))
    with pytest.raises(CryptoError, match="no rotation key"):
        score_masked(wide_probe, wide, 0.9, compact)


def test_the_integer_reduction_is_exact_up_to_each_call_sites_bound(params: ParameterSet) -> None:
    # _keyswitch._mod replaces a float quotient (scalar on AVX2 machines) by two 32-bit
    # folds and a Barrett step; it must agree with Python's % at and below every bound
    # the context checks, for every limb prime.
    from numba import njit

    from crypto.he._keyswitch import _mod, reduction_fits

    @njit(cache=False)
    def reduce_all(w: np.ndarray, q: np.uint64, r32: np.uint64, m37: np.uint64) -> np.ndarray:
        out = np.empty_like(w)
        for i in range(w.size):
            out[i] = _mod(w[i], q, r32, m37)
        return out

    rng = np.random.default_rng(11)
    k = len(params.data_primes)
    big_p = params.switch_primes[0] * params.switch_primes[1]
    for limb, q in enumerate([*params.data_primes, *params.switch_primes]):
        bound = 2 * (q - 1) ** 2 if limb >= k else max(2 * (q - 1) ** 2, big_p + q)
        assert reduction_fits(q, bound)
        edges = [0, 1, q - 1, q, q + 1, 2 * q, bound - 1, bound]
        w = np.array(
            edges + [int(x) for x in rng.integers(0, bound, 20_000, dtype=np.uint64)],
            dtype=np.uint64,
        )
        got = reduce_all(w, np.uint64(q), np.uint64((1 << 32) % q), np.uint64((1 << 37) // q))
        assert [int(x) for x in got] == [int(x) % q for x in w]
    assert not reduction_fits(params.switch_primes[0], 1 << 63)  # beyond what it handles

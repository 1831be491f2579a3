"""Malformed, truncated, oversized, wrong-parameter and wrong-key inputs: typed errors only."""

from __future__ import annotations

import contextlib
import datetime as dt
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from crypto.atrest import FileKek
from crypto.errors import (
    CryptoError,
    GalleryError,
    KeyMismatchError,
    MalformedInputError,
    OversizedInputError,
    ParameterMismatchError,
    RetiredKeyError,
    SealedDataError,
    UnknownKeyError,
    UnknownParameterSetError,
)
from crypto.he import (
    Gallery,
    GateKeyBundle,
    KeyRegistry,
    MaskedResult,
    ParameterSet,
    Probe,
    PublicKeyBundle,
    encrypt_probe,
    resolve,
    reveal,
    score_masked,
)
from crypto.he.wire import MAX_PROBE_BYTES
from tests.crypto.conftest import unit_rows


@pytest.fixture(scope="module")
def probe(keys: GateKeyBundle) -> Probe:
    return encrypt_probe(keys, unit_rows(np.random.default_rng(21), 1, 128)[0])


@pytest.fixture(scope="module")
def masked(keys: GateKeyBundle, probe: Probe, small_gallery: Gallery):
    return score_masked(probe, small_gallery, 0.3, keys.public())


# ---- probes --------------------------------------------------------------------------


def test_probe_round_trip(probe: Probe, params: ParameterSet) -> None:
    data = probe.to_bytes()
    assert len(data) == Probe.size_for(params, 128)
    again = Probe.from_bytes(data, max_size=len(data))
    assert again.to_bytes() == data and again.key_id == probe.key_id


def test_probe_oversized_refused_before_parsing(probe: Probe) -> None:
    data = probe.to_bytes()
    with pytest.raises(OversizedInputError):
        Probe.from_bytes(data, max_size=len(data) - 1)
    with pytest.raises(OversizedInputError):
        Probe.from_bytes(b"\x00" * (MAX_PROBE_BYTES + 1))


@pytest.mark.parametrize("cut", [0, 3, 10, 50, 100, 1000, -1])
def test_probe_truncated(probe: Probe, cut: int) -> None:
    with pytest.raises(MalformedInputError):
        Probe.from_bytes(probe.to_bytes()[:cut])


def test_probe_preceding_and_trailing_garbage(probe: Probe) -> None:
    data = probe.to_bytes()
    with pytest.raises(MalformedInputError):
        Probe.from_bytes(b"\x00" + data)
    with pytest.raises(MalformedInputError):
        Probe.from_bytes(data + b"\x00")


def test_probe_bad_magic_version_params(probe: Probe) -> None:
    data = bytearray(probe.to_bytes())
    for offset, error in (
        (0, MalformedInputError),
        (4, MalformedInputError),
        (5, UnknownParameterSetError),
    ):
        mutated = bytearray(data)
        mutated[offset] ^= 0xFF
        with pytest.raises(error):
            Probe.from_bytes(bytes(mutated))


def test_probe_residue_out_of_range(probe: Probe, params: ParameterSet) -> None:
    data = bytearray(probe.to_bytes())
    off = 4 + 1 + 32 + 16 + 2 + 2 + 32
    data[off : off + 4] = (params.data_primes[0]).to_bytes(4, "little")
    with pytest.raises(MalformedInputError, match="out of range"):
        Probe.from_bytes(bytes(data))


def test_probe_dimension_field_invalid(probe: Probe) -> None:
    data = bytearray(probe.to_bytes())
    data[53:55] = (9000).to_bytes(2, "little")
    with pytest.raises(MalformedInputError):
        Probe.from_bytes(bytes(data))


def test_random_bytes_and_bit_flips_only_raise_crypto_errors(probe: Probe) -> None:
    rng = np.random.default_rng(5)
    data = probe.to_bytes()
    for _ in range(200):
        blob = bytearray(data[: int(rng.integers(0, 120))])
        if blob:
            blob[int(rng.integers(0, len(blob)))] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(CryptoError):
            Probe.from_bytes(bytes(blob))
        with pytest.raises(CryptoError):
            MaskedResult.from_bytes(bytes(blob))
        with pytest.raises(CryptoError):
            PublicKeyBundle.from_bytes(bytes(blob))
    for _ in range(50):  # header bit flips on a full-size probe
        blob = bytearray(data)
        blob[int(rng.integers(0, 57))] ^= 1 << int(rng.integers(0, 8))
        with contextlib.suppress(CryptoError):
            Probe.from_bytes(bytes(blob))


def test_wrong_probe_dimension_for_gallery(keys: GateKeyBundle, small_gallery: Gallery) -> None:
    other = encrypt_probe(keys, unit_rows(np.random.default_rng(1), 1, 64)[0])
    with pytest.raises(GalleryError):
        score_masked(other, small_gallery, 0.3, keys.public())


def test_template_checks(keys: GateKeyBundle) -> None:
    with pytest.raises(MalformedInputError):
        encrypt_probe(keys, np.ones(128))  # not unit norm
    with pytest.raises(MalformedInputError):
        encrypt_probe(keys, np.full(128, np.nan))
    with pytest.raises(MalformedInputError):
        encrypt_probe(keys, np.ones((2, 64)) / 8)


# ---- keys ----------------------------------------------------------------------------


def test_probe_under_another_key_is_refused(
    keys: GateKeyBundle, other_keys: GateKeyBundle, probe: Probe, small_gallery: Gallery
) -> None:
    with pytest.raises(KeyMismatchError):
        score_masked(probe, small_gallery, 0.3, other_keys.public())


def test_result_for_another_key_is_refused(other_keys: GateKeyBundle, masked) -> None:
    with pytest.raises(KeyMismatchError):
        reveal(other_keys, masked[0])


def test_public_bundle_round_trip_and_sizes(keys: GateKeyBundle) -> None:
    pub = keys.public()
    data = pub.to_bytes()
    again = PublicKeyBundle.from_bytes(data)
    assert again.key_id == keys.key_id and again.to_bytes() == data
    sizes = keys.sizes
    assert sizes["bundle"] == len(data) and sizes["secret_key"] > 0 and sizes["galois_keys"] > 0


def test_public_bundle_tampering(keys: GateKeyBundle) -> None:
    data = bytearray(keys.public().to_bytes())
    data[40] ^= 1  # key id byte
    with pytest.raises(KeyMismatchError):
        PublicKeyBundle.from_bytes(bytes(data))
    data = bytearray(keys.public().to_bytes())
    data[-1000] ^= 1  # inside the Galois keys: SEAL validation or id check catches it
    with contextlib.suppress(CryptoError):
        PublicKeyBundle.from_bytes(bytes(data))
    data = bytearray(keys.public().to_bytes())
    data[200] ^= 1  # inside the public key: the id no longer matches
    with pytest.raises(CryptoError):
        PublicKeyBundle.from_bytes(bytes(data))
    with pytest.raises(OversizedInputError):
        PublicKeyBundle.from_bytes(bytes(data), max_size=100)


def test_registry_unknown_retired_mismatched(
    keys: GateKeyBundle, other_keys: GateKeyBundle, params: ParameterSet
) -> None:
    registry = KeyRegistry(params)
    with pytest.raises(UnknownKeyError):
        registry.require(keys.key_id, params.hash)
    registry.register(keys.public())
    registry.register(other_keys.public())
    assert registry.require(keys.key_id, params.hash).key_id == keys.key_id
    with pytest.raises(ParameterMismatchError):
        registry.require(keys.key_id, b"\x01" * 32)
    registry.retire(keys.key_id, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(RetiredKeyError):
        registry.require(keys.key_id, params.hash)
    with pytest.raises(RetiredKeyError):
        registry.register(keys.public())
    assert registry.active_keys() == [other_keys.key_id]
    with pytest.raises(UnknownKeyError):
        registry.retire("00" * 16)


def test_registry_refuses_other_parameter_set(keys: GateKeyBundle, params: ParameterSet) -> None:
    other = replace(params, name="ckks-test-other", mask_weight=params.mask_weight - 1)
    with pytest.raises(ParameterMismatchError):
        KeyRegistry(other).register(keys.public())


def test_secret_bundle_sealed_at_rest(keys: GateKeyBundle, tmp_path: Path) -> None:
    kek = FileKek.generate(tmp_path / "kek")
    path = tmp_path / "gate.key"
    keys.save(path, kek)
    assert path.stat().st_mode & 0o077 == 0
    assert keys.secret_key not in path.read_bytes()
    again = GateKeyBundle.load(path, kek)
    assert again.key_id == keys.key_id and again.secret_key == keys.secret_key
    with pytest.raises(SealedDataError):
        GateKeyBundle.load(path, FileKek.generate(tmp_path / "other"))
    blob = bytearray(path.read_bytes())
    blob[60] ^= 1  # header (created_at) is authenticated too
    with pytest.raises(SealedDataError):
        GateKeyBundle.from_sealed_bytes(bytes(blob), kek)


# ---- results and resolve -------------------------------------------------------------


def test_result_round_trip_and_limits(masked, params: ParameterSet) -> None:
    result, _ = masked
    data = result.to_bytes()
    assert len(data) == MaskedResult.size_for(params, result.count)
    again = MaskedResult.from_bytes(data, max_size=len(data))
    assert again.to_bytes() == data
    with pytest.raises(OversizedInputError):
        MaskedResult.from_bytes(data, max_size=len(data) - 1)
    with pytest.raises(MalformedInputError):
        MaskedResult.from_bytes(data[:-4])
    bad = bytearray(data)
    bad[69:73] = (0).to_bytes(4, "little")
    with pytest.raises(MalformedInputError):
        MaskedResult.from_bytes(bytes(bad))


def test_resolve_refuses_out_of_range_and_padding(masked, params: ParameterSet) -> None:
    _, mapping = masked
    with pytest.raises(MalformedInputError):
        resolve([params.slots * len(mapping.order)], mapping)
    with pytest.raises(MalformedInputError):
        resolve([-1], mapping)
    block = mapping.order[0]
    padding_slot = (mapping.size - block * params.slots - mapping.rotations[block]) % params.slots
    with pytest.raises(MalformedInputError, match="empty slot"):
        resolve([padding_slot], mapping)


def test_gallery_checks_and_pickling(params: ParameterSet, small_gallery: Gallery) -> None:
    with pytest.raises(GalleryError):
        Gallery.build(np.ones((3, 128), dtype=np.float32), params)
    with pytest.raises(GalleryError):
        Gallery.build(np.ones(128, dtype=np.float32), params)
    with pytest.raises(GalleryError):
        Gallery.build(np.zeros((1, 5000), dtype=np.float32) + 1 / np.sqrt(5000), params)
    again = pickle.loads(pickle.dumps(small_gallery))
    assert again.version == small_gallery.version and len(again) == len(small_gallery)
    assert np.array_equal(again.diagonals, small_gallery.diagonals)


def test_gallery_version_tracks_content(params: ParameterSet, watchlist: np.ndarray) -> None:
    a = Gallery.build(watchlist[:10], params)
    b = Gallery.build(watchlist[:10], params)
    c = Gallery.build(watchlist[1:11], params)
    assert a.version == b.version != c.version


def test_threshold_range(keys: GateKeyBundle, probe: Probe, small_gallery: Gallery) -> None:
    with pytest.raises(ValueError):
        score_masked(probe, small_gallery, 1.5, keys.public())

"""Gate-side decryption on the residues agrees with SEAL's own decoding."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.he import (
    Gallery,
    GateKeyBundle,
    ParameterSet,
    decrypt,
    encrypt_probe,
    reveal,
    score_masked,
)
from crypto.he.protocol import _masked_values, _masked_values_seal
from crypto.he.wire import MaskedResult
from tests.crypto.conftest import unit_rows


@pytest.fixture(scope="module")
def masked(keys: GateKeyBundle, watchlist: np.ndarray, params: ParameterSet) -> MaskedResult:
    """A masked result of three ciphertexts (a gallery across two boundaries)."""
    gallery = Gallery.build(watchlist[: 2 * params.slots + 5], params)
    probe = encrypt_probe(keys, watchlist[7].astype(np.float64))
    result, _ = score_masked(probe, gallery, 0.1, keys.public(), rng=np.random.default_rng(3))
    assert result.count == 3
    return result


def test_residue_decryption_equals_seal_decoding(keys: GateKeyBundle, masked: MaskedResult) -> None:
    assert decrypt.supports(keys.params)
    fast = _masked_values(keys, masked)
    seal = _masked_values_seal(keys, masked)
    assert fast.shape == seal.shape == (3, keys.params.slots)
    # masked values reach a few hundred; SEAL's multiprecision decode and the float64
    # CRT differ only by rounding
    assert np.abs(seal).max() > 10.0
    np.testing.assert_allclose(fast, seal, rtol=0, atol=1e-9)
    assert np.array_equal(fast > 0, seal > 0)


def test_residue_decryption_recovers_known_plaintext_slots(
    keys: GateKeyBundle, params: ParameterSet
) -> None:
    """(c0, 0) with c0 an encoded plaintext decrypts to its slots: checks the slot order
    and scale of the embedding on its own, not only agreement with SEAL."""
    from crypto.he._seal import backend

    values = np.linspace(-3.0, 3.0, params.slots) + 1j * np.linspace(1.0, -1.0, params.slots)
    scale = 2.0 ** (params.probe_scale_bits + params.template_scale_bits)
    polys = np.zeros((1, 2, len(params.data_primes), params.poly_degree), dtype=np.uint32)
    polys[0, 0] = backend(params).encode(values, scale)
    got = decrypt.masked_values(keys, polys)
    np.testing.assert_allclose(got[0], values.real, rtol=0, atol=1e-9)


def test_reveal_uses_the_residue_path_and_finds_the_same_positions(
    keys: GateKeyBundle, masked: MaskedResult
) -> None:
    seal = _masked_values_seal(keys, masked)
    assert reveal(keys, masked) == [int(x) for x in np.flatnonzero(seal.reshape(-1) > 0)]


def test_parameter_sets_without_the_switching_context_use_seal() -> None:
    from crypto.he.params import get_parameter_set

    assert not decrypt.supports(get_parameter_set("ckks-v1"))  # reveal: test_he_v1_compat


def test_random_probe_values_match_seal_for_d512(keys: GateKeyBundle, params: ParameterSet) -> None:
    rng = np.random.default_rng(21)
    rows = unit_rows(rng, 40, 512)
    gallery = Gallery.build(rows, params)
    probe = encrypt_probe(keys, rows[3].astype(np.float64))
    result, _ = score_masked(probe, gallery, 0.0, keys.public())
    np.testing.assert_allclose(
        _masked_values(keys, result), _masked_values_seal(keys, result), rtol=0, atol=1e-9
    )

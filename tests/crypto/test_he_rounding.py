"""Rounded results (wire version 2): smaller, same decisions, strict parsing."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.errors import CryptoError, MalformedInputError, OversizedInputError
from crypto.he import (
    Gallery,
    GateKeyBundle,
    MaskedResult,
    ParameterSet,
    encrypt_probe,
    get_parameter_set,
    resolve,
    reveal,
    score_masked,
)
from crypto.he.protocol import QueryMapping, _masked_values
from crypto.he.rounding import RoundedPolys, noise_budget, round_polys, supports
from tests.crypto.conftest import unit_rows

Crafted = tuple[np.ndarray, MaskedResult, QueryMapping]
TAU = 0.3
#: Offsets of crafted rows from τ: outside the fidelity band (> 1e-3) the decision must
#: equal the plaintext one; inside it, the rounded format must still agree with the
#: exact one (its own noise is ≈ 2e-5 in score units, far below 2e-4).
OUTSIDE = (1.05e-3, 1.5e-3, 3e-3, 1e-2)
INSIDE = (2e-4, 5e-4, 9e-4)


def _rows_at(probe: np.ndarray, offsets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit rows whose cosine with ``probe`` is exactly TAU + offset."""
    noise = rng.standard_normal((offsets.size, probe.size))
    noise -= np.outer(noise @ probe, probe)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    c = (TAU + offsets)[:, None]
    return np.asarray(c * probe + np.sqrt(1 - c**2) * noise)


@pytest.fixture(scope="module")
def crafted(params: ParameterSet, keys: GateKeyBundle) -> Crafted:
    """2 × 2048 + 300 rows (three result ciphertexts, padding in the last): 1,200 rows
    placed at chosen distances from τ, the rest random."""
    rng = np.random.default_rng(17)
    probe = unit_rows(rng, 1, 128)[0].astype(np.float64)
    offsets = np.concatenate([np.repeat(np.array(OUTSIDE + INSIDE), 100)] * 2)
    offsets[offsets.size // 2 :] *= -1
    total = 2 * 2048 + 300
    rows = np.concatenate(
        [_rows_at(probe, offsets, rng), unit_rows(rng, total - offsets.size, 128)]
    )
    rows = rows[rng.permutation(total)]
    gallery = Gallery.build(rows.astype(np.float32), params)
    scores = rows.astype(np.float32).astype(np.float64) @ probe
    enc = encrypt_probe(keys, probe)
    exact, mapping = score_masked(enc, gallery, TAU, keys.public(), rng=np.random.default_rng(3))
    return scores, exact, mapping


def _decided(keys: GateKeyBundle, result: MaskedResult, mapping: QueryMapping) -> set[int]:
    return set(resolve(reveal(keys, result), mapping))


def test_rounded_decisions_equal_plaintext_and_exact_format(
    keys: GateKeyBundle, crafted: Crafted
) -> None:
    scores, exact, mapping = crafted
    wire = exact.to_bytes()
    assert wire[4] == 2 and exact.to_bytes(1)[4] == 1
    rounded = MaskedResult.from_bytes(wire)
    assert rounded.polys is None and rounded.rounded is not None
    old = MaskedResult.from_bytes(exact.to_bytes(1))
    new_rows = _decided(keys, rounded, mapping)
    old_rows = _decided(keys, old, mapping)
    plain = set(np.flatnonzero(scores > TAU).tolist())
    far = np.abs(scores - TAU) > 1e-3
    assert new_rows & set(np.flatnonzero(far)) == plain & set(np.flatnonzero(far))
    away = set(np.flatnonzero(np.abs(scores - TAU) > 1.5e-4).tolist())
    assert new_rows & away == old_rows & away
    assert new_rows == old_rows  # and in this run, every row, the band included
    # the crafted rows really sit at the band's edges (a test that could fail)
    assert np.sum(np.abs(np.abs(scores - TAU) - 1.05e-3) < 1e-5) >= 150


def test_rounding_noise_is_far_below_the_smallest_decision(
    keys: GateKeyBundle, crafted: Crafted
) -> None:
    _, exact, _ = crafted
    rounded = MaskedResult.from_bytes(exact.to_bytes())
    diff = _masked_values(keys, rounded) - _masked_values(keys, exact)
    # Slot values are 2·A·(score − τ): a row 1e-3 from τ is at least 2e-3.
    assert np.abs(diff).max() < 2e-3 / 8, np.abs(diff).max()
    assert 1e-6 < diff.std() < 1e-4  # rounding happened, at the predicted size
    budget = noise_budget(exact.params)
    assert budget.margin >= 16


def test_fourteen_bytes_per_row_at_100k(params: ParameterSet) -> None:
    count = -(-100_000 // params.slots)
    v2 = MaskedResult.size_for(params, count)
    v1 = MaskedResult.size_for(params, count, 1)
    assert v1 / 100_000 > 32 and v2 / 100_000 < 14.1
    assert v2 <= v1 / 2


def test_parsing_refuses_malformed_rounded_results(crafted: Crafted) -> None:
    _, exact, _ = crafted
    data = exact.to_bytes()
    again = MaskedResult.from_bytes(data, max_size=len(data))
    assert again.to_bytes() == data
    with pytest.raises(OversizedInputError):
        MaskedResult.from_bytes(data, max_size=len(data) - 1)
    for cut in (len(data) - 1, len(data) - 5, 75, 74, 70, 3):
        with pytest.raises(MalformedInputError):
            MaskedResult.from_bytes(data[:cut])
    for offset, value in ((4, 3), (4, 0), (73, 31), (74, 48), (69, 0)):
        bad = bytearray(data)
        bad[offset] = value
        if offset == 69:
            bad[69:73] = bytes(4)
        with pytest.raises(MalformedInputError):
            MaskedResult.from_bytes(bytes(bad))
    with pytest.raises(MalformedInputError, match="version 1"):
        again.to_bytes(1)  # rounding is one-way


def test_rounded_format_is_refused_for_unrounded_parameter_sets(crafted: Crafted) -> None:
    _, exact, _ = crafted
    v1 = get_parameter_set("ckks-v1")
    assert not supports(v1) and MaskedResult.default_version(v1) == 1
    data = bytearray(exact.to_bytes())
    data[5:37] = v1.hash
    with pytest.raises(MalformedInputError, match="not rounded"):
        MaskedResult.from_bytes(bytes(data))


def test_round_polys_refuses_an_asymmetric_c0(params: ParameterSet, crafted: Crafted) -> None:
    # Half of c0 is dropped because the masking makes it conjugation-symmetric; a result
    # where that does not hold must not be sent (it would decrypt to something else).
    _, exact, _ = crafted
    polys = exact.residues().copy()
    polys[1, 0, :, 5] = (polys[1, 0, :, 5] + 1) % np.array(params.data_primes, dtype=np.uint32)
    with pytest.raises(CryptoError, match="symmetric"):
        round_polys(params, polys)


def test_rounded_body_checks_its_arrays() -> None:
    c0 = np.zeros((1, 2048), np.uint32)
    RoundedPolys(c0=c0, c1=np.zeros((1, 4096), np.uint64))
    with pytest.raises(MalformedInputError):
        RoundedPolys(c0=c0, c1=np.full((1, 4096), 1 << 40, np.uint64))
    with pytest.raises(MalformedInputError):
        RoundedPolys(c0=c0, c1=np.zeros((1, 4095), np.uint64))
    with pytest.raises(MalformedInputError):
        RoundedPolys(c0=c0.astype(np.uint64), c1=np.zeros((1, 4096), np.uint64))

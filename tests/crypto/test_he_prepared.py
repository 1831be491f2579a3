"""Prepared queries: the template-independent half done before the probe arrives."""

from __future__ import annotations

import os

import numpy as np
import pytest

from crypto.errors import MalformedInputError, ParameterMismatchError, PreparedQueryError
from crypto.he import (
    Gallery,
    GateKeyBundle,
    ParameterSet,
    encrypt_probe,
    get_parameter_set,
    prepare_query,
    resolve,
    reveal,
    score_masked,
)
from tests.crypto.conftest import unit_rows
from tests.crypto.test_he_protocol import assert_decisions, near_probe


@pytest.mark.parametrize("rows", [1, 2049, 4100])
def test_prepared_result_is_bit_identical_to_the_fused_path(
    keys: GateKeyBundle, params: ParameterSet, watchlist: np.ndarray, rows: int
) -> None:
    # Same random choices (one rng stream, drawn in the same order) must give the same
    # bytes: the split is an exact rearrangement of modular arithmetic, not an approximation.
    gallery = Gallery.build(watchlist[:rows], params)
    seed = os.urandom(32)
    v = near_probe(np.random.default_rng(rows), watchlist[0].astype(np.float64), 0.7)
    probe = encrypt_probe(keys, v, seed=seed)
    fused, fused_map = score_masked(
        probe, gallery, 0.3, keys.public(), rng=np.random.default_rng(99)
    )
    prepared = prepare_query(keys.public(), gallery, seed, rng=np.random.default_rng(99))
    split, split_map = score_masked(probe, gallery, 0.3, keys.public(), prepared=prepared)
    assert split.to_bytes() == fused.to_bytes()
    assert split_map == fused_map


def test_prepared_query_reveals_the_plaintext_decisions(
    keys: GateKeyBundle, params: ParameterSet, watchlist: np.ndarray
) -> None:
    gallery = Gallery.build(watchlist, params)
    rng = np.random.default_rng(5)
    tau = 0.3
    for target in (0, 4095, 9999):
        seed = os.urandom(32)
        prepared = prepare_query(keys.public(), gallery, seed)
        v = near_probe(rng, watchlist[target].astype(np.float64), 0.75)
        probe = encrypt_probe(keys, v, seed=seed)
        masked, mapping = score_masked(probe, gallery, tau, keys.public(), prepared=prepared)
        rows = resolve(reveal(keys, masked), mapping)
        scores = watchlist.astype(np.float64) @ v
        assert target in rows
        assert_decisions(rows, scores, tau)


def test_a_prepared_query_serves_one_probe_only(
    keys: GateKeyBundle, small_gallery: Gallery
) -> None:
    seed = os.urandom(32)
    prepared = prepare_query(keys.public(), small_gallery, seed)
    v = unit_rows(np.random.default_rng(3), 1, 128)[0].astype(np.float64)
    probe = encrypt_probe(keys, v, seed=seed)
    score_masked(probe, small_gallery, 0.3, keys.public(), prepared=prepared)
    with pytest.raises(PreparedQueryError, match="already used"):
        score_masked(probe, small_gallery, 0.3, keys.public(), prepared=prepared)


def test_a_prepared_query_refuses_another_seed_key_or_gallery(
    keys: GateKeyBundle,
    other_keys: GateKeyBundle,
    params: ParameterSet,
    small_gallery: Gallery,
    watchlist: np.ndarray,
) -> None:
    seed = os.urandom(32)
    prepared = prepare_query(keys.public(), small_gallery, seed)
    v = unit_rows(np.random.default_rng(4), 1, 128)[0].astype(np.float64)
    other_seed = encrypt_probe(keys, v)
    other_key = encrypt_probe(other_keys, v, seed=seed)
    other_gallery = Gallery.build(watchlist[:301], params)
    same = encrypt_probe(keys, v, seed=seed)
    with pytest.raises(PreparedQueryError):
        score_masked(other_seed, small_gallery, 0.3, keys.public(), prepared=prepared)
    with pytest.raises(PreparedQueryError):
        score_masked(other_key, small_gallery, 0.3, other_keys.public(), prepared=prepared)
    with pytest.raises(PreparedQueryError):
        score_masked(same, other_gallery, 0.3, keys.public(), prepared=prepared)
    # None of the refusals used it up: the right probe still gets its result.
    masked, _ = score_masked(same, small_gallery, 0.3, keys.public(), prepared=prepared)
    assert masked.count == small_gallery.ciphertexts


def test_preparation_needs_a_single_ciphertext_set_and_a_full_seed(
    keys: GateKeyBundle, small_gallery: Gallery
) -> None:
    v1 = get_parameter_set("ckks-v1")
    v1_keys = GateKeyBundle.generate(v1)
    with pytest.raises(ParameterMismatchError):
        prepare_query(
            v1_keys.public(),
            Gallery.build(unit_rows(np.random.default_rng(6), 3, 128), v1),
            os.urandom(32),
        )
    with pytest.raises(PreparedQueryError):
        prepare_query(keys.public(), small_gallery, b"short")
    v = unit_rows(np.random.default_rng(7), 1, 128)[0].astype(np.float64)
    with pytest.raises(MalformedInputError):
        encrypt_probe(keys, v, seed=b"short")

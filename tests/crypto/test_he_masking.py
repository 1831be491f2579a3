"""Masking: fresh randomness per query, and magnitudes that do not track the scores."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.he import Gallery, GateKeyBundle, ParameterSet, encrypt_probe, resolve, score_masked
from crypto.he.protocol import _masked_values
from tests.crypto.conftest import unit_rows


@pytest.fixture(scope="module")
def gallery5k(watchlist: np.ndarray, params: ParameterSet) -> Gallery:
    return Gallery.build(watchlist[:5000], params)


def _original_rows(mapping, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row index, value) of every slot that holds a real gallery row."""
    s = mapping.slots
    rows, vals = [], []
    for i, block in enumerate(mapping.order):
        slots = np.arange(s)
        orig = block * s + (slots + mapping.rotations[block]) % s
        keep = orig < mapping.size
        rows.append(orig[keep])
        vals.append(values[i][keep])
    return np.concatenate(rows), np.concatenate(vals)


def test_same_probe_twice_gives_fresh_masking(
    keys: GateKeyBundle, gallery5k: Gallery, watchlist: np.ndarray
) -> None:
    v = unit_rows(np.random.default_rng(11), 1, 128)[0]
    probe = encrypt_probe(keys, v)
    a, map_a = score_masked(probe, gallery5k, 0.05, keys.public())
    b, map_b = score_masked(probe, gallery5k, 0.05, keys.public())
    assert a.to_bytes() != b.to_bytes()
    assert a.query_id != b.query_id
    assert map_a.rotations != map_b.rotations
    # 3 result ciphertexts: 6 orders; over 8 queries all equal has probability 6**-7.
    orders = {score_masked(probe, gallery5k, 0.05, keys.public())[1].order for _ in range(6)}
    assert len(orders | {map_a.order, map_b.order}) > 1
    # ... while the decisions agree away from the threshold
    from crypto.he import reveal

    scores = watchlist[:5000].astype(np.float64) @ v.astype(np.float64)
    differ = set(resolve(reveal(keys, a), map_a)) ^ set(resolve(reveal(keys, b), map_b))
    assert all(abs(scores[i] - 0.05) < 1e-3 for i in differ)


def test_injected_rng_makes_masking_reproducible(keys: GateKeyBundle, gallery5k: Gallery) -> None:
    v = unit_rows(np.random.default_rng(12), 1, 128)[0]
    probe = encrypt_probe(keys, v)
    a, map_a = score_masked(probe, gallery5k, 0.1, keys.public(), rng=np.random.default_rng(1))
    b, map_b = score_masked(probe, gallery5k, 0.1, keys.public(), rng=np.random.default_rng(1))
    assert a.to_bytes() == b.to_bytes() and map_a == map_b


def test_padding_slots_are_negative_even_for_a_negative_threshold(
    keys: GateKeyBundle, gallery5k: Gallery, params: ParameterSet
) -> None:
    v = unit_rows(np.random.default_rng(13), 1, 128)[0]
    masked, mapping = score_masked(encrypt_probe(keys, v), gallery5k, -0.99, keys.public())
    values = _masked_values(keys, masked)
    rows, vals = _original_rows(mapping, values)
    assert len(rows) == 5000 and (vals > 0).all()  # every real row beats τ = −0.99
    assert (values > 0).sum() == 5000  # ... and every padding slot is negative


def test_magnitudes_are_not_a_function_of_the_scores(
    keys: GateKeyBundle, gallery5k: Gallery, watchlist: np.ndarray, params: ParameterSet
) -> None:
    """What the gate decrypts is A·(score − τ) with A fresh per slot and per query.

    Statistical test over 5,000 rows and two queries of the same probe: the implied
    scale A = value / (score − τ) spans a wide range, is not correlated with the score,
    and differs between the two queries for the same row.
    """
    tau = 0.0
    v = unit_rows(np.random.default_rng(14), 1, 128)[0].astype(np.float64)
    scores = watchlist[:5000].astype(np.float64) @ v
    probe = encrypt_probe(keys, v)
    scale = []
    for _ in range(2):
        masked, mapping = score_masked(probe, gallery5k, tau, keys.public())
        rows, vals = _original_rows(mapping, _masked_values(keys, masked))
        implied = np.empty(5000)
        implied[rows] = vals / (scores[rows] - tau)
        scale.append(implied)
    a1, a2 = scale
    ok = np.abs(scores - tau) > 0.01
    assert (a1[ok] > 0).all() and (a2[ok] > 0).all()  # signs preserved
    lo, hi = np.percentile(a1[ok], [5, 95])
    assert hi / lo > 20  # wide range
    assert a1[ok].max() <= 2 * (params.mask_weight**2 + 1) * 1.01
    # Not a function of the score: rank correlation with the score is ~0 …
    rank_s = np.argsort(np.argsort(scores[ok]))
    rank_a = np.argsort(np.argsort(a1[ok]))
    assert abs(np.corrcoef(rank_s, rank_a)[0, 1]) < 0.06
    # … and the same row gets unrelated scales in two queries.
    assert abs(np.corrcoef(np.log(a1[ok]), np.log(a2[ok]))[0, 1]) < 0.06
    # What the gate sees for the hits: the score explains only a minority of the spread
    # of log-magnitudes (the rest is the fresh mask). Measured R² ≈ 0.3; see
    # docs/crypto.md for this residual ranking leakage.
    hits = scores > tau + 0.01
    seen = np.log(a1[hits] * (scores[hits] - tau))
    r2 = np.corrcoef(seen, np.log(scores[hits] - tau))[0, 1] ** 2
    assert r2 < 0.5

"""ckks-v1 stays usable: gates with v1 keys upload pre-rotated ciphertexts.

ckks-v2 is the default; these tests keep the released v1 set working end to end
(including its only SEAL key switch, used for d > 512) so existing v1 keys are not
stranded before they rotate.
"""

from __future__ import annotations

import numpy as np
import pytest

from crypto.he import (
    Gallery,
    GateKeyBundle,
    ParameterSet,
    Probe,
    PublicKeyBundle,
    encrypt_probe,
    get_parameter_set,
    resolve,
    reveal,
    score_masked,
)
from crypto.he.protocol import debug_scores
from tests.crypto.conftest import unit_rows
from tests.crypto.test_he_protocol import assert_decisions, near_probe


@pytest.fixture(scope="module")
def v1() -> ParameterSet:
    return get_parameter_set("ckks-v1")


@pytest.fixture(scope="module")
def v1_keys(v1: ParameterSet) -> GateKeyBundle:
    return GateKeyBundle.generate(v1)


def test_v1_hash_is_unchanged(v1: ParameterSet) -> None:
    # Registered keys and stored probes carry this hash: it must never move.
    assert v1.hash.hex().startswith("80c4075cd2b6e51f")
    assert not v1.single_ciphertext


def test_v1_round_trip_uploads_every_rotation(
    v1: ParameterSet, v1_keys: GateKeyBundle, watchlist: np.ndarray
) -> None:
    templates = watchlist[:3000]
    gallery = Gallery.build(templates, v1)
    rng = np.random.default_rng(11)
    v = near_probe(rng, templates[100].astype(np.float64), 0.7)
    probe = Probe.from_bytes(encrypt_probe(v1_keys, v).to_bytes())
    assert len(probe.seeds) == 64
    public = PublicKeyBundle.from_bytes(v1_keys.public().to_bytes())
    scores = templates.astype(np.float64) @ v
    assert np.abs(debug_scores(probe, gallery, public, v1_keys) - scores).max() < 1e-4
    masked, mapping = score_masked(probe, gallery, 0.05, public)
    rows = resolve(reveal(v1_keys, masked), mapping)
    assert 100 in rows
    assert_decisions(rows, scores, 0.05)


def test_v1_dimension_1024_uses_a_seal_rotation(v1: ParameterSet, v1_keys: GateKeyBundle) -> None:
    # d = 1024: 512 diagonals; the gate sends 256, the service rotates the rest with the
    # bundle's one SEAL Galois key (documented bound 5e-4).
    rng = np.random.default_rng(4)
    templates = unit_rows(rng, 40, 1024)
    gallery = Gallery.build(templates, v1)
    v = near_probe(rng, templates[5].astype(np.float64), 0.8)
    probe = encrypt_probe(v1_keys, v)
    scores = debug_scores(probe, gallery, v1_keys.public(), v1_keys)
    assert np.abs(scores - templates.astype(np.float64) @ v).max() < 5e-4
    masked, mapping = score_masked(probe, gallery, 0.5, v1_keys.public())
    assert resolve(reveal(v1_keys, masked), mapping) == [5]

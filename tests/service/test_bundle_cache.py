"""HE key caches: a ckks-v2 bundle is ~4 MB, so scoring workers keep the keys they have
seen (by gate-key reference) and the parent reads a bundle only when a worker asks."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.he import GateKeyBundle, encrypt_probe, get_parameter_set
from service import he_worker
from service.gates import _BundleCache


@pytest.fixture(scope="module")
def two_gates() -> tuple[GateKeyBundle, GateKeyBundle]:
    params = get_parameter_set("ckks-v2")
    return GateKeyBundle.generate(params), GateKeyBundle.generate(params)


def test_parent_cache_keeps_the_most_recently_used() -> None:
    cache = _BundleCache(size=2)
    cache.put("a", b"A")
    cache.put("b", b"B")
    assert cache.get("a") == b"A"  # "a" is now the most recent
    cache.put("c", b"C")
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (b"A", b"C")


def test_worker_asks_for_the_bundle_once_then_scores_from_its_cache(
    two_gates: tuple[GateKeyBundle, GateKeyBundle],
) -> None:
    mine, theirs = two_gates
    he_worker.init_worker(np.eye(4, 128, dtype=np.float32), "ckks-v2", key_cache_size=1)
    probe = encrypt_probe(mine, np.eye(1, 128)[0]).to_bytes()
    with pytest.raises(he_worker.BundleNeeded) as needed:
        he_worker.score(probe, "key-mine", None, 0.5)
    assert needed.value.key_ref == "key-mine"
    he_worker.score(probe, "key-mine", mine.public().to_bytes(), 0.5)
    result, _, _, _ = he_worker.score(probe, "key-mine", None, 0.5)  # no bytes: cached
    assert len(result) > 0
    cached = he_worker._KEYS["key-mine"]
    assert cached.galois_keys is None  # serialized rotation keys dropped, arrays kept
    # d = 128 needs steps 1..15 and 16, 32, 48: 18 of the 30 keys are kept.
    assert cached.rotation_key_steps == (*range(1, 16), 16, 32, 48)
    assert cached.rotation_keys()[0].shape[0] == 18
    # Capacity 1: another gate's key evicts this one, which must then be sent again.
    he_worker.score(
        encrypt_probe(theirs, np.eye(1, 128)[0]).to_bytes(),
        "key-theirs",
        theirs.public().to_bytes(),
        0.5,
    )
    with pytest.raises(he_worker.BundleNeeded):
        he_worker.score(probe, "key-mine", None, 0.5)


def test_worker_refuses_malformed_bundles_with_typed_errors() -> None:
    from crypto.errors import CryptoError, MalformedInputError

    with pytest.raises(CryptoError):  # unknown parameter hash
        he_worker._scoring_key("k", b"VMPK\x01" + bytes(80))
    with pytest.raises(MalformedInputError):
        he_worker._scoring_key("k", b"")

"""HE public bundle caches: ckks-v2 bundles are ~4 MB, so neither the parent (database
read per match) nor a scoring worker (parse per query) handles them per request; both
caches must stay exact."""

from __future__ import annotations

import pytest

from crypto.he import GateKeyBundle, PublicKeyBundle, get_parameter_set
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


def test_worker_reuses_a_parsed_bundle_only_for_identical_bytes(
    two_gates: tuple[GateKeyBundle, GateKeyBundle],
) -> None:
    mine, theirs = two_gates
    blob = mine.public().to_bytes()
    first = he_worker._public_bundle(blob)
    assert he_worker._public_bundle(bytes(blob)) is first  # equal bytes: cache hit
    # Same key id and public key, other rotation keys: must be parsed again, not served
    # from the cache (the cache is keyed by key id but checked against the bytes).
    public = mine.public()
    swapped = PublicKeyBundle(
        public.params, public.key_id, public.public_key, theirs.public().galois_keys
    ).to_bytes()
    second = he_worker._public_bundle(swapped)
    assert second is not first
    assert second.galois_keys == theirs.public().galois_keys


def test_worker_refuses_malformed_bundles_with_typed_errors() -> None:
    from crypto.errors import CryptoError, MalformedInputError

    with pytest.raises(CryptoError):  # unknown parameter hash
        he_worker._public_bundle(b"VMPK\x01" + bytes(80))
    with pytest.raises(MalformedInputError):
        he_worker._public_bundle(b"")

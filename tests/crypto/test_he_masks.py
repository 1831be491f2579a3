"""Mask material: what the kernel generates, and the pool's single-use guarantees."""

from __future__ import annotations

import multiprocessing
import pickle
import time

import numpy as np
import pytest

from crypto.he import Gallery, GateKeyBundle, ParameterSet, encrypt_probe, resolve, reveal
from crypto.he._kernels import WORDS_PER_COEFF
from crypto.he._seal import backend
from crypto.he.masks import MaskPool, _random_words, generate_units, unit_bytes
from crypto.he.protocol import score_masked
from tests.crypto.conftest import unit_rows


def _reference_unit(params: ParameterSet, words: np.ndarray) -> np.ndarray:
    """The documented sampling, in numpy, NTT'd by SEAL itself (not the numba NTT)."""
    be = backend(params)
    n, s = params.poly_degree, params.slots
    u = (words[:n] % np.uint64(3)).astype(np.int64) - 1
    flood = (words[n : 2 * n] >> np.uint64(63 - params.flood_bits)).astype(np.int64)
    flood -= 1 << params.flood_bits
    e = words[2 * n : 3 * n]
    low = (1 << 21) - 1
    e2 = np.bitwise_count(e & np.uint64(low)).astype(np.int64) - np.bitwise_count(
        (e >> np.uint64(21)) & np.uint64(low)
    ).astype(np.int64)
    h = np.zeros(n, dtype=np.int64)
    for w in words[3 * n : 3 * n + params.mask_weight]:
        h[int(w) & (n - 1)] += 1 if int(w) >> 63 else -1
    spec = be.ntt(np.stack([h, u, flood, e2]))[..., be.slot_to_ntt].astype(object)
    q = np.array(params.data_primes, dtype=object).reshape(-1, 1)
    unit = np.empty((3, len(params.data_primes), n), dtype=object)
    unit[0, :, :s] = (1 + spec[0][:, :s] * spec[0][:, s:]) % q
    unit[0, :, s:] = (spec[2][:, :s] + spec[2][:, s:]) % q
    unit[1] = spec[1]
    unit[2] = spec[3]
    return unit.astype(np.uint32)


def test_units_follow_the_documented_sampling(params: ParameterSet) -> None:
    rng = np.random.default_rng(41)
    units = generate_units(params, 3, rng=np.random.default_rng(41), parallel=False)
    words = _random_words(params, 3, rng)
    assert words.shape[1] == WORDS_PER_COEFF * params.poly_degree + params.mask_weight
    for m in range(3):
        assert np.array_equal(units[m], _reference_unit(params, words[m]))
    parallel = generate_units(params, 3, rng=np.random.default_rng(41))
    assert np.array_equal(parallel, units)


def test_mask_scale_is_real_positive_and_bounded(params: ParameterSet) -> None:
    be = backend(params)
    (unit,) = generate_units(params, 1)
    a_slots = np.concatenate([unit[0, :, : params.slots]] * 2, axis=1)  # A is self-conjugate
    residues = np.empty_like(a_slots, dtype=np.uint64)
    residues[:, be.slot_to_ntt] = a_slots
    a = be.decode_residues(residues, 1.0)
    assert np.abs(a.imag).max() < 1e-6
    assert a.real.min() >= 1 - 1e-6 and a.real.max() <= params.mask_weight**2 + 1 + 1e-6
    assert a.real.max() / a.real.min() > 20  # a wide range of scales


def test_taken_units_are_never_handed_out_again(params: ParameterSet) -> None:
    pool = MaskPool(params, max_bytes=10 * unit_bytes(params))
    assert pool.fill(7) == 7 and pool.level == 7
    first, pooled_first = pool.take(3)
    second, pooled_second = pool.take(3)
    third, pooled_third = pool.take(3)  # one left in the pool, two made on the spot
    assert (pooled_first, pooled_second, pooled_third) == (3, 3, 1)
    assert pool.level == 0 and pool.served == 7 and pool.generated_cold == 2
    seen = {u.tobytes() for u in np.concatenate([first, second, third])}
    assert len(seen) == 9  # all distinct: nothing was reused
    # Steady state: chunks are produced at the last query's size and handed over whole
    # (no copy), frozen.
    pool.fill(3)
    whole, pooled = pool.take(3)
    assert pooled == 3 and not whole.flags.writeable and whole.tobytes() not in seen


def test_empty_pool_falls_back_to_fresh_units(params: ParameterSet) -> None:
    pool = MaskPool(params, max_bytes=0)
    assert pool.capacity == 0 and pool.fill() == 0
    units, pooled = pool.take(2)
    assert pooled == 0 and units.shape == (2, 3, 2, params.poly_degree)
    assert pool.generated_cold == 2 and not np.array_equal(units[0], units[1])
    with pytest.raises(ValueError):
        pool.take(0)


def test_pool_cannot_be_copied(params: ParameterSet) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(MaskPool(params))


_FORKED: MaskPool | None = None


def _level_in_child(queue: multiprocessing.Queue[int]) -> None:
    assert _FORKED is not None
    queue.put(_FORKED.level)


def test_forked_child_starts_with_an_empty_pool(params: ParameterSet) -> None:
    global _FORKED
    _FORKED = MaskPool(params, max_bytes=4 * unit_bytes(params))
    _FORKED.fill(4)
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[int] = ctx.Queue()
    child = ctx.Process(target=_level_in_child, args=(queue,))
    child.start()
    level = queue.get(timeout=60)
    child.join(timeout=60)
    assert level == 0  # the child must not reuse the parent's units
    assert _FORKED.level == 4  # the parent keeps its own
    _FORKED = None


def test_background_filler_tops_the_pool_up(params: ParameterSet) -> None:
    pool = MaskPool(params, max_bytes=6 * unit_bytes(params), queries_ahead=3)
    pool.take(2)  # sets the chunk size: target = min(6, 3 × 2)
    pool.start()
    try:
        deadline = time.monotonic() + 120
        while pool.level < pool.target and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.level == pool.target == 6
    finally:
        pool.close()
    assert pool.level == 0


def test_scoring_consumes_the_pool_and_still_decides_correctly(
    keys: GateKeyBundle, watchlist: np.ndarray, params: ParameterSet
) -> None:
    gallery = Gallery.build(watchlist[:5000], params)
    pool = MaskPool(params, max_bytes=8 * unit_bytes(params))
    pool.fill(gallery.ciphertexts)
    v = unit_rows(np.random.default_rng(42), 1, 128)[0].astype(np.float64)
    scores = watchlist[:5000].astype(np.float64) @ v
    masked, mapping = score_masked(encrypt_probe(keys, v), gallery, 0.05, keys.public(), pool=pool)
    assert pool.served == gallery.ciphertexts and pool.generated_cold == 0 and pool.level == 0
    rows = set(resolve(reveal(keys, masked), mapping))
    want = set(np.flatnonzero(scores > 0.05).tolist())
    assert rows ^ want <= set(np.flatnonzero(np.abs(scores - 0.05) <= 1e-3).tolist())
    assert 0 < len(rows) < 5000

"""The service scores in worker processes: the gallery pickles, SEAL state is per process."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from crypto.he import Gallery, GateKeyBundle, Probe, resolve, reveal
from tests.crypto.conftest import unit_rows

_GALLERY: Gallery | None = None


def _init(blob: bytes) -> None:
    global _GALLERY
    _GALLERY = pickle.loads(blob)


def _score(probe: bytes, public: bytes, threshold: float) -> tuple[bytes, object]:
    from crypto.he import PublicKeyBundle, score_masked

    assert _GALLERY is not None
    parsed = Probe.from_bytes(probe)
    masked, mapping = score_masked(parsed, _GALLERY, threshold, PublicKeyBundle.from_bytes(public))
    return masked.to_bytes(), mapping


def test_scoring_in_a_spawned_worker(keys: GateKeyBundle, watchlist: np.ndarray) -> None:
    from crypto.he import MaskedResult, encrypt_probe

    gallery = Gallery.build(watchlist[:3000], keys.params)
    v = unit_rows(np.random.default_rng(31), 1, 128)[0].astype(np.float64)
    scores = watchlist[:3000].astype(np.float64) @ v
    probe = encrypt_probe(keys, v).to_bytes()
    ctx = multiprocessing.get_context("spawn")  # nothing SEAL-related is inherited
    with ProcessPoolExecutor(
        1, mp_context=ctx, initializer=_init, initargs=(pickle.dumps(gallery),)
    ) as pool:
        data, mapping = pool.submit(_score, probe, keys.public().to_bytes(), 0.1).result()
    rows = resolve(reveal(keys, MaskedResult.from_bytes(data)), mapping)  # type: ignore[arg-type]
    want = np.flatnonzero(scores > 0.1)
    near = np.abs(scores - 0.1) <= 1e-3
    assert set(rows) ^ set(want.tolist()) <= set(np.flatnonzero(near).tolist())
    assert len(rows) > 0

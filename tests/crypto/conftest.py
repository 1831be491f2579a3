"""Shared HE fixtures: keys and galleries are expensive, so they are module/session scoped."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.he import Gallery, GateKeyBundle, ParameterSet, get_parameter_set


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    t = rng.standard_normal((n, d))
    return np.asarray(t / np.linalg.norm(t, axis=1, keepdims=True), dtype=np.float32)


@pytest.fixture(scope="session")
def params() -> ParameterSet:
    return get_parameter_set("ckks-v2")


@pytest.fixture(scope="session")
def keys(params: ParameterSet) -> GateKeyBundle:
    return GateKeyBundle.generate(params)


@pytest.fixture(scope="session")
def other_keys(params: ParameterSet) -> GateKeyBundle:
    return GateKeyBundle.generate(params)


@pytest.fixture(scope="session")
def watchlist() -> np.ndarray:
    """10,000 random unit templates of dimension 128 (seeded)."""
    return unit_rows(np.random.default_rng(20261127), 10_000, 128)


@pytest.fixture(scope="session")
def small_gallery(watchlist: np.ndarray, params: ParameterSet) -> Gallery:
    return Gallery.build(watchlist[:300], params)

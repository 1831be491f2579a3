"""The kernels' named argument groups refuse what a positional call would take silently."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.he import GateKeyBundle, ParameterSet
from crypto.he._seal import backend
from crypto.he._specs import KernelSpecError, NttTables, Primes, ProbeExpansion, QueryLayout
from crypto.he.rotkeys import RotationKeyPair, RotationPlan


def test_query_layout_tells_position_from_visit() -> None:
    rng = np.random.default_rng(1)
    rotations = rng.integers(0, 2048, size=49).astype(np.int64)
    order = rng.permutation(49).astype(np.int64)
    layout = QueryLayout.of(rotations, order, 2048)
    assert np.array_equal(layout.position[order], np.arange(49))
    # The two int64 permutations swapped: a positional call would run on garbage.
    with pytest.raises(KernelSpecError, match="order of rotation"):
        QueryLayout(rotations=rotations, position=layout.visit, visit=layout.position)
    with pytest.raises(KernelSpecError, match="not a permutation"):
        QueryLayout(rotations=rotations, position=np.zeros(49, np.int64), visit=layout.visit)
    with pytest.raises(KernelSpecError, match="outside"):
        QueryLayout.of(rotations + 2048, order, 2048)


def test_arrays_are_checked_for_dtype_shape_and_contiguity(params: ParameterSet) -> None:
    be = backend(params)
    primes = Primes.of(be.q)
    n, k = params.poly_degree, len(params.data_primes)
    c0 = np.zeros((1, k, n), np.uint32)
    words = np.zeros((1, k, n), np.uint64)
    out = np.zeros((4, 2, k, n), np.uint32)
    ProbeExpansion(c0=c0, c1_words=words, primes=primes, to_ntt=be.slot_to_ntt, out=out)
    bad: list[dict[str, np.ndarray]] = [
        {"c0": words.copy(), "c1_words": c0},  # the two inputs swapped
        {"out": np.zeros((4, 2, k, n), np.uint64)},
        {"out": np.zeros((4, 2, k, n + 1), np.uint32)},
        {"to_ntt": np.asfortranarray(np.zeros((2, n), np.int64))[0]},
        {"out": np.zeros((2, 4, k, n), np.uint32).transpose(1, 0, 2, 3)},
    ]
    readonly = out.copy()
    readonly.setflags(write=False)
    bad.append({"out": readonly})
    for change in bad:
        args: dict[str, np.ndarray] = {
            "c0": c0,
            "c1_words": words,
            "to_ntt": be.slot_to_ntt,
            "out": out,
        }
        args.update(change)
        with pytest.raises(KernelSpecError):
            ProbeExpansion(primes=primes, **args)
    with pytest.raises(KernelSpecError, match="belong"):
        Primes(q=primes.q, r32=primes.mu, mu=primes.r32)


def test_ntt_tables_and_rotation_plans_refuse_swaps(
    params: ParameterSet, keys: GateKeyBundle
) -> None:
    psi_rev, psi_shoup = backend(params).ntt_tables
    NttTables(psi_rev=psi_rev, psi_shoup=psi_shoup)
    with pytest.raises(KernelSpecError, match="Shoup"):
        NttTables(psi_rev=psi_shoup, psi_shoup=psi_rev)
    pair = keys.public().rotation_key_pair()
    plan = RotationPlan.of(pair, [0, 0], [1, 16], [1, 16])
    plan.check(pair, 1, 64)
    swapped = RotationPlan(
        source=plan.source, steps=plan.key_index, key_index=plan.steps, target=plan.target
    )
    with pytest.raises(KernelSpecError):
        swapped.check(pair, 1, 64)
    with pytest.raises(KernelSpecError, match="out of range"):
        plan.check(pair, 1, 8)
    with pytest.raises(KernelSpecError):
        RotationKeyPair(steps=pair.steps, b=pair.b, a=pair.a[:, :1])

"""SEAL layout checks and the automorphism index maps the fast path relies on."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.errors import LayoutError, UnknownParameterSetError
from crypto.he import ParameterSet, get_parameter_set
from crypto.he._seal import backend


def test_backend_layout_self_check_passes(params: ParameterSet) -> None:
    be = backend(params)
    assert be.k == len(params.data_primes) == 2
    assert sorted(be.exponents % 2) == [1] * params.poly_degree


@pytest.mark.parametrize("steps", [1, 7, 100, 2047])
def test_rotation_permutation_matches_slot_rotation(params: ParameterSet, steps: int) -> None:
    be = backend(params)
    rng = np.random.default_rng(steps)
    x = rng.standard_normal(params.slots) + 1j * rng.standard_normal(params.slots)
    res = be.encode(x, 2.0**30)
    rotated = be.decode_residues(res[:, be.galois_perm(be.rotation_elt(steps))], 2.0**30)
    assert np.abs(rotated - np.roll(x, -steps)).max() < 1e-6


def test_conjugation_permutation(params: ParameterSet) -> None:
    be = backend(params)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(params.slots) + 1j * rng.standard_normal(params.slots)
    res = be.encode(x, 2.0**30)
    assert (
        np.abs(be.decode_residues(res[:, be.galois_perm(be.conj_elt)], 2.0**30) - x.conj()).max()
        < 1e-6
    )


def test_ntt_of_constant_is_constant(params: ParameterSet) -> None:
    be = backend(params)
    poly = np.zeros((1, params.poly_degree), dtype=np.int64)
    poly[0, 0] = -5
    out = be.ntt(poly)[0]
    for p, q in enumerate(params.data_primes):
        assert (out[p] == q - 5).all()


def test_layout_mismatch_is_loud(params: ParameterSet, monkeypatch: pytest.MonkeyPatch) -> None:
    import crypto.he._seal as mod

    monkeypatch.setattr(mod, "_CT_OFFSET", mod._CT_OFFSET + 8)
    with pytest.raises(LayoutError):
        mod.Backend(params)


def test_parameter_sets_are_named_and_hashed(params: ParameterSet) -> None:
    assert get_parameter_set(params.hash) is params
    assert len(params.hash) == 32
    with pytest.raises(UnknownParameterSetError):
        get_parameter_set("ckks-v0")
    with pytest.raises(UnknownParameterSetError):
        get_parameter_set(b"\x00" * 32)


def test_parameter_set_invariants(params: ParameterSet) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError):
        replace(params, name="x", poly_degree=3000)
    with pytest.raises(ValueError):
        replace(params, name="x", primes=(params.primes[0],))
    with pytest.raises(ValueError):
        replace(params, name="x", probe_scale_bits=40)  # overflows the modulus
    with pytest.raises(ValueError):
        replace(params, name="x", primes=(2**31 + 1, *params.primes[1:]))

"""RFC 9162 proofs against the naive oracle, over many random sizes, plus edge cases."""

from __future__ import annotations

import hashlib
import hmac
import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import rfc9162
from audit.errors import (
    ProofLengthError,
    ProofPreconditionError,
    RootMismatchError,
)
from audit.rfc9162 import (
    consistency_plan,
    fold,
    hash_children,
    hash_leaf,
    inclusion_plan,
    root_from_leaf_hashes,
    root_plan,
    verify_consistency,
    verify_inclusion,
)
from tests.audit import naive_merkle as naive


def _data(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


def _all_nodes(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree hash, computed from the naive MTH (independent of the code)."""
    out: dict[tuple[int, int], bytes] = {}
    n = len(leaves)
    level = 0
    while (1 << level) <= n:
        for i in range(n >> level):
            out[(level, i)] = naive.mth(leaves[i << level : (i + 1) << level])
        level += 1
    return out


def _inclusion(index: int, leaves: list[bytes]) -> list[bytes]:
    nodes = _all_nodes(leaves)
    return [fold(run, nodes) for run in inclusion_plan(index, len(leaves))]


def _consistency(m: int, leaves: list[bytes]) -> list[bytes]:
    nodes = _all_nodes(leaves)
    return [fold(run, nodes) for run in consistency_plan(m, len(leaves))]


sizes = st.integers(min_value=1, max_value=300)


@settings(max_examples=150, deadline=None)
@given(n=sizes, data=st.data())
def test_inclusion_matches_naive_and_verifies(n, data):
    leaves = _data(n)
    m = data.draw(st.integers(0, n - 1))
    proof = _inclusion(m, leaves)
    assert proof == naive.path(m, leaves)
    root = naive.mth(leaves)
    verify_inclusion(m, n, naive.leaf(leaves[m]), proof, root)


@settings(max_examples=150, deadline=None)
@given(n=sizes, data=st.data())
def test_consistency_matches_naive_and_verifies(n, data):
    leaves = _data(n)
    m = data.draw(st.integers(0, n))
    proof = _consistency(m, leaves)
    assert proof == naive.proof(m, leaves)
    verify_consistency(m, n, naive.mth(leaves[:m]), naive.mth(leaves), proof)


@settings(max_examples=100, deadline=None)
@given(n=sizes)
def test_roots_match_naive(n):
    leaves = _data(n)
    expected = naive.mth(leaves)
    assert root_from_leaf_hashes([hash_leaf(x) for x in leaves]) == expected
    assert fold(root_plan(n), _all_nodes(leaves)) == expected


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 200), data=st.data())
def test_any_flipped_bit_in_inclusion_proof_is_rejected(n, data):
    leaves = _data(n)
    m = data.draw(st.integers(0, n - 1))
    proof = _inclusion(m, leaves)
    if not proof:
        return
    i = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    bad = bytearray(proof[i])
    bad[bit // 8] ^= 1 << (bit % 8)
    proof[i] = bytes(bad)
    with pytest.raises(RootMismatchError):
        verify_inclusion(m, n, naive.leaf(leaves[m]), proof, naive.mth(leaves))


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 200), data=st.data())
def test_any_flipped_bit_in_consistency_proof_is_rejected(n, data):
    leaves = _data(n)
    m = data.draw(st.integers(1, n - 1))
    proof = _consistency(m, leaves)
    i = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    bad = bytearray(proof[i])
    bad[bit // 8] ^= 1 << (bit % 8)
    proof[i] = bytes(bad)
    with pytest.raises(RootMismatchError):
        verify_consistency(m, n, naive.mth(leaves[:m]), naive.mth(leaves), proof)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 200), data=st.data())
def test_wrong_leaf_or_index_is_rejected(n, data):
    leaves = _data(n)
    m = data.draw(st.integers(0, n - 1))
    other = data.draw(st.integers(0, n - 1).filter(lambda x: x != m))
    proof = _inclusion(m, leaves)
    root = naive.mth(leaves)
    with pytest.raises(RootMismatchError):
        verify_inclusion(m, n, naive.leaf(leaves[other]), proof, root)
    # The same proof claimed for another index: either its length is wrong or it fails.
    with pytest.raises((RootMismatchError, ProofLengthError)):
        verify_inclusion(other, n, naive.leaf(leaves[m]), proof, root)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 64, 256, 1024])
def test_powers_of_two(n):
    leaves = _data(n)
    root = naive.mth(leaves)
    for m in {0, n // 2, n - 1}:
        verify_inclusion(m, n, naive.leaf(leaves[m]), _inclusion(m, leaves), root)
    for m in {1, n // 2, n - 1, n}:
        if m:
            verify_consistency(m, n, naive.mth(leaves[:m]), root, _consistency(m, leaves))


def test_size_zero_and_one():
    assert root_from_leaf_hashes([]) == hashlib.sha256(b"").digest()
    assert root_plan(0) == []
    one = _data(1)
    root = naive.mth(one)
    assert root == hash_leaf(one[0])
    verify_inclusion(0, 1, hash_leaf(one[0]), [], root)
    verify_consistency(0, 1, rfc9162.EMPTY_ROOT, root, [])
    verify_consistency(0, 0, rfc9162.EMPTY_ROOT, rfc9162.EMPTY_ROOT, [])
    verify_consistency(1, 1, root, root, [])
    with pytest.raises(ProofPreconditionError):
        verify_inclusion(0, 0, hash_leaf(b""), [], rfc9162.EMPTY_ROOT)
    with pytest.raises(ProofPreconditionError):
        inclusion_plan(0, 0)


def test_old_size_equal_new_size():
    leaves = _data(7)
    root = naive.mth(leaves)
    verify_consistency(7, 7, root, root, [])
    with pytest.raises(RootMismatchError):
        verify_consistency(7, 7, root, naive.mth(_data(8)[1:]), [])
    # A non-empty proof for equal sizes is too long.
    with pytest.raises(ProofLengthError):
        verify_consistency(7, 7, root, root, [root])


def test_preconditions_checked_first():
    leaves = _data(5)
    root = naive.mth(leaves)
    with pytest.raises(ProofPreconditionError):
        verify_inclusion(5, 5, hash_leaf(leaves[0]), [], root)
    with pytest.raises(ProofPreconditionError):
        verify_inclusion(-1, 5, hash_leaf(leaves[0]), [], root)
    with pytest.raises(ProofPreconditionError):
        verify_consistency(6, 5, root, root, [])
    with pytest.raises(ProofPreconditionError):
        consistency_plan(3, 2)


@pytest.mark.parametrize("n,m", [(5, 2), (8, 3), (13, 12), (300, 17)])
def test_proof_too_long_too_short_or_with_garbage_in_front(n, m):
    leaves = _data(n)
    root = naive.mth(leaves)
    good = _inclusion(m, leaves)
    lh = naive.leaf(leaves[m])
    garbage = hashlib.sha256(b"garbage").digest()
    for bad in (good[:-1], [*good, garbage], [garbage, *good], good[1:]):
        with pytest.raises(ProofLengthError):
            verify_inclusion(m, n, lh, bad, root)
    short_hash = [*good[:-1], good[-1][:31]]
    with pytest.raises(ProofLengthError):
        verify_inclusion(m, n, lh, short_hash, root)
    cgood = _consistency(m, leaves)
    old = naive.mth(leaves[:m])
    for bad in (cgood[:-1], [*cgood, garbage], [garbage, *cgood]):
        with pytest.raises(ProofLengthError):
            verify_consistency(m, n, old, root, bad)


def test_consistency_from_a_different_prefix_is_rejected():
    a = _data(10)
    b = [*_data(4), b"forged", *_data(10)[5:]]
    proof = _consistency(6, b)
    with pytest.raises(RootMismatchError):
        verify_consistency(6, 10, naive.mth(a[:6]), naive.mth(b), proof)


def test_known_answer_rfc9162_empty_and_single_leaf():
    # From the definition in RFC 9162 §2.1.1 (values checked with `printf '' | sha256sum`
    # and `printf '\x00' | sha256sum`).
    assert rfc9162.EMPTY_ROOT.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert hash_leaf(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert hash_children(b"\x00" * 32, b"\x00" * 32) == hashlib.sha256(b"\x01" + bytes(64)).digest()


def test_comparisons_are_constant_time():
    assert rfc9162.ct_equal(b"a" * 32, b"a" * 32)
    # Every root comparison goes through hmac.compare_digest, never `==`.
    source = inspect.getsource(rfc9162)
    assert "hmac.compare_digest" in source
    for fn in (verify_inclusion, verify_consistency):
        body = inspect.getsource(fn)
        assert "ct_equal(" in body and " == root" not in body and "== old_root" not in body
    assert rfc9162.ct_equal is not None and hmac.compare_digest(b"x", b"x")

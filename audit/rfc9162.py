"""Pure RFC 9162 Merkle tree functions over bytes and ints.

No I/O and no database here: proofs are *planned* as lists of perfect subtrees
(:data:`Node` = ``(level, index)``, covering leaves ``[index << level, (index + 1) <<
level)``), the caller fetches those hashes however it stores them (one SQL query, a
tile cache), and :func:`fold` turns them into proof hashes. Any range that appears in
an RFC 9162 proof is a run of perfect subtrees, so a proof needs O(log n) stored
hashes and no rebuild.

Hashing is SHA-256 with the domain-separation prefixes of RFC 9162 §2.1.1. Every
verifier checks its preconditions and the proof length before hashing, compares in
constant time, and raises (never returns a bool).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from audit.errors import ProofLengthError, ProofPreconditionError, RootMismatchError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "Node",
    "consistency_plan",
    "ct_equal",
    "fold",
    "hash_children",
    "hash_leaf",
    "inclusion_plan",
    "root_from_leaf_hashes",
    "root_plan",
    "subtree_nodes",
    "verify_consistency",
    "verify_inclusion",
]

#: RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0)).
LEAF_PREFIX = b"\x00"
#: RFC 9162 §2.1.1: MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])).
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
#: RFC 9162 §2.1.1: the hash of an empty list is the hash of an empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]
"""A perfect subtree ``(level, index)``: leaves ``[index << level, (index + 1) << level)``."""


def hash_leaf(data: bytes) -> bytes:
    """RFC 9162 leaf hash of ``data``."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def ct_equal(a: bytes, b: bytes) -> bool:
    """Constant-time equality of two hashes (no early exit on the first differing byte)."""
    return hmac.compare_digest(a, b)


def _largest_pow2_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (requires n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_nodes(start: int, end: int) -> list[Node]:
    """Perfect subtrees covering ``[start, end)``, left to right, largest first.

    Requires ``0 <= start < end`` and ``start`` aligned to the smallest power of two
    ≥ ``end - start`` (true for every range RFC 9162 proofs and roots use). Then
    ``MTH(D[start:end])`` is the right fold of these nodes' hashes (see :func:`fold`).
    """
    if not 0 <= start < end:
        raise ProofPreconditionError(f"empty or negative range [{start}, {end})")
    out: list[Node] = []
    pos = start
    while pos < end:
        level = (end - pos).bit_length() - 1
        while pos & ((1 << level) - 1):
            level -= 1
        out.append((level, pos >> level))
        pos += 1 << level
    return out


def root_plan(size: int) -> list[Node]:
    """Nodes whose right fold is the root of a tree of ``size`` leaves (empty for 0)."""
    if size < 0:
        raise ProofPreconditionError(f"negative tree size {size}")
    return subtree_nodes(0, size) if size else []


def inclusion_plan(index: int, size: int) -> list[list[Node]]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]) as node runs, leaf side first.

    Requires ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ProofPreconditionError(f"leaf index {index} not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_pow2_below(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    return [subtree_nodes(a, b) for a, b in reversed(ranges)]


def consistency_plan(old_size: int, new_size: int) -> list[list[Node]]:
    """RFC 9162 §2.1.4.1 PROOF(old_size, D[0:new_size]) as node runs.

    Requires ``0 <= old_size <= new_size``; the proof is empty when ``old_size`` is 0
    or equal to ``new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise ProofPreconditionError(f"cannot prove size {old_size} inside size {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, whole = 0, new_size, True
    while hi != old_size:
        k = _largest_pow2_below(hi - lo)
        if old_size <= lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            whole = False
    if not whole:
        ranges.append((lo, hi))
    return [subtree_nodes(a, b) for a, b in reversed(ranges)]


def fold(run: Sequence[Node], hashes: Mapping[Node, bytes]) -> bytes:
    """Hash of the range covered by ``run`` (right fold, as in MTH); EMPTY_ROOT if empty."""
    if not run:
        return EMPTY_ROOT
    acc = hashes[run[-1]]
    for node in reversed(run[:-1]):
        acc = hash_children(hashes[node], acc)
    return acc


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves, iteratively (O(n) hashes, O(log n) extra memory)."""
    stack: list[tuple[int, bytes]] = []  # (level, hash) of completed perfect subtrees
    for h in leaf_hashes:
        level, acc = 0, h
        while stack and stack[-1][0] == level:
            acc = hash_children(stack.pop()[1], acc)
            level += 1
        stack.append((level, acc))
    if not stack:
        return EMPTY_ROOT
    acc = stack.pop()[1]
    while stack:
        acc = hash_children(stack.pop()[1], acc)
    return acc


def _check_hashes(proof: Sequence[bytes], expected_len: int, what: str) -> None:
    if len(proof) != expected_len:
        raise ProofLengthError(expected_len, len(proof), what)
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise ProofLengthError(HASH_SIZE, len(h), f"{what} hash {i} (bytes)")


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise unless ``proof`` shows leaf ``index`` in the tree ``root``.

    Requires ``0 <= index < size``, ``len(proof)`` equal to the PATH length for
    ``(index, size)``, and 32-byte hashes; all checked before any hashing.
    """
    if not 0 <= index < size:
        raise ProofPreconditionError(f"leaf index {index} not in a tree of size {size}")
    _check_hashes(proof, len(inclusion_plan(index, size)), "inclusion proof")
    if len(leaf_hash) != HASH_SIZE or len(root) != HASH_SIZE:
        raise ProofLengthError(HASH_SIZE, min(len(leaf_hash), len(root)), "hash (bytes)")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofLengthError(len(proof) - 1, len(proof), "inclusion proof")
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofLengthError(len(proof) + 1, len(proof), "inclusion proof")
    if not ct_equal(r, root):
        raise RootMismatchError(root, r, f"inclusion of leaf {index} in size {size}: root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise unless ``proof`` shows tree ``old_root`` is a prefix of the new one.

    Requires ``0 <= old_size <= new_size`` and the exact PROOF length (0 when
    ``old_size`` is 0 or equal to ``new_size``). Equal sizes require equal roots;
    size 0 is a prefix of every tree.
    """
    if not 0 <= old_size <= new_size:
        raise ProofPreconditionError(f"cannot prove size {old_size} inside size {new_size}")
    _check_hashes(proof, len(consistency_plan(old_size, new_size)), "consistency proof")
    if len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
        raise ProofLengthError(HASH_SIZE, min(len(old_root), len(new_root)), "hash (bytes)")
    if old_size == 0:
        return
    if old_size == new_size:
        if not ct_equal(old_root, new_root):
            raise RootMismatchError(old_root, new_root, f"equal sizes {old_size}: root")
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: an exact power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofLengthError(len(proof) - 1, len(proof), "consistency proof")
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofLengthError(len(proof) + 1, len(proof), "consistency proof")
    if not ct_equal(fr, old_root):
        raise RootMismatchError(old_root, fr, f"consistency {old_size}->{new_size}: old root")
    if not ct_equal(sr, new_root):
        raise RootMismatchError(new_root, sr, f"consistency {old_size}->{new_size}: new root")

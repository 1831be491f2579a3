"""The offline verifier an oversight body runs (``veilmatch audit verify``).

Input: a :class:`~audit.sources.Source` (an export directory or the log's base URL),
the log's public key, witness keys with a quorum, and a state file holding the last
checkpoint this verifier accepted. Steps, each raising or recording a precisely
located problem:

1. Parse the checkpoint and verify the log's signature and origin.
2. Verify at least ``quorum`` witness cosignatures.
3. Compare with the saved checkpoint: a smaller size is a truncation; the same size
   with another root, or a failing consistency proof, is a fork.
4. Read every entry bundle: each leaf must parse, sit at the position its ``seq``
   names, and hash to the level-0 tile hash stored for it. Names the exact entry.
5. Recompute the tree from the leaves; every stored hash tile above level 0 must
   match. Names the range of entries under the wrong hash.
6. Recompute the root at the checkpoint and at every earlier checkpoint the log issued
   (each signature verified). The first mismatch names the range between the last good
   checkpoint and the bad one.
7. Check payloads: present ones hash to their entry's ``payload_sha256``; absent ones
   must be covered by a later ``retention.delete`` entry that recorded the retention
   period and policy in force and came after that period had passed
   (:mod:`audit.payloadcheck`).
8. On success only, save the new checkpoint to the state file (atomically).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audit.checkpoint import SignedCheckpoint
from audit.errors import (
    AuditError,
    EntryMissingError,
    EntryTamperedError,
    ForkError,
    MalformedError,
    NotFoundError,
    ProofError,
    RangeTamperedError,
    SignatureError,
    TruncationError,
    VerificationError,
)
from audit.events import LeafHeader
from audit.note import NoteVerifier
from audit.payloadcheck import check_payloads
from audit.rfc9162 import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_plan,
    ct_equal,
    fold,
    hash_children,
    hash_leaf,
    root_plan,
    verify_consistency,
)
from audit.sources import Source, TileHashReader
from audit.statefile import load_state, locked, save_state
from audit.tiles import (
    CHECKPOINT_PATH,
    CHECKPOINTS_PATH,
    TILE_HEIGHT,
    decode_bundle,
    tiles_for_size,
)

__all__ = ["LogVerificationError", "VerificationReport", "verify_log"]

MAX_PROBLEMS = 50


class LogVerificationError(VerificationError):
    """Verification found problems; ``problems`` lists them, most fundamental first."""

    def __init__(self, problems: list[VerificationError]) -> None:
        first = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first.where, first.problem + more)
        self.problems = problems


@dataclass
class VerificationReport:
    """What a successful verification established."""

    origin: str
    size: int
    root: bytes
    entries_checked: int = 0
    payloads_present: int = 0
    payloads_deleted: int = 0
    checkpoints_checked: int = 0
    witnesses: dict[str, int] = field(default_factory=dict)
    previous_size: int | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (root as hex)."""
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "entries_checked": self.entries_checked,
            "payloads_present": self.payloads_present,
            "payloads_deleted": self.payloads_deleted,
            "checkpoints_checked": self.checkpoints_checked,
            "witnesses": self.witnesses,
            "previous_size": self.previous_size,
        }


class _Problems:
    def __init__(self) -> None:
        self.items: list[VerificationError] = []

    def add(self, problem: VerificationError) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(problem)

    def fail_if_any(self) -> None:
        if self.items:
            raise LogVerificationError(self.items)


def _levels(leaf_hashes: list[bytes]) -> list[list[bytes]]:
    """Perfect subtree hashes per level: ``levels[l][i]`` covers ``[i << l, (i+1) << l)``."""
    levels = [leaf_hashes]
    while len(levels[-1]) >= 2:
        below = levels[-1]
        levels.append([hash_children(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels


def _root(levels: list[list[bytes]], size: int) -> bytes:
    plan = root_plan(size)
    return fold(plan, {n: levels[n[0]][n[1]] for n in plan}) if plan else EMPTY_ROOT


def verify_log(
    source: Source,
    log_key: NoteVerifier,
    *,
    witnesses: Sequence[NoteVerifier] = (),
    quorum: int | None = None,
    state_path: Path | None = None,
    origin: str | None = None,
    now: int | None = None,
) -> VerificationReport:
    """Run every check (see the module docstring); raise :class:`LogVerificationError`.

    ``quorum`` defaults to all given witnesses. ``origin`` defaults to the log key's
    name. ``now`` (POSIX seconds) bounds cosignature timestamps.
    """
    if state_path is not None:
        with locked(state_path):
            return _verify(source, log_key, witnesses, quorum, state_path, origin, now)
    return _verify(source, log_key, witnesses, quorum, None, origin, now)


def _verify(
    source: Source,
    log_key: NoteVerifier,
    witnesses: Sequence[NoteVerifier],
    quorum: int | None,
    state_path: Path | None,
    origin: str | None,
    now: int | None,
) -> VerificationReport:
    """Steps 1 to 8 in order; the first three stop at their first problem."""
    signed = check_log_signature(source, log_key, origin)
    cp = signed.checkpoint
    report = VerificationReport(cp.origin, cp.size, cp.root)
    report.witnesses = check_witnesses(
        signed, witnesses, quorum, int(time.time()) if now is None else now
    )
    previous = load_state(state_path) if state_path is not None else None
    if previous is not None:
        report.previous_size = previous.checkpoint.size
        check_extends_saved(source, signed, previous)
    problems = _Problems()
    leaves = check_entries(source, cp.size, problems)
    report.entries_checked = cp.size - len(leaves.bad)
    levels = _levels(leaves.hashes)
    check_upper_tiles(source, cp.size, levels, leaves.bad, problems)
    report.checkpoints_checked = check_signed_roots(source, log_key, signed, levels, problems)
    if previous is not None:
        check_saved_root(previous, levels, problems)
    check_payloads(source, cp.size, leaves.headers, leaves.bad, report, problems)
    problems.fail_if_any()
    if state_path is not None:  # 8. remember what we accepted, on success only
        save_state(state_path, signed)
    return report


def check_log_signature(
    source: Source, log_key: NoteVerifier, origin: str | None
) -> SignedCheckpoint:
    """Step 1: the served checkpoint parses and the log key signed it for ``origin``."""
    try:
        signed = SignedCheckpoint.from_bytes(source.read(CHECKPOINT_PATH))
        signed.verify(log_key, origin or log_key.name)
    except (MalformedError, SignatureError, NotFoundError) as exc:
        raise LogVerificationError([VerificationError("checkpoint", str(exc))]) from None
    return signed


def check_witnesses(
    signed: SignedCheckpoint,
    witnesses: Sequence[NoteVerifier],
    quorum: int | None,
    now: int,
) -> dict[str, int]:
    """Step 2: at least ``quorum`` (default: all) witnesses cosigned; name → timestamp."""
    need = len(witnesses) if quorum is None else quorum
    if not need:
        return {}
    try:
        return signed.verify_witnesses(list(witnesses), need, now=now)
    except VerificationError as exc:
        raise LogVerificationError([exc]) from None


def check_extends_saved(
    source: Source, signed: SignedCheckpoint, previous: SignedCheckpoint
) -> None:
    """Step 3: the checkpoint extends the one this verifier accepted before (same origin,
    not smaller, same root at the same size, a consistency proof from the tiles)."""
    cp, prev = signed.checkpoint, previous.checkpoint
    if prev.origin != cp.origin:
        raise LogVerificationError(
            [VerificationError("state file", f"saved origin {prev.origin!r} differs")]
        )
    if cp.size < prev.size:
        raise LogVerificationError([TruncationError(prev.size, cp.size)])
    if cp.size == prev.size and not ct_equal(cp.root, prev.root):
        raise LogVerificationError(
            [ForkError(cp.size, "two different signed roots for the same size")]
        )
    try:
        reader = TileHashReader(source, cp.size)
        plan = consistency_plan(prev.size, cp.size)
        hashes = reader.nodes([n for run in plan for n in run])
        proof = [fold(run, hashes) for run in plan]
        verify_consistency(prev.size, cp.size, prev.root, cp.root, proof)
    except (ProofError, MalformedError, NotFoundError) as exc:
        problem = (
            f"size {cp.size} is not an extension of the checkpoint of size "
            f"{prev.size} seen before ({exc})"
        )
        raise LogVerificationError([ForkError(prev.size, problem)]) from None


@dataclass
class _Leaves:
    """What step 4 read: headers (``None`` if unusable), leaf hashes, bad positions."""

    headers: list[LeafHeader | None]
    hashes: list[bytes]
    bad: set[int] = field(default_factory=set)


def check_entries(source: Source, n: int, problems: _Problems) -> _Leaves:
    """Step 4: every entry bundle against its level-0 hash tile, naming the entry."""
    leaves = _Leaves([None] * n, [b"\0" * HASH_SIZE] * n)
    for bundle in tiles_for_size(n, "entries"):
        start, width = bundle.start, bundle.width
        try:
            raw = decode_bundle(source.read(bundle.to_path()), 2)
        except (MalformedError, NotFoundError) as exc:
            problems.add(EntryMissingError(start, f"entry bundle unreadable: {exc}"))
            leaves.bad.update(range(start, start + width))
            continue
        try:
            tile0 = source.read(f"tile/0/{bundle.to_path().removeprefix('tile/entries/')}")
        except NotFoundError:
            tile0 = b""
        _check_bundle(start, width, raw, tile0, leaves.headers, leaves.hashes, leaves.bad, problems)
    return leaves


def check_upper_tiles(
    source: Source, n: int, levels: list[list[bytes]], bad: set[int], problems: _Problems
) -> None:
    """Step 5: stored hash tiles above level 0 against the tree recomputed from the
    leaves; names the range of entries under a wrong hash (not already named)."""
    for tile in tiles_for_size(n, "hash"):
        if tile.level == 0:
            continue
        tree_level = tile.level * TILE_HEIGHT
        try:
            data = source.read(tile.to_path())
        except NotFoundError:
            data = b""
        for j in range(tile.width):
            idx = tile.start + j
            lo, hi = idx << tree_level, (idx + 1) << tree_level
            stored = data[j * HASH_SIZE : (j + 1) * HASH_SIZE]
            if not ct_equal(stored, levels[tree_level][idx]) and not any(lo <= b < hi for b in bad):
                problems.add(
                    RangeTamperedError(
                        lo, hi, f"stored tree hash in {tile.to_path()} differs from the entries"
                    )
                )


def check_signed_roots(
    source: Source,
    log_key: NoteVerifier,
    signed: SignedCheckpoint,
    levels: list[list[bytes]],
    problems: _Problems,
) -> int:
    """Step 6: the root of every checkpoint the log issued (signature verified), then the
    current one, recomputed from the leaves. The first mismatch names the range between
    the last good checkpoint and the bad one. Returns how many were checked."""
    cp = signed.checkpoint
    try:
        history = decode_bundle(source.read(CHECKPOINTS_PATH), 4)
    except (NotFoundError, MalformedError):
        history = []
    good_size, checked = 0, 0
    seen_roots: dict[int, bytes] = {}
    for raw in history:
        try:
            old = SignedCheckpoint.from_bytes(raw)
            old.verify(log_key, cp.origin)
        except (MalformedError, SignatureError) as exc:
            problems.add(VerificationError("checkpoint history", str(exc)))
            continue
        s = old.checkpoint.size
        if s in seen_roots and not ct_equal(seen_roots[s], old.checkpoint.root):
            problems.add(ForkError(s, "the log signed two different roots for this size"))
        seen_roots[s] = old.checkpoint.root
        if s > cp.size:
            continue
        checked += 1
        if ct_equal(_root(levels, s), old.checkpoint.root):
            good_size = max(good_size, s)
        elif s >= good_size:
            problems.add(
                RangeTamperedError(
                    good_size, s, f"entries changed after the checkpoint of size {s} was signed"
                )
            )
    if not ct_equal(_root(levels, cp.size), cp.root):
        problems.add(
            RangeTamperedError(good_size, cp.size, "the signed root does not match the entries")
        )
    return checked


def check_saved_root(
    previous: SignedCheckpoint, levels: list[list[bytes]], problems: _Problems
) -> None:
    """Step 6 (continued): the entries still reproduce the checkpoint seen before."""
    prev = previous.checkpoint
    if not ct_equal(_root(levels, prev.size), prev.root):
        problems.add(
            ForkError(
                prev.size, "the entries do not reproduce the checkpoint this verifier saw before"
            )
        )


def _check_bundle(
    start: int,
    width: int,
    leaves: list[bytes],
    tile0: bytes,
    headers: list[LeafHeader | None],
    leaf_hashes: list[bytes],
    bad: set[int],
    problems: _Problems,
) -> None:
    """Step 4 for one bundle: position, parse, and leaf hash of every entry."""
    parsed: list[LeafHeader | None] = []
    for leaf in leaves:
        try:
            parsed.append(LeafHeader.from_bytes(leaf))
        except MalformedError:
            parsed.append(None)
    seqs = [h.seq if h else None for h in parsed]
    for j in range(width):
        pos = start + j
        stored = tile0[j * HASH_SIZE : (j + 1) * HASH_SIZE]
        if len(stored) == HASH_SIZE:
            leaf_hashes[pos] = stored
        if j >= len(leaves):
            problems.add(EntryMissingError(pos, "absent: the entry bundle ends early"))
            bad.update(range(pos, start + width))
            return
        header, leaf = parsed[j], leaves[j]
        lh = hash_leaf(leaf)
        if header is None:
            problems.add(EntryTamperedError(pos, "not a valid canonical leaf header"))
            bad.add(pos)
            leaf_hashes[pos] = lh
            continue
        if header.seq != pos:
            if header.seq > pos and pos not in seqs[j + 1 :]:
                problems.add(
                    EntryMissingError(pos, f"absent: its position holds entry {header.seq}")
                )
            elif header.seq > pos:
                problems.add(
                    EntryTamperedError(pos, f"holds entry {header.seq}: entries reordered")
                )
            else:
                problems.add(
                    EntryTamperedError(
                        pos,
                        f"holds entry {header.seq} again: an entry was inserted at or before "
                        f"position {pos}",
                    )
                )
            bad.update(range(pos, start + width))
            return
        headers[pos] = header
        if len(stored) != HASH_SIZE or not ct_equal(lh, stored):
            problems.add(
                EntryTamperedError(
                    pos, "content does not match its stored leaf hash (changed after append)"
                )
            )
            bad.add(pos)
        leaf_hashes[pos] = lh
    if len(leaves) > width:
        problems.add(EntryTamperedError(start + width, "extra entries beyond the signed tree size"))


def describe(exc: AuditError) -> list[str]:
    """One line per problem, for the CLI."""
    if isinstance(exc, LogVerificationError):
        return [str(p) for p in exc.problems]
    return [str(exc)]

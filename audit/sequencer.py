"""The sequencer's chain of authenticated ranges: why a database writer cannot forge entries.

Appending needs only INSERTs and an UPDATE of ``audit_head``, which any database writer
can do. So every append transaction also stores, in ``audit_ranges``, the range
``[start, end)`` it added, the RFC 9162 root of the first ``end`` entries (computed by
the appender from leaves it built itself) and a tag under the **sequencer key**, a key
that never lives in the database (:class:`audit.keys.SequencerKey`)::

    tag = K.tag(range_message(origin, start, prev_tag, end, root))

``prev_tag`` is the tag of the range ending at ``start``, or empty at an **anchor**: the
empty tree, or a size at which this log's key signed a checkpoint and no range ends (a
log written before this chain existed). The chain is checked

- by the appender, before it extends the head: the range ending at the head size (or
  the anchor) must verify, and its root must equal the fold of the head's frontier; it
  refuses (:class:`~audit.errors.SequencerChainError`) to build on anything else;
- by the checkpointer, from the last signed size to the head: consecutive ranges, each
  tag verifying and linking to the previous one, ending exactly at the head. Only then
  does it sign, and it signs the authenticated root.

Limits: whoever holds the sequencer key (or controls the appending process) can still
append what it likes; rows a writer changes *under* a signed checkpoint are not this
module's job (the verifier names them against the signed roots); a writer can always
make appends fail (refusal is loud, not silent).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from audit import schema
from audit.checkpoint import SignedCheckpoint
from audit.errors import MalformedError, SequencerChainError, SequencerKeyError, SignatureError
from audit.keys import SequencerKey
from audit.note import NoteVerifier
from audit.rfc9162 import HASH_SIZE, ct_equal

__all__ = ["Range", "anchor_tag", "insert_range", "range_message", "verify_chain"]

#: Domain separation: a range tag can never be confused with any other use of the key.
DOMAIN = b"veilmatch/audit/sequencer-range/v1\n"
MAX_TAG_BYTES = 128


def range_message(origin: str, start: int, prev_tag: bytes, end: int, root: bytes) -> bytes:
    """The bytes a range tag covers. Requires ``0 <= start < end`` and a 32-byte root."""
    if not 0 <= start < end < 2**63:
        raise SequencerChainError(start, end, "a range must add at least one entry")
    if len(root) != HASH_SIZE or len(prev_tag) > MAX_TAG_BYTES:
        raise SequencerChainError(start, end, "malformed range record")
    header = struct.pack(">QQH", start, end, len(prev_tag))
    return DOMAIN + origin.encode() + b"\n" + header + prev_tag + root


@dataclass(frozen=True)
class Range:
    """One stored range: entries ``[start, end)``, root at ``end``, and its chained tag."""

    start: int
    end: int
    prev_tag: bytes
    root: bytes
    tag: bytes

    @classmethod
    def seal(
        cls, key: SequencerKey, origin: str, start: int, prev_tag: bytes, end: int, root: bytes
    ) -> Range:
        """Tag a new range with the sequencer key."""
        tag = key.tag(range_message(origin, start, prev_tag, end, root))
        return cls(start, end, prev_tag, root, tag)

    def check(self, key: SequencerKey, origin: str) -> None:
        """Raise :class:`SequencerChainError` unless this sequencer tagged this range."""
        try:
            message = range_message(origin, self.start, self.prev_tag, self.end, self.root)
            key.verify(message, self.tag)
        except SequencerKeyError:
            raise SequencerChainError(
                self.start, self.end, "range tag does not verify: not written by this sequencer"
            ) from None


def _range(row: Any) -> Range:
    return Range(int(row[0]), int(row[1]), bytes(row[2]), bytes(row[3]), bytes(row[4]))


_COLUMNS = (
    schema.ranges.c.start_size,
    schema.ranges.c.end_size,
    schema.ranges.c.prev_tag,
    schema.ranges.c.root,
    schema.ranges.c.tag,
)


def range_ending_at(conn: Connection, size: int) -> Range | None:
    """The stored range whose end is ``size`` (primary-key read), if any."""
    row = conn.execute(sa.select(*_COLUMNS).where(schema.ranges.c.end_size == size)).first()
    return _range(row) if row is not None else None


def insert_range(conn: Connection, record: Range) -> None:
    """Store ``record`` in the caller's transaction (with the entries it covers)."""
    conn.execute(
        schema.ranges.insert().values(
            start_size=record.start,
            end_size=record.end,
            prev_tag=record.prev_tag,
            root=record.root,
            tag=record.tag,
        )
    )


def _last_authenticated_below(conn: Connection, size: int) -> int:
    """Largest range end or checkpoint size below ``size`` (to name where forgery starts)."""
    ends = conn.execute(
        sa.select(sa.func.max(schema.ranges.c.end_size)).where(schema.ranges.c.end_size < size)
    ).scalar()
    signed = conn.execute(
        sa.select(sa.func.max(schema.checkpoints.c.tree_size)).where(
            schema.checkpoints.c.tree_size < size
        )
    ).scalar()
    return max(int(ends or 0), int(signed or 0))


def _signed_root(conn: Connection, size: int, log_key: NoteVerifier, origin: str) -> bytes | None:
    """Root of this log's own checkpoint at ``size`` (signature checked), if one exists."""
    note = conn.execute(
        sa.select(schema.checkpoints.c.note).where(schema.checkpoints.c.tree_size == size)
    ).scalar_one_or_none()
    if note is None:
        return None
    try:
        signed = SignedCheckpoint.from_bytes(bytes(note))
        signed.verify(log_key, origin)
    except (MalformedError, SignatureError):
        raise SequencerChainError(size, size, "stored checkpoint not signed by this log") from None
    return signed.checkpoint.root


def anchor_tag(
    conn: Connection,
    key: SequencerKey,
    log_key: NoteVerifier,
    origin: str,
    size: int,
    root: bytes,
) -> bytes:
    """The ``prev_tag`` for a range starting at the head ``(size, root)``, after checking
    that head is authentic: the empty tree, the end of a range this sequencer tagged with
    that root, or a checkpoint this log signed with that root. Raises
    :class:`SequencerChainError` otherwise.
    """
    if size == 0:
        return b""
    stored = range_ending_at(conn, size)
    if stored is not None:
        stored.check(key, origin)
        if not ct_equal(stored.root, root):
            raise SequencerChainError(
                stored.start, size, "the head's tree hashes differ from the sequencer's root"
            )
        return stored.tag
    signed = _signed_root(conn, size, log_key, origin)
    if signed is None:
        start = _last_authenticated_below(conn, size)
        raise SequencerChainError(start, size, "entries not written by this log's sequencer")
    if not ct_equal(signed, root):
        raise SequencerChainError(size, size, "the head's tree hashes differ from the signed root")
    return b""


def verify_chain(
    conn: Connection, key: SequencerKey, origin: str, signed_size: int, head_size: int
) -> bytes:
    """Check the ranges from ``signed_size`` (the last signed size, or 0) to ``head_size``
    and return the authenticated root at ``head_size``. Requires ``signed_size <
    head_size``. Raises :class:`SequencerChainError` naming the first unauthenticated
    range: a gap, a range that does not link to the previous one, a tag that does not
    verify, or entries beyond the last tagged range.
    """
    previous = range_ending_at(conn, signed_size) if signed_size else None
    prev_tag = previous.tag if previous is not None else b""
    end, root = signed_size, b""
    rows = conn.execute(
        sa.select(*_COLUMNS)
        .where(schema.ranges.c.end_size > signed_size, schema.ranges.c.end_size <= head_size)
        .order_by(schema.ranges.c.end_size)
    )
    for record in map(_range, rows):
        if record.start != end or record.prev_tag != prev_tag:
            raise SequencerChainError(end, record.end, "range does not chain to the previous one")
        record.check(key, origin)
        end, prev_tag, root = record.end, record.tag, record.root
    if end != head_size:
        raise SequencerChainError(end, head_size, "entries not written by this log's sequencer")
    return root

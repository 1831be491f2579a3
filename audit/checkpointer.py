"""The checkpointer: signs tree heads the sequencer wrote, and stores witness cosignatures.

A checkpoint is signed for a new size only after the sequencer's chain of ranges from the
last signed size to that size verifies (:func:`audit.sequencer.verify_chain`), and the
stored tree hashes and head reproduce the authenticated root. Otherwise it refuses with
:class:`~audit.errors.SequencerChainError`, logs an alarm and calls ``on_alarm``: rows
written around the sequencer are never signed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from audit import schema
from audit.appender import frontier_root, read_head
from audit.checkpoint import Checkpoint, SignedCheckpoint
from audit.errors import MalformedError, SequencerChainError, SignatureError
from audit.keys import SequencerKey
from audit.note import NoteSigner, NoteVerifier, parse_note
from audit.reader import LogReader
from audit.rfc9162 import EMPTY_ROOT, ct_equal
from audit.sequencer import verify_chain

__all__ = ["Checkpointer"]

log = logging.getLogger("veilmatch.audit")

#: Called with the refusal when the chain does not verify (the service counts them).
OnAlarm = Callable[[SequencerChainError], None]


class Checkpointer:
    """Signs checkpoints for the log ``reader`` reads, as ``origin`` with ``signer``.

    A checkpoint is due when ``checkpoint_every`` entries or ``checkpoint_interval``
    have passed since the last one.
    """

    def __init__(
        self,
        reader: LogReader,
        signer: NoteSigner,
        origin: str,
        sequencer_key: SequencerKey,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval: timedelta = timedelta(seconds=10),
        on_alarm: OnAlarm | None = None,
    ) -> None:
        self.reader = reader
        self.signer = signer
        self.origin = origin
        self.sequencer_key = sequencer_key
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.on_alarm = on_alarm
        self._log_key: NoteVerifier = signer.verifier()

    def maybe_checkpoint(self, *, now: datetime | None = None) -> SignedCheckpoint | None:
        """Issue a checkpoint if ``checkpoint_every`` entries or ``checkpoint_interval`` passed.

        Call it from a timer too: the interval rule only fires when something calls.
        """
        when = now or datetime.now(UTC)
        with self.reader.engine.connect() as conn:
            size, _ = read_head(conn)
            last = self.reader.last_checkpoint_row(conn)
        last_size = int(last.tree_size) if last else -1
        if size <= last_size:
            return None
        issued = last.issued_at if last else None
        if issued is not None and issued.tzinfo is None:
            issued = issued.replace(tzinfo=UTC)
        due = (
            last is None
            or size - last_size >= self.checkpoint_every
            or (issued is not None and when - issued >= self.checkpoint_interval)
        )
        return self.checkpoint(now=when) if due else None

    def checkpoint(self, *, now: datetime | None = None) -> SignedCheckpoint:
        """Sign and store a checkpoint for the current tree (idempotent per size).

        Raises :class:`SequencerChainError` (after logging an alarm) if the entries
        since the last signed size are not the sequencer's own.
        """
        when = now or datetime.now(UTC)
        with self.reader.engine.connect() as conn:
            size, root = self._authenticated_head(conn)
        signed = SignedCheckpoint.sign(Checkpoint(self.origin, size, root), self.signer)
        try:
            with self.reader.engine.begin() as conn:
                conn.execute(
                    schema.checkpoints.insert().values(
                        tree_size=size, note=signed.to_bytes(), issued_at=when
                    )
                )
        except IntegrityError:
            return self.reader.checkpoint_at(size)
        return signed

    def _last_signed(self, conn: Connection) -> tuple[int, bytes]:
        """Size and root of the newest checkpoint, its signature checked (0 if none)."""
        row = self.reader.last_checkpoint_row(conn)
        if row is None:
            return 0, EMPTY_ROOT
        try:
            stored = SignedCheckpoint.from_bytes(bytes(row.note))
            stored.verify(self._log_key, self.origin)
        except (MalformedError, SignatureError) as exc:
            raise self._alarm(
                SequencerChainError(0, int(row.tree_size), f"last checkpoint is not ours ({exc})")
            ) from None
        return stored.checkpoint.size, stored.checkpoint.root

    def _authenticated_head(self, conn: Connection) -> tuple[int, bytes]:
        """The head size and its root, checked against the sequencer's chain and storage.

        The head is read before the ranges, so a range committed meanwhile (always with
        its head update) lies beyond the size read and is left for the next checkpoint.
        """
        size, frontier = read_head(conn)
        signed_size, signed_root = self._last_signed(conn)
        try:
            if size < signed_size:
                raise SequencerChainError(size, signed_size, "the head is below a signed size")
            if size == signed_size:
                root = signed_root
            else:
                root = verify_chain(conn, self.sequencer_key, self.origin, signed_size, size)
            stored = self.reader.root_at(size, conn=conn) if size else EMPTY_ROOT
            for what, value in (("tree hashes", stored), ("head", frontier_root(size, frontier))):
                if not ct_equal(value, root):
                    raise SequencerChainError(
                        signed_size, size, f"stored {what} differ from the sequencer's root"
                    )
        except SequencerChainError as exc:
            raise self._alarm(exc) from None
        return size, root

    def _alarm(self, exc: SequencerChainError) -> SequencerChainError:
        log.error(
            "audit checkpoint refused: entries not authenticated by the sequencer",
            extra={
                "alarm": "audit.sequencer_chain",
                "range_start": exc.start,
                "range_end": exc.end,
                "problem": exc.problem,
            },
        )
        if self.on_alarm is not None:
            self.on_alarm(exc)
        return exc

    def add_cosignatures(
        self, cosigned: bytes, witnesses: Sequence[NoteVerifier], *, now: datetime | None = None
    ) -> list[str]:
        """Store the cosignatures in ``cosigned`` (a checkpoint note a witness signed).

        The note text must equal a checkpoint this log issued; only cosignatures that
        verify under one of ``witnesses`` are kept. Returns the witness names stored.
        """
        note = parse_note(cosigned)
        cp = Checkpoint.from_bytes(note.text)
        ours = self.reader.checkpoint_at(cp.size)
        if ours.note.text != note.text:
            raise SignatureError(f"cosigned checkpoint at size {cp.size} is not ours")
        stored: list[str] = []
        when = now or datetime.now(UTC)
        with self.reader.engine.begin() as conn:
            for sig in note.signatures:
                for w in witnesses:
                    if w.sig_type != 0x04 or not w.matches(sig):
                        continue
                    w.verify(note.text, sig)
                    signer_id = f"{w.name}+{w.key_id.hex()}"
                    exists = conn.execute(
                        sa.select(schema.cosignatures.c.signer).where(
                            schema.cosignatures.c.tree_size == cp.size,
                            schema.cosignatures.c.signer == signer_id,
                        )
                    ).first()
                    if exists is None:
                        conn.execute(
                            schema.cosignatures.insert().values(
                                tree_size=cp.size,
                                signer=signer_id,
                                line=sig.line(),
                                received_at=when,
                            )
                        )
                    stored.append(w.name)
        if not stored:
            raise SignatureError("no cosignature from a known witness key")
        return stored

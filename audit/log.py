"""The audit log over SQL: a thin facade over its three parts, in Tessera's shape.

- :class:`~audit.appender.Appender` — the one sequencer: appends entries, tags each
  appended range with the sequencer key, deletes payloads under retention;
- :class:`~audit.checkpointer.Checkpointer` — signs a checkpoint only for a size the
  sequencer's chain authenticates, and stores witness cosignatures;
- :class:`~audit.reader.LogReader` and :class:`~audit.tileserver.TileServer` — entries,
  checkpoints, proofs and tlog-tiles resources.

Example::

    log = AuditLog(engine, load_signer(key_path), sequencer=FileSequencerKey.load(path))
    [receipt] = log.append([AuditEvent(EventType.ADMIN, "officer:o-1", payload={...})])
    with write_transaction(engine) as conn:                 # the caller's transaction
        conn.execute(my_record_insert)
        log.append_in(conn, [event])                        # same commit, or neither
    log.maybe_checkpoint()                                  # sign a checkpoint if due

``append`` acknowledges (returns receipts) only after its commit; ``append_in``
receipts are valid once the *caller* commits. Without ``sequencer`` the sequencer key
is derived from the log key (:func:`audit.keys.sequencer_key_from_signer`); every
process appending to one log must use the same sequencer key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from audit.appender import Appender, Receipt
from audit.checkpointer import Checkpointer, OnAlarm
from audit.events import AuditEvent
from audit.keys import (
    LOG_KEY_FILE,
    SEQUENCER_KEY_FILE,
    FileSequencerKey,
    SequencerKey,
    load_signer,
    sequencer_key_from_signer,
)
from audit.note import Note, NoteSigner, NoteVerifier
from audit.reader import Entry, InclusionProof, LogReader
from audit.tileserver import TileServer
from core.db import write_transaction

__all__ = ["AuditLog", "Entry", "InclusionProof", "Receipt"]


class AuditLog:
    """The tamper-evident audit log stored in ``engine``'s database.

    ``signer`` is the log's Ed25519 note key; ``origin`` (default: the key name) is the
    checkpoint origin line; ``sequencer`` tags appended ranges (see :mod:`audit.sequencer`).
    A checkpoint is due when ``checkpoint_every`` entries or ``checkpoint_interval`` have
    passed since the last one. ``rng`` supplies payload nonces (injectable for
    deterministic tests); ``on_alarm`` is called when the checkpointer refuses.
    """

    def __init__(
        self,
        engine: Engine,
        signer: NoteSigner,
        origin: str | None = None,
        *,
        sequencer: SequencerKey | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval: timedelta = timedelta(seconds=10),
        rng: Callable[[int], bytes] = os.urandom,
        on_alarm: OnAlarm | None = None,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.origin = origin or signer.name
        key = sequencer if sequencer is not None else sequencer_key_from_signer(signer)
        self.reader = LogReader(engine)
        self.tiles = TileServer(self.reader)
        self.appender = Appender(engine, self.origin, key, signer.verifier(), rng=rng)
        self.checkpointer = Checkpointer(
            self.reader,
            signer,
            self.origin,
            key,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            on_alarm=on_alarm,
        )
        # Read-through delegation keeps one name per operation for existing callers.
        self.append_in = self.appender.append_in
        self.delete_payloads_in = self.appender.delete_payloads_in
        self.maybe_checkpoint = self.checkpointer.maybe_checkpoint
        self.checkpoint = self.checkpointer.checkpoint
        self.add_cosignatures = self.checkpointer.add_cosignatures
        self.tree_size = self.reader.tree_size
        self.entries = self.reader.entries
        self.checkpoint_at = self.reader.checkpoint_at
        self.latest_checkpoint = self.reader.latest_checkpoint
        self.checkpoint_sizes = self.reader.checkpoint_sizes
        self.root_at = self.reader.root_at
        self.inclusion_proof = self.reader.inclusion_proof
        self.consistency_proof = self.reader.consistency_proof
        self.read_static = self.tiles.read_static
        self.read_tile = self.tiles.read_tile
        self.checkpoints_bundle = self.tiles.checkpoints_bundle

    @classmethod
    def from_settings(cls, engine: Engine, settings: Any, **kwargs: Any) -> AuditLog:
        """The log with the service's keys from ``settings.key_dir``: ``audit-log.key``
        (origin = key name) and ``audit-sequencer.key`` (both must exist)."""
        key_dir = Path(settings.key_dir)
        kwargs.setdefault("sequencer", FileSequencerKey.load(key_dir / SEQUENCER_KEY_FILE))
        return cls(engine, load_signer(key_dir / LOG_KEY_FILE), **kwargs)

    @property
    def on_alarm(self) -> OnAlarm | None:
        """Called with each refusal of the checkpointer (wire it to a metric)."""
        return self.checkpointer.on_alarm

    @on_alarm.setter
    def on_alarm(self, callback: OnAlarm | None) -> None:
        self.checkpointer.on_alarm = callback

    def append(self, events: Sequence[AuditEvent], *, now: datetime | None = None) -> list[Receipt]:
        """Append ``events`` in one transaction; return receipts after it committed.

        Then issues a checkpoint if one is due (see :meth:`maybe_checkpoint`).
        """
        with write_transaction(self.engine) as conn:
            receipts = self.appender.append_in(conn, events, now=now)
        self.checkpointer.maybe_checkpoint(now=now)
        return receipts

    def delete_payloads(self, seqs: Iterable[int], **kwargs: Any) -> list[Receipt]:
        """Delete the payloads of ``seqs`` (retention) and log that, in one transaction
        (keywords as :meth:`Appender.delete_payloads_in`); returns the deletion events'
        receipts, then checkpoints if due."""
        with write_transaction(self.engine) as conn:
            receipts = self.appender.delete_payloads_in(conn, seqs, **kwargs)
        self.checkpointer.maybe_checkpoint(now=kwargs.get("now"))
        return receipts


def payload_sha256(blob: bytes) -> str:
    """Hex SHA-256 of a payload blob, as in the leaf header's ``payload_sha256``."""
    return hashlib.sha256(blob).hexdigest()


def verifier_for(note: Note, verifiers: Sequence[NoteVerifier]) -> list[NoteVerifier]:
    """The verifiers among ``verifiers`` that have a signature line in ``note``."""
    return [v for v in verifiers if any(v.matches(s) for s in note.signatures)]

"""A witness an oversight body runs: cosign a checkpoint only if it extends the last one.

The witness keeps one state file per log (the last checkpoint it cosigned). For a new
checkpoint it:

1. verifies the log's signature and origin;
2. requires the caller's ``old_size`` to equal its own state (else a conflict: the
   caller must retry from the witness's size, as in c2sp.org/tlog-witness);
3. verifies the RFC 9162 consistency proof from its saved root to the new root (same
   size with another root is a fork and is refused);
4. signs a tlog-cosignature/v1 at ``now`` and saves the new state atomically *before*
   releasing the cosignature.

:meth:`Witness.handle_add_checkpoint` speaks the tlog-witness ``add-checkpoint`` body
(``old <size>``, proof lines in base64, blank line, checkpoint note) so the service can
mount it; :meth:`Witness.witness_source` pulls from an export or URL instead.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from pathlib import Path

from audit.checkpoint import SignedCheckpoint
from audit.errors import (
    AuditError,
    ForkError,
    MalformedError,
    ProofError,
    SignatureError,
    TruncationError,
)
from audit.note import COSIGNATURE_V1, NoteSigner, NoteVerifier, Signature
from audit.rfc9162 import consistency_plan, ct_equal, fold, verify_consistency
from audit.sources import Source, TileHashReader
from audit.statefile import load_state, locked, save_state
from audit.tiles import CHECKPOINT_PATH

__all__ = ["Witness", "WitnessConflictError"]


class WitnessConflictError(AuditError):
    """The caller's ``old_size`` is not the witness's size (HTTP 409 in tlog-witness)."""

    def __init__(self, known_size: int) -> None:
        super().__init__(f"witness is at size {known_size}")
        self.known_size = known_size


class Witness:
    """Cosigns checkpoints of one log, identified by ``log_key`` (origin = key name)."""

    def __init__(
        self,
        signer: NoteSigner,
        log_key: NoteVerifier,
        state_path: Path,
        *,
        origin: str | None = None,
    ) -> None:
        if signer.sig_type != COSIGNATURE_V1:
            raise SignatureError("a witness key must be a cosignature/v1 (0x04) key")
        self.signer = signer
        self.log_key = log_key
        self.origin = origin or log_key.name
        self.state_path = Path(state_path)

    def state_size(self) -> int:
        """Size of the last checkpoint cosigned (0 before the first)."""
        saved = load_state(self.state_path)
        return saved.checkpoint.size if saved else 0

    def add_checkpoint(
        self,
        checkpoint_note: bytes,
        old_size: int,
        proof: Sequence[bytes],
        *,
        now: int | None = None,
    ) -> Signature:
        """Verify and cosign; return the cosignature (see the module docstring)."""
        signed = SignedCheckpoint.from_bytes(checkpoint_note)
        signed.verify(self.log_key, self.origin)
        cp = signed.checkpoint
        stamp = int(time.time()) if now is None else now
        with locked(self.state_path):
            saved = load_state(self.state_path)
            known_size = saved.checkpoint.size if saved else 0
            if old_size != known_size:
                raise WitnessConflictError(known_size)
            if saved is not None:
                old = saved.checkpoint
                if cp.size == old.size and not ct_equal(cp.root, old.root):
                    raise ForkError(cp.size, "log signed two different roots for this size")
                if cp.size < old.size:
                    raise TruncationError(old.size, cp.size)
                try:
                    verify_consistency(old.size, cp.size, old.root, cp.root, proof)
                except ProofError as exc:
                    raise ForkError(
                        old.size, f"not consistent with the cosigned size {old.size}: {exc}"
                    ) from None
            elif proof:
                raise MalformedError("a first checkpoint takes an empty consistency proof")
            sig = self.signer.sign(signed.note.text, timestamp=stamp)
            # State first: a cosignature must never exist for a tree the witness forgot.
            cosigned = SignedCheckpoint(cp, signed.note.with_signatures([sig]))
            save_state(self.state_path, cosigned)
        return sig

    def handle_add_checkpoint(self, body: bytes, *, now: int | None = None) -> bytes:
        """tlog-witness ``add-checkpoint``: request body in, signature line bytes out."""
        try:
            head, sep, note = body.partition(b"\n\n")
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError:
            raise MalformedError("malformed add-checkpoint request") from None
        if not sep or not lines[0].startswith("old "):
            raise MalformedError("malformed add-checkpoint request: expected 'old <size>'")
        try:
            old_size = int(lines[0][4:])
            proof = [base64.b64decode(x, validate=True) for x in lines[1:] if x]
        except (ValueError, binascii.Error):
            raise MalformedError("malformed add-checkpoint request") from None
        sig = self.add_checkpoint(note, old_size, proof, now=now)
        return sig.line().encode()

    def witness_source(self, source: Source, *, now: int | None = None) -> SignedCheckpoint:
        """Fetch the latest checkpoint from ``source``, prove it from tiles, cosign.

        The proof hashes come from the (untrusted) tiles and are checked against the
        saved root and the signed new root, so a wrong tile can only cause a refusal.
        Returns the checkpoint with the log signature and this cosignature.
        """
        signed = SignedCheckpoint.from_bytes(source.read(CHECKPOINT_PATH))
        signed.verify(self.log_key, self.origin)
        old_size = self.state_size()
        new_size = signed.checkpoint.size
        proof: list[bytes] = []
        if 0 < old_size < new_size:
            plan = consistency_plan(old_size, new_size)
            hashes = TileHashReader(source, new_size).nodes([n for run in plan for n in run])
            proof = [fold(run, hashes) for run in plan]
        sig = self.add_checkpoint(signed.to_bytes(), old_size, proof, now=now)
        return SignedCheckpoint(signed.checkpoint, signed.note.with_signatures([sig]))


def proof_lines(proof: Sequence[bytes]) -> str:
    """Base64 lines of a consistency proof, as in the add-checkpoint body."""
    return "".join(base64.b64encode(h).decode() + "\n" for h in proof)

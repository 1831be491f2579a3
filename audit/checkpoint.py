"""C2SP ``tlog-checkpoint`` bodies and signed checkpoints.

A checkpoint body is three newline-terminated lines: the origin (a schema-less URL
naming the log), the tree size in decimal without leading zeroes, and the root hash in
standard base64. Extension lines are not used by veilmatch and are rejected, so two
checkpoints for the same tree are byte-identical.

Example (byte-exact, see docs/audit.md)::

    veilmatch.example/audit
    3
    <base64 root>\\n
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from audit.errors import MalformedError, SignatureError, WitnessError
from audit.note import Note, NoteSigner, NoteVerifier, parse_note, sign_note, verify_note
from audit.rfc9162 import HASH_SIZE

__all__ = ["Checkpoint", "SignedCheckpoint"]

_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: ``origin``, ``size`` (number of leaves) and 32-byte ``root``."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not self.origin or not self.origin.isprintable() or "\n" in self.origin:
            raise MalformedError("malformed checkpoint: bad origin line")
        if not 0 <= self.size < 2**64:
            raise MalformedError("malformed checkpoint: size out of range")
        if len(self.root) != HASH_SIZE:
            raise MalformedError("malformed checkpoint: root hash must be 32 bytes")

    def to_bytes(self) -> bytes:
        """The checkpoint body (note text) with its final newline."""
        root = base64.b64encode(self.root).decode()
        return f"{self.origin}\n{self.size}\n{root}\n".encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> Checkpoint:
        """Parse a body; anything but exactly three well-formed lines raises."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedError("malformed checkpoint: not UTF-8") from None
        if not text.endswith("\n"):
            raise MalformedError("malformed checkpoint: missing final newline")
        lines = text[:-1].split("\n")
        if len(lines) != 3:
            raise MalformedError(
                f"malformed checkpoint: expected 3 lines, got {len(lines)} "
                "(extension lines are not accepted)"
            )
        origin, size_text, root_text = lines
        if not _SIZE_RE.fullmatch(size_text):
            raise MalformedError("malformed checkpoint: size is not a canonical decimal")
        try:
            root = base64.b64decode(root_text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise MalformedError("malformed checkpoint: root is not base64") from None
        return cls(origin, int(size_text), root)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with its signed note (log signature first, then cosignatures)."""

    checkpoint: Checkpoint
    note: Note

    @classmethod
    def sign(cls, checkpoint: Checkpoint, signer: NoteSigner) -> SignedCheckpoint:
        """Sign ``checkpoint`` with the log key."""
        return cls(checkpoint, sign_note(checkpoint.to_bytes(), [signer]))

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedCheckpoint:
        """Parse (not verify) a signed checkpoint note."""
        note = parse_note(data)
        return cls(Checkpoint.from_bytes(note.text), note)

    def to_bytes(self) -> bytes:
        """The note bytes as served at ``<prefix>/checkpoint``."""
        return self.note.to_bytes()

    def verify(self, log_key: NoteVerifier, origin: str | None = None) -> None:
        """Raise unless the log key signed this checkpoint (and the origin is as expected)."""
        if origin is not None and self.checkpoint.origin != origin:
            raise SignatureError(
                f"checkpoint origin {self.checkpoint.origin!r}, expected {origin!r}"
            )
        verify_note(Note(self.note.text, self.note.signatures), [log_key])

    def verify_witnesses(
        self, witnesses: list[NoteVerifier], quorum: int, *, now: int | None = None
    ) -> dict[str, int]:
        """Raise :class:`WitnessError` unless ``quorum`` distinct witnesses cosigned.

        Returns witness name → cosignature timestamp. ``now`` (POSIX seconds) rejects
        cosignatures dated in the future (more than 5 minutes of clock skew).
        """
        good: dict[str, int] = {}
        for sig in self.note.signatures:
            for w in witnesses:
                if w.matches(sig):
                    try:
                        stamp = w.verify(self.note.text, sig)
                    except SignatureError as exc:
                        raise WitnessError(str(exc)) from None
                    assert stamp is not None
                    if now is not None and stamp > now + 300:
                        raise WitnessError(f"cosignature by {w.name} is dated in the future")
                    good[w.name] = stamp
        if len(good) < quorum:
            raise WitnessError(
                f"{len(good)} valid witness cosignature(s) on size "
                f"{self.checkpoint.size}, {quorum} required"
            )
        return good

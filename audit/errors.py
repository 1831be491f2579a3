"""Error root of the audit component.

Every error the audit package raises on purpose is an :class:`AuditError`. Verification
failures carry *where* the log is wrong (an entry sequence number, a range of entries,
a tree size), so an oversight body can name the exact problem. Messages never contain
payload contents: only sequence numbers, sizes, hashes and key names.
"""

from __future__ import annotations

from core.errors import VeilmatchError


class AuditError(VeilmatchError):
    """Root of every audit error."""


# --- Merkle proofs (RFC 9162) -------------------------------------------------------


class ProofError(AuditError):
    """A Merkle proof is malformed or does not prove what it claims."""


class ProofPreconditionError(ProofError):
    """The requested proof parameters are impossible (e.g. index >= size)."""


class ProofLengthError(ProofError):
    """A proof has the wrong number of hashes or a hash of the wrong size."""

    def __init__(self, expected: int, got: int, what: str = "proof") -> None:
        super().__init__(f"{what} has {got} hashes, expected {expected}")
        self.expected = expected
        self.got = got


class RootMismatchError(ProofError):
    """A recomputed root differs from the expected one."""

    def __init__(self, expected: bytes, calculated: bytes, what: str = "root") -> None:
        super().__init__(
            f"{what} mismatch: expected {expected.hex()}, calculated {calculated.hex()}"
        )
        self.expected = expected
        self.calculated = calculated


# --- Events --------------------------------------------------------------------------


class EventError(AuditError):
    """An event cannot be recorded as given."""


class BiometricPayloadError(EventError):
    """A payload looks like it carries biometric data or a raw identifier.

    ``path`` names the offending field (e.g. ``payload.probe.template``); the value is
    never echoed.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}; the audit log stores no biometric data")
        self.path = path
        self.reason = reason


# --- Notes, keys, checkpoints --------------------------------------------------------


class MalformedError(AuditError):
    """Bytes that should be a note, key, checkpoint, tile or bundle do not parse."""


class KeyFormatError(MalformedError):
    """A signer or verifier key string is malformed."""


class SignatureError(AuditError):
    """A signature is missing, from an unknown key, or does not verify."""


class LogStateError(AuditError):
    """The log cannot perform the operation in its current state (e.g. no checkpoint)."""


class SequencerKeyError(AuditError):
    """A sequencer tag does not verify under the sequencer key."""


class SequencerChainError(LogStateError):
    """Stored entries ``[start, end)`` are not authenticated by this log's sequencer.

    Raised by the appender (it will not extend such a head) and by the checkpointer (it
    will not sign such a size): rows written around the sequencer, by a database writer
    or by an appender holding another key. An alarm, not a transient condition.
    """

    def __init__(self, start: int, end: int, problem: str) -> None:
        super().__init__(f"entries [{start}, {end}): {problem}")
        self.start = start
        self.end = end
        self.problem = problem


class SourceError(AuditError):
    """A log source cannot be used as configured (e.g. a token over plain HTTP)."""


class NotFoundError(AuditError):
    """A requested entry, tile, bundle or checkpoint does not exist."""


# --- Verification --------------------------------------------------------------------


class VerificationError(AuditError):
    """The log failed verification. ``where`` names the entry, range or size at fault."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class EntryTamperedError(VerificationError):
    """An entry's bytes do not match the tree (content changed, reordered or inserted)."""

    def __init__(self, seq: int, problem: str) -> None:
        super().__init__(f"entry {seq}", problem)
        self.seq = seq


class EntryMissingError(VerificationError):
    """An entry the tree says exists is absent (deleted row)."""

    def __init__(self, seq: int, problem: str) -> None:
        super().__init__(f"entry {seq}", problem)
        self.seq = seq


class RangeTamperedError(VerificationError):
    """Stored tree hashes or a signed root disagree for a range of entries."""

    def __init__(self, start: int, end: int, problem: str) -> None:
        super().__init__(f"entries [{start}, {end})", problem)
        self.start = start
        self.end = end


class PayloadError(VerificationError):
    """A stored payload does not match its entry, or vanished without a deletion event."""

    def __init__(self, seq: int, problem: str) -> None:
        super().__init__(f"payload of entry {seq}", problem)
        self.seq = seq


class RetentionViolationError(PayloadError):
    """A ``retention.delete`` entry deleted a payload before its retention period passed
    (or without a period recorded); ``deleted_by`` is that entry's ``seq``."""

    def __init__(self, seq: int, deleted_by: int, problem: str) -> None:
        super().__init__(seq, f"deleted by entry {deleted_by}: {problem}")
        self.deleted_by = deleted_by


class TruncationError(VerificationError):
    """The log is smaller than a checkpoint seen before."""

    def __init__(self, seen: int, served: int) -> None:
        super().__init__(
            f"tree size {served}", f"log truncated: size {served} < previously seen size {seen}"
        )
        self.seen = seen
        self.served = served


class ForkError(VerificationError):
    """Two signed views of the log are inconsistent (split view)."""

    def __init__(self, size: int, problem: str) -> None:
        super().__init__(f"tree size {size}", f"fork: {problem}")
        self.size = size


class WitnessError(VerificationError):
    """Required witness cosignatures are missing or invalid."""

    def __init__(self, problem: str) -> None:
        super().__init__("witnesses", problem)

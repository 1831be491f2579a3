"""Audit keys: the log and witness note keys, and the sequencer key.

A log key signs checkpoints (signed-note type 0x01); a witness key cosigns them
(tlog-cosignature type 0x04). Private files hold the ``PRIVATE+KEY+…`` string and must
not be readable by group or others; public files hold the verifier key string.
Private keys live in the key directory, never in the repository or the database.

The **sequencer key** authenticates every range of entries the log's own appender
writes (:mod:`audit.sequencer`), so that the checkpointer signs only entries the
appender wrote, never rows a database writer slipped in. It is reached only through
the narrow :class:`SequencerKey` protocol (``tag`` / ``verify``), so a file key
(:class:`FileSequencerKey`, the development default) and a key held in an HSM (a
PKCS#11 HMAC key) are interchangeable. Example::

    key = load_or_create_sequencer_key(key_dir / SEQUENCER_KEY_FILE)
    tag = key.tag(b"message")
    key.verify(b"message", tag)          # raises SequencerKeyError if it does not match
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import Protocol

from audit.errors import KeyFormatError, SequencerKeyError
from audit.note import COSIGNATURE_V1, ED25519, NoteSigner, NoteVerifier

__all__ = [
    "LOG_KEY_FILE",
    "SEQUENCER_KEY_FILE",
    "FileSequencerKey",
    "HmacSequencerKey",
    "SequencerKey",
    "generate_key",
    "load_or_create_sequencer_key",
    "load_signer",
    "load_verifier",
    "sequencer_key_from_signer",
]

LOG_KEY_FILE = "audit-log.key"
#: The sequencer key file in the key directory (0600), created by the service's bootstrap.
SEQUENCER_KEY_FILE = "audit-sequencer.key"
_SEQUENCER_PREFIX = "VEILMATCH+SEQUENCER+HMAC-SHA256+"
_SEQUENCER_KEY_BYTES = 32
KINDS = {"log": ED25519, "witness": COSIGNATURE_V1}


def generate_key(key_dir: Path, name: str, kind: str = "log", stem: str | None = None) -> Path:
    """Create ``<stem>.key`` (0600) and ``<stem>.vkey`` in ``key_dir``; refuse to overwrite.

    ``stem`` defaults to ``audit-log`` for log keys and ``audit-witness`` for witness
    keys. Returns the private key path.
    """
    if kind not in KINDS:
        raise KeyFormatError(f"key kind must be one of {sorted(KINDS)}")
    signer = NoteSigner.generate(name, KINDS[kind])
    key_dir = Path(key_dir)
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = stem or ("audit-log" if kind == "log" else "audit-witness")
    private = key_dir / f"{stem}.key"
    try:
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFormatError(f"{private} already exists; not overwriting a key") from None
    try:
        os.write(fd, (signer.to_string() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    (key_dir / f"{stem}.vkey").write_text(signer.verifier().to_string() + "\n")
    return private


def load_signer(path: Path) -> NoteSigner:
    """Read a private key file; refuse files readable by group or others."""
    return NoteSigner.from_string(_read_private(Path(path)))


def load_verifier(value: str) -> NoteVerifier:
    """A verifier key from its string or from a file containing it."""
    if "+" not in value or os.path.exists(value):
        try:
            value = Path(value).read_text()
        except OSError:
            raise KeyFormatError(
                f"{value!r} is neither a verifier key nor a readable file"
            ) from None
    return NoteVerifier.from_string(value)


# --- the sequencer key ----------------------------------------------------------------


class SequencerKey(Protocol):
    """A secret key that tags and checks messages; it never lives in the database.

    ``tag`` is deterministic for a given key and message (HMAC, or a deterministic
    signature); ``verify`` raises :class:`~audit.errors.SequencerKeyError` unless
    ``tag`` is this key's tag of ``data``. Implementations: :class:`FileSequencerKey`,
    an HSM key through PKCS#11.
    """

    def tag(self, data: bytes) -> bytes:
        """This key's tag of ``data``."""
        ...

    def verify(self, data: bytes, tag: bytes) -> None:
        """Raise :class:`~audit.errors.SequencerKeyError` unless ``tag`` matches ``data``."""
        ...


class HmacSequencerKey:
    """HMAC-SHA256 under a 32-byte secret held in memory (tags are 32 bytes)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != _SEQUENCER_KEY_BYTES:
            raise KeyFormatError(f"sequencer key must be {_SEQUENCER_KEY_BYTES} bytes")
        self._secret = secret

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<secret>)"

    def tag(self, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data``."""
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def verify(self, data: bytes, tag: bytes) -> None:
        """Constant-time comparison with the expected HMAC."""
        if not hmac.compare_digest(self.tag(data), tag):
            raise SequencerKeyError("tag does not verify under the sequencer key")


class FileSequencerKey(HmacSequencerKey):
    """:class:`HmacSequencerKey` read from a 0600 file (``VEILMATCH+SEQUENCER+…`` line)."""

    @classmethod
    def generate(cls, path: Path) -> FileSequencerKey:
        """Write a fresh random key to ``path`` (0600, parent 0700); refuse to overwrite."""
        path = Path(path)
        secret = os.urandom(_SEQUENCER_KEY_BYTES)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFormatError(f"{path} already exists; not overwriting a key") from None
        try:
            os.write(fd, (_SEQUENCER_PREFIX + base64.b64encode(secret).decode() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return cls(secret)

    @classmethod
    def load(cls, path: Path) -> FileSequencerKey:
        """Read ``path``; refuse files accessible by group or others, or malformed."""
        text = _read_private(Path(path)).strip()
        if not text.startswith(_SEQUENCER_PREFIX):
            raise KeyFormatError(f"{path} is not a veilmatch sequencer key")
        try:
            secret = base64.b64decode(text.removeprefix(_SEQUENCER_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise KeyFormatError(f"{path}: sequencer key is not base64") from None
        return cls(secret)


def load_or_create_sequencer_key(path: Path) -> FileSequencerKey:
    """The file sequencer key at ``path``, created (0600) on first start."""
    if Path(path).exists():
        return FileSequencerKey.load(path)
    return FileSequencerKey.generate(path)


#: Message whose deterministic Ed25519 signature seeds :func:`sequencer_key_from_signer`.
#: It has one line and no size or root, so it can never be a checkpoint body.
_DERIVATION_MESSAGE = b"veilmatch/audit: sequencer key derivation v1\n"


def sequencer_key_from_signer(signer: NoteSigner) -> HmacSequencerKey:
    """A sequencer key derived from the log's signing key (tests and tools only).

    The secret is SHA-256 of the signer's (deterministic) Ed25519 signature over a fixed
    one-line message that is never a checkpoint, so it needs only ``signer.sign`` and
    works for any signer implementation; only a holder of the log key can compute it.
    An :class:`~audit.log.AuditLog` built without a sequencer key uses this; the service
    uses its own file (or HSM) key, so that a log key and a sequencer key are separate.
    """
    signature = signer.sign(_DERIVATION_MESSAGE)
    return HmacSequencerKey(hashlib.sha256(b"sequencer\n" + signature.body).digest())


def _read_private(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFormatError(f"key file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFormatError(f"key file {path} must not be accessible by group or others")
    return path.read_text()

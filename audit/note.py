"""C2SP ``signed-note`` with Ed25519 (type 0x01) and timestamped cosignatures (type 0x04).

A note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <key name> base64(key ID || signature)``. Key IDs are
``SHA-256(name || 0x0A || type || public key)[:4]`` (c2sp.org/signed-note). Cosignatures
(c2sp.org/tlog-cosignature) sign ``cosignature/v1\\ntime <t>\\n`` followed by the note
text, and carry ``key ID || u64 timestamp || Ed25519 signature``.

Key strings follow the Go ``golang.org/x/mod/sumdb/note`` encoding:
verifier ``<name>+<8 hex key ID>+<base64(type || 32-byte public key)>`` and signer
``PRIVATE+KEY+<name>+<8 hex key ID>+<base64(type || 32-byte seed)>``.

Example::

    signer = NoteSigner.generate("veilmatch.example/audit")
    note = sign_note(b"hello\\n", [signer])
    verify_note(note, [signer.verifier()])   # returns the text, raises on failure
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.errors import KeyFormatError, MalformedError, SignatureError

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "Note",
    "NoteSigner",
    "NoteVerifier",
    "Signature",
    "cosignature_message",
    "key_id",
    "parse_note",
    "sign_note",
    "verify_note",
]

#: signed-note signature type: Ed25519 over the note text.
ED25519 = 0x01
#: signed-note signature type: timestamped Ed25519 cosignature (tlog-cosignature).
COSIGNATURE_V1 = 0x04
_KINDS = {ED25519: "ed25519", COSIGNATURE_V1: "cosignature/v1"}
EM_DASH_PREFIX = "— "
MAX_SIGNATURES = 32  # the spec requires accepting at least 16
MAX_NOTE_BYTES = 64 * 1024


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || type || public key)[:4]`` (signed-note, tlog-cosignature)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise KeyFormatError(f"invalid key name {name!r}: non-empty, no spaces or '+'")


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise MalformedError(f"malformed {what}: not standard base64") from None


def cosignature_message(note_text: bytes, timestamp: int) -> bytes:
    """The message a tlog-cosignature/v1 signs for ``note_text`` at POSIX ``timestamp``."""
    if not 0 <= timestamp < 2**63:
        raise MalformedError(f"cosignature timestamp {timestamp} out of range")
    return b"cosignature/v1\ntime %d\n" % timestamp + note_text


@dataclass(frozen=True)
class Signature:
    """One parsed signature line: key name, 4-byte key ID and the remaining bytes."""

    name: str
    key_id: bytes
    body: bytes

    def line(self) -> str:
        """The signature line including the trailing newline."""
        blob = base64.b64encode(self.key_id + self.body).decode()
        return f"{EM_DASH_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted public key: name, signature type (0x01 or 0x04) and 32-byte Ed25519 key."""

    name: str
    sig_type: int
    public_key: bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.sig_type not in _KINDS:
            raise KeyFormatError(f"unsupported signature type 0x{self.sig_type:02x}")
        if len(self.public_key) != 32:
            raise KeyFormatError("Ed25519 public key must be 32 bytes")
        object.__setattr__(self, "key_id", key_id(self.name, self.sig_type, self.public_key))

    @classmethod
    def from_string(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex key ID>+<base64(type || key)>``; the key ID must match."""
        parts = vkey.strip().split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise KeyFormatError("malformed verifier key: expected name+keyid+key")
        name, hex_id, blob = parts
        raw = _b64decode(blob, "verifier key")
        if len(raw) != 33:
            raise KeyFormatError("malformed verifier key: expected type byte and 32-byte key")
        verifier = cls(name, raw[0], raw[1:])
        if hex_id.lower() != verifier.key_id.hex() or len(hex_id) != 8:
            raise KeyFormatError(f"verifier key {name}: key ID {hex_id} does not match key")
        return verifier

    def to_string(self) -> str:
        """Encode as ``<name>+<hex key ID>+<base64(type || key)>``."""
        blob = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    def matches(self, sig: Signature) -> bool:
        """True when ``sig`` claims to be from this key (name *and* key ID equal)."""
        return sig.name == self.name and sig.key_id == self.key_id

    def verify(self, note_text: bytes, sig: Signature) -> int | None:
        """Raise :class:`SignatureError` unless ``sig`` is this key's valid signature.

        Returns the cosignature timestamp for type 0x04, ``None`` for type 0x01.
        """
        pub = Ed25519PublicKey.from_public_bytes(self.public_key)
        if self.sig_type == ED25519:
            if len(sig.body) != 64:
                raise SignatureError(f"signature by {self.name}: wrong length")
            message, stamp = note_text, None
        else:
            if len(sig.body) != 72:
                raise SignatureError(f"cosignature by {self.name}: wrong length")
            stamp = struct.unpack(">Q", sig.body[:8])[0]
            if stamp >= 2**63:
                raise SignatureError(f"cosignature by {self.name}: timestamp out of range")
            message = cosignature_message(note_text, stamp)
        try:
            pub.verify(sig.body[-64:], message)
        except InvalidSignature:
            raise SignatureError(f"signature by {self.name} does not verify") from None
        return stamp


@dataclass(frozen=True)
class NoteSigner:
    """A private Ed25519 key that signs notes (0x01) or cosigns checkpoints (0x04)."""

    name: str
    sig_type: int
    _private: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.sig_type not in _KINDS:
            raise KeyFormatError(f"unsupported signature type 0x{self.sig_type:02x}")

    @classmethod
    def generate(cls, name: str, sig_type: int = ED25519) -> NoteSigner:
        """A fresh random key (``os.urandom`` via ``cryptography``)."""
        return cls(name, sig_type, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes, sig_type: int = ED25519) -> NoteSigner:
        """Deterministic key from a 32-byte seed (tests and byte-exact documentation)."""
        if len(seed) != 32:
            raise KeyFormatError("Ed25519 seed must be 32 bytes")
        return cls(name, sig_type, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_string(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(type || seed)>``."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise KeyFormatError("malformed signer key: expected PRIVATE+KEY+name+keyid+key")
        raw = _b64decode(parts[4], "signer key")
        if len(raw) != 33:
            raise KeyFormatError("malformed signer key: expected type byte and 32-byte seed")
        signer = cls.from_seed(parts[2], raw[1:], raw[0])
        if parts[3].lower() != signer.verifier().key_id.hex():
            raise KeyFormatError(f"signer key {parts[2]}: key ID does not match key")
        return signer

    def to_string(self) -> str:
        """The secret key string. Never log it; write it only to a 0600 file."""
        from cryptography.hazmat.primitives.serialization import (
            NoEncryption,
            PrivateFormat,
        )

        seed = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        blob = base64.b64encode(bytes([self.sig_type]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier().key_id.hex()}+{blob}"

    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def verifier(self) -> NoteVerifier:
        """The matching public verifier."""
        return NoteVerifier(self.name, self.sig_type, self.public_key())

    def sign(self, note_text: bytes, *, timestamp: int | None = None) -> Signature:
        """Sign ``note_text``; cosigners (0x04) need the POSIX ``timestamp`` to sign at."""
        kid = self.verifier().key_id
        if self.sig_type == ED25519:
            return Signature(self.name, kid, self._private.sign(note_text))
        if timestamp is None:
            raise SignatureError("a cosignature needs a timestamp")
        sig = self._private.sign(cosignature_message(note_text, timestamp))
        return Signature(self.name, kid, struct.pack(">Q", timestamp) + sig)


@dataclass(frozen=True)
class Note:
    """A parsed signed note: its text (ending in a newline) and signature lines."""

    text: bytes
    signatures: tuple[Signature, ...]

    def to_bytes(self) -> bytes:
        """Serialise: text, blank line, signature lines."""
        return self.text + b"\n" + "".join(s.line() for s in self.signatures).encode()

    def with_signatures(self, extra: list[Signature]) -> Note:
        """A copy with ``extra`` signatures added (duplicates by name+key ID dropped)."""
        seen = {(s.name, s.key_id) for s in self.signatures}
        new = [s for s in extra if (s.name, s.key_id) not in seen]
        return Note(self.text, self.signatures + tuple(new))


def parse_signature_line(line: str) -> Signature:
    """Parse one ``— <name> <base64>`` line (without its newline)."""
    if not line.startswith(EM_DASH_PREFIX):
        raise MalformedError("malformed note: signature line does not start with '— '")
    rest = line[len(EM_DASH_PREFIX) :]
    name, sep, blob = rest.partition(" ")
    if not sep or not name or " " in blob:
        raise MalformedError("malformed note: signature line needs a name and one signature")
    raw = _b64decode(blob, "note signature")
    if len(raw) < 5:
        raise MalformedError("malformed note: signature too short")
    return Signature(name, raw[:4], raw[4:])


def parse_note(data: bytes) -> Note:
    """Parse a signed note, checking the format rules before anything is trusted."""
    if len(data) > MAX_NOTE_BYTES:
        raise MalformedError("malformed note: too large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError("malformed note: not UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise MalformedError("malformed note: control characters")
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise MalformedError("malformed note: no blank line before signatures")
    body, sig_block = text[: split + 1], text[split + 2 :]
    lines = sig_block[:-1].split("\n") if sig_block else []
    if not lines:
        raise MalformedError("malformed note: no signatures")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError("malformed note: too many signatures")
    return Note(body.encode("utf-8"), tuple(parse_signature_line(x) for x in lines))


def sign_note(text: bytes, signers: list[NoteSigner], *, timestamp: int | None = None) -> Note:
    """Sign ``text`` (which must end in a newline) with every signer."""
    if not text.endswith(b"\n"):
        raise MalformedError("note text must end in a newline")
    return Note(text, tuple(s.sign(text, timestamp=timestamp) for s in signers))


def verify_note(note: Note, verifiers: list[NoteVerifier]) -> list[tuple[NoteVerifier, int | None]]:
    """Check every signature from a known key; raise unless at least one verified.

    Signatures from unknown keys are ignored (signed-note: "verifiers MUST ignore
    signatures from unknown keys"); a known key's bad signature rejects the whole note.
    Returns the verifiers that signed, with cosignature timestamps.
    """
    ok: list[tuple[NoteVerifier, int | None]] = []
    for sig in note.signatures:
        for v in verifiers:
            if v.matches(sig):
                ok.append((v, v.verify(note.text, sig)))
    if not ok:
        raise SignatureError("no signature from a trusted key")
    return ok

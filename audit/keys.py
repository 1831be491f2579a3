"""Audit key files: generation (0600 private files), loading, verifier key strings.

A log key signs checkpoints (signed-note type 0x01); a witness key cosigns them
(tlog-cosignature type 0x04). Private files hold the ``PRIVATE+KEY+…`` string and must
not be readable by group or others; public files hold the verifier key string.
Private keys live in the key directory, never in the repository.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from audit.errors import KeyFormatError
from audit.note import COSIGNATURE_V1, ED25519, NoteSigner, NoteVerifier

__all__ = ["LOG_KEY_FILE", "generate_key", "load_signer", "load_verifier"]

LOG_KEY_FILE = "audit-log.key"
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
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFormatError(f"key file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFormatError(f"key file {path} must not be accessible by group or others")
    return NoteSigner.from_string(path.read_text())


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

"""Secret files of the gate: written 0600, read only if nobody else can read them.

Every private key and the pseudonymisation key on a gate goes through these two
functions, so the rule is in one place: a secret file must be a regular file (not a
symlink) of mode 0600 or stricter, owned by the gate's user; anything looser is
refused with :class:`~gate.errors.InsecureSecretError` rather than silently tightened,
because a world-readable key has to be treated as disclosed and replaced.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gate.errors import GateStateError, InsecureSecretError

__all__ = ["read_secret", "write_secret"]


def write_secret(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600. Without ``replace`` an existing file is
    refused (``GateStateError``); with it the file is replaced atomically (a temporary
    0600 file renamed over it), so a crash never leaves half a key."""
    if not replace:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise GateStateError(f"{path} already exists; refusing to overwrite it") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_secret(path: Path) -> bytes:
    """The contents of a secret file; ``InsecureSecretError`` if it is a symlink, not a
    regular file, or has any group/other permission bit; ``GateStateError`` if it
    cannot be read."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise GateStateError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InsecureSecretError(f"{path} is not a regular file")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise InsecureSecretError(
            f"{path} has mode {mode:04o}; secret files must be 0600 (chmod 600 it only if "
            "you are sure nobody else read it; otherwise replace the key)"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise InsecureSecretError(f"{path} is owned by another user")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GateStateError(f"cannot read {path}: {exc.strerror}") from None

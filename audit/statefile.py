"""Atomic, locked state files for verifiers and witnesses.

The state is the last checkpoint a party accepted. It is replaced atomically (write to
a temporary file in the same directory, fsync, rename, fsync the directory), so a crash
leaves either the old or the new state, never a torn file; an exclusive ``flock`` on a
sibling ``.lock`` file keeps two runs from interleaving.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from audit.checkpoint import SignedCheckpoint
from audit.errors import MalformedError

__all__ = ["load_state", "locked", "save_state", "write_atomic"]

STATE_VERSION = 1


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` for the duration of the block."""
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def load_state(path: Path) -> SignedCheckpoint | None:
    """The saved checkpoint, or ``None`` if the file does not exist yet."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        obj = json.loads(raw)
        if obj.get("version") != STATE_VERSION:
            raise MalformedError(f"state file {path}: unsupported version")
        return SignedCheckpoint.from_bytes(obj["checkpoint"].encode())
    except (ValueError, KeyError, AttributeError, TypeError):
        raise MalformedError(f"state file {path} is malformed") from None


def save_state(path: Path, checkpoint: SignedCheckpoint) -> None:
    """Atomically record ``checkpoint`` as the last one accepted."""
    cp = checkpoint.checkpoint
    obj = {
        "version": STATE_VERSION,
        "origin": cp.origin,
        "size": cp.size,
        "root": cp.root.hex(),
        "checkpoint": checkpoint.to_bytes().decode(),
    }
    write_atomic(Path(path), (json.dumps(obj, indent=2) + "\n").encode())

"""At-rest envelope encryption: AES-256-GCM data keys wrapped by a key-encryption key.

Usage::

    kek = FileKek.generate(Path("var/keys/kek.bin"))
    blob = seal(kek, b"secret", aad=b"watchlist:42")
    assert open_sealed(kek, blob, aad=b"watchlist:42") == b"secret"

Each ``seal`` draws a fresh 256-bit data key, encrypts the plaintext with AES-256-GCM and
wraps the data key with the KEK (``KeyEncryptionKey``; ``FileKek`` keeps it in a 0600
file, a KMS can implement the same two methods later). Blob format, version 1::

    version   1 byte   = 0x01
    kid_len   1 byte   length of the KEK id (ASCII, 1..64)
    kid       kid_len  KEK id
    wk_len    2 bytes  big-endian length of the wrapped data key (1..1024)
    wrapped   wk_len   data key wrapped by the KEK
    nonce     12 bytes AES-GCM nonce
    ct        rest     AES-GCM ciphertext || 16-byte tag

The whole header (version .. nonce) is authenticated together with the caller's AAD,
so swapping a header field breaks the tag. Any failure raises ``SealedDataError``.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from crypto.errors import CryptoError, SealedDataError

__all__ = [
    "BLOB_VERSION",
    "FileKek",
    "KeyEncryptionKey",
    "open_sealed",
    "seal",
]

BLOB_VERSION = 1
_NONCE_LEN = 12
_TAG_LEN = 16
_DATA_KEY_LEN = 32
_KEK_LEN = 32
_MAX_KID = 64
_MAX_WRAPPED = 1024
# Domain separation for the KEK id, so it can never collide with another hash of the key.
_KID_DOMAIN = b"veilmatch/atrest/kek-id/v1\x00"

RandBytes = Callable[[int], bytes]


@runtime_checkable
class KeyEncryptionKey(Protocol):
    """Wraps and unwraps 32-byte data keys. A KMS client can implement this."""

    @property
    def key_id(self) -> str:
        """Stable ASCII id (1..64 chars) recorded in every blob this KEK wraps."""
        ...

    def wrap(self, data_key: bytes) -> bytes:
        """Return the wrapped form of ``data_key`` (at most 1024 bytes)."""
        ...

    def unwrap(self, wrapped: bytes) -> bytes:
        """Inverse of ``wrap``; raise ``SealedDataError`` if it does not authenticate."""
        ...


class FileKek:
    """A 32-byte AES key-encryption key kept in a file of mode 0600.

    Data keys are wrapped with AES key wrap (RFC 3394), which authenticates the result.
    The key id is the first 16 hex digits of a domain-separated SHA-256 of the key, so it
    identifies the key without revealing it.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEK_LEN:
            raise CryptoError(f"a KEK is {_KEK_LEN} bytes, got {len(key)}")
        self._key = key
        self._key_id = hashlib.sha256(_KID_DOMAIN + key).hexdigest()[:16]

    @classmethod
    def generate(cls, path: Path, *, randbytes: RandBytes = os.urandom) -> FileKek:
        """Create a new KEK file at ``path`` (mode 0600); refuse to overwrite one."""
        key = randbytes(_KEK_LEN)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CryptoError(f"KEK file {path} already exists") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> FileKek:
        """Read a KEK file; it must hold exactly 32 bytes and not be group/other readable."""
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise CryptoError(f"cannot read KEK file {path}: {exc.strerror}") from None
        if mode & 0o077:
            raise CryptoError(f"KEK file {path} is accessible by group or others")
        return cls(data)

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, data_key: bytes) -> bytes:
        return aes_key_wrap(self._key, data_key)

    def unwrap(self, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._key, wrapped)
        except (InvalidUnwrap, ValueError):
            raise SealedDataError() from None

    def __repr__(self) -> str:
        return f"FileKek(key_id={self._key_id!r})"


def seal(
    kek: KeyEncryptionKey,
    plaintext: bytes,
    aad: bytes = b"",
    *,
    randbytes: RandBytes = os.urandom,
) -> bytes:
    """Encrypt ``plaintext`` under a fresh data key wrapped by ``kek``; bind ``aad``.

    ``aad`` is not stored: the same bytes must be given to ``open_sealed``. Use it to bind
    the blob to its context (record id, purpose) so blobs cannot be swapped.
    """
    kid = kek.key_id.encode("ascii")
    if not 1 <= len(kid) <= _MAX_KID:
        raise CryptoError("KEK id must be 1..64 ASCII characters")
    data_key = randbytes(_DATA_KEY_LEN)
    wrapped = kek.wrap(data_key)
    if not 1 <= len(wrapped) <= _MAX_WRAPPED:
        raise CryptoError("wrapped data key has an unsupported length")
    nonce = randbytes(_NONCE_LEN)
    header = (
        struct.pack(">BB", BLOB_VERSION, len(kid))
        + kid
        + struct.pack(">H", len(wrapped))
        + wrapped
        + nonce
    )
    ct = AESGCM(data_key).encrypt(nonce, plaintext, header + aad)
    return header + ct


def open_sealed(kek: KeyEncryptionKey, blob: bytes, aad: bytes = b"") -> bytes:
    """Decrypt a blob made by ``seal``; raise ``SealedDataError`` on any failure."""
    try:
        view = memoryview(blob)
        version, kid_len = struct.unpack_from(">BB", view, 0)
        if version != BLOB_VERSION or not 1 <= kid_len <= _MAX_KID:
            raise SealedDataError()
        pos = 2
        kid = bytes(view[pos : pos + kid_len])
        pos += kid_len
        (wk_len,) = struct.unpack_from(">H", view, pos)
        pos += 2
        if not 1 <= wk_len <= _MAX_WRAPPED:
            raise SealedDataError()
        wrapped = bytes(view[pos : pos + wk_len])
        pos += wk_len
        nonce = bytes(view[pos : pos + _NONCE_LEN])
        pos += _NONCE_LEN
        if len(blob) < pos + _TAG_LEN or len(wrapped) != wk_len:
            raise SealedDataError()
        if kid != kek.key_id.encode("ascii"):
            raise SealedDataError()
        data_key = kek.unwrap(wrapped)
        if len(data_key) != _DATA_KEY_LEN:
            raise SealedDataError()
        return AESGCM(data_key).decrypt(nonce, bytes(view[pos:]), bytes(view[:pos]) + aad)
    except SealedDataError:
        raise
    except (InvalidTag, struct.error, ValueError, UnicodeError):
        raise SealedDataError() from None

"""Message-authentication keys behind one narrow interface: ``tag`` and ``verify``.

A :class:`MacKey` computes HMAC-SHA256 tags (32 bytes) under a secret the caller never
sees: :class:`SecretMacKey` holds it in memory (development, or a secret from the
environment); :class:`crypto.pkcs11.Pkcs11HmacKey` keeps it in a PKCS#11 token. The
staff bearer tokens and the audit sequencer use this interface, so either can move
into an HSM without code changes. Example::

    key = SecretMacKey(secrets.token_bytes(32))
    tag = key.tag(b"message")
    key.verify(b"message", tag)      # raises TagMismatchError if it does not match
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol, runtime_checkable

from crypto.errors import CryptoError, TagMismatchError

__all__ = ["MIN_SECRET_BYTES", "TAG_BYTES", "MacKey", "SecretMacKey"]

#: HMAC-SHA256 tags are 32 bytes.
TAG_BYTES = 32
#: Shortest accepted secret (RFC 2104 recommends at least the hash output length).
MIN_SECRET_BYTES = 32
# Domain separation for the key id, so it never equals another hash of the secret.
_KID_DOMAIN = b"veilmatch/keystore/mac-key-id/v1\x00"


@runtime_checkable
class MacKey(Protocol):
    """HMAC-SHA256 under a secret that does not leave the key object (or its token)."""

    @property
    def key_id(self) -> str:
        """Stable, non-secret ASCII id of the key (1..64 characters)."""
        ...

    def tag(self, data: bytes) -> bytes:
        """The 32-byte HMAC-SHA256 of ``data``; deterministic for one key."""
        ...

    def verify(self, data: bytes, tag: bytes) -> None:
        """Raise :class:`~crypto.errors.TagMismatchError` unless ``tag`` is ``data``'s tag."""
        ...


class SecretMacKey:
    """HMAC-SHA256 under a secret of at least 32 bytes held in this process's memory."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise CryptoError(f"a MAC secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = bytes(secret)
        self._key_id = hashlib.sha256(_KID_DOMAIN + self._secret).hexdigest()[:16]

    @property
    def key_id(self) -> str:
        return self._key_id

    def tag(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def verify(self, data: bytes, tag: bytes) -> None:
        # compare_digest: the comparison time does not depend on where the tags differ.
        if not hmac.compare_digest(self.tag(data), tag):
            raise TagMismatchError()

    def __repr__(self) -> str:
        return f"SecretMacKey(key_id={self._key_id!r})"

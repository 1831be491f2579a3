"""Keys held in a PKCS#11 token: an HSM in production, SoftHSM2 for development and tests.

Three kinds of key, each used only inside the token:

- :class:`Pkcs11Ed25519PrivateKey`: an Ed25519 key (``CKK_EC_EDWARDS``, curve OID
  1.3.101.112) signing with ``CKM_EDDSA``. It *is* a ``cryptography``
  ``Ed25519PrivateKey``, so code written for a file key (``audit.note.NoteSigner``)
  signs with it unchanged; asking it for its private bytes raises.
- :class:`Pkcs11Kek`: an AES-256 key-encryption key that wraps and unwraps the 32-byte
  data keys of :mod:`crypto.atrest` with ``CKM_AES_KEY_WRAP`` (RFC 3394, the same bytes
  :class:`crypto.atrest.FileKek` produces, so a file KEK imported into a token keeps
  opening old blobs). The data key exists in the token only as a session object for
  the length of one call.
- :class:`Pkcs11HmacKey`: a 256-bit generic secret computing HMAC-SHA256
  (``CKM_SHA256_HMAC``); a :class:`crypto.keystore.MacKey`.

Invariant: every private or secret key this module creates or accepts has
``CKA_SENSITIVE`` true and ``CKA_EXTRACTABLE`` false (also ``CKA_MODIFIABLE`` false
when created here, so neither can be changed back), so the token refuses to reveal or
wrap it out; a key found in the token without these attributes is refused
(:class:`~crypto.errors.HsmError`). One :class:`Pkcs11Token` holds one logged-in session
and serialises every token call on a lock (a PKCS#11 session runs one operation at a
time). Example::

    token = Pkcs11Token.open(Path("/usr/lib/softhsm/libsofthsm2.so"), "veilmatch", pin)
    signer = token.ed25519_key("veilmatch-audit-log", create=True)
    signature = signer.sign(b"note text")        # verifies with signer.public_key()
"""

from __future__ import annotations

import contextlib
import hmac
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import (
    NoSuchToken,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PKCS11Error,
    UserAlreadyLoggedIn,
)
from pkcs11.util.ec import encode_named_curve_parameters

from crypto.errors import (
    HsmError,
    KeyExportRefusedError,
    KeyNotFoundError,
    SealedDataError,
    TagMismatchError,
)

__all__ = [
    "ED25519_OID",
    "Pkcs11Ed25519PrivateKey",
    "Pkcs11HmacKey",
    "Pkcs11Kek",
    "Pkcs11Token",
]

#: Object identifier of Ed25519 (RFC 8410), the ``CKA_EC_PARAMS`` of an Edwards key.
ED25519_OID = "1.3.101.112"
_ID_BYTES = 8  # CKA_ID of generated keys: 8 random bytes, shown as 16 hex digits
_DATA_KEY_BYTES = 32
T = TypeVar("T")

#: Attributes of every private or secret key created here: in the token, behind the
#: PIN, never readable or wrappable, and not modifiable afterwards.
_NON_EXPORTABLE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
}


class Pkcs11Token:
    """One logged-in read-write session on the token ``token_label`` of ``module``.

    Thread-safe: every call into the token holds ``self._lock``. Close it with
    :meth:`close` (or use it as a context manager).
    """

    def __init__(self, session: Any, description: str) -> None:
        self._session = session
        self._description = description
        self._lock = threading.Lock()

    @classmethod
    def open(cls, module: Path, token_label: str, pin: str) -> Pkcs11Token:
        """Load ``module``, find the token by label and log in as its user with ``pin``."""
        where = f"token {token_label!r} of {module}"
        if not Path(module).is_file():
            raise HsmError(f"PKCS#11 module {module} does not exist")
        try:
            token = pkcs11.lib(str(module)).get_token(token_label=token_label)
            try:
                session = token.open(user_pin=pin, rw=True)
            except UserAlreadyLoggedIn:
                # PKCS#11 login state belongs to the process: another session of ours
                # on this token logged in already, and a new session shares that login.
                session = token.open(rw=True)
        except NoSuchToken:
            raise HsmError(f"no PKCS#11 token labelled {token_label!r} in {module}") from None
        except (PinIncorrect, PinInvalid, PinLenRange):
            raise HsmError(f"the PIN was refused by {where}") from None
        except (PKCS11Error, RuntimeError, OSError) as exc:
            raise HsmError(f"cannot open {where}: {type(exc).__name__}") from None
        return cls(session, where)

    def __enter__(self) -> Pkcs11Token:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Log out and close the session (keys from this token stop working)."""
        # Already closed, or the token went away: nothing left to release.
        with self._lock, contextlib.suppress(PKCS11Error):
            self._session.close()

    def call(self, operation: Callable[[], T], what: str) -> T:
        """Run ``operation`` under the session lock; token failures become ``HsmError``."""
        with self._lock:
            try:
                return operation()
            except PKCS11Error as exc:
                reason = type(exc).__name__
                raise HsmError(f"{what} failed in {self._description}: {reason}") from None

    def _find(self, object_class: ObjectClass, key_type: KeyType, label: str) -> Any | None:
        wanted = {Attribute.CLASS: object_class, Attribute.KEY_TYPE: key_type}
        found = list(self._session.get_objects({**wanted, Attribute.LABEL: label}))
        if len(found) > 1:
            raise HsmError(f"{self._description} holds {len(found)} keys labelled {label!r}")
        return found[0] if found else None

    def _existing_or_new(
        self, object_class: ObjectClass, key_type: KeyType, label: str, create: bool, make: Any
    ) -> Any:
        def lookup() -> Any:
            key = self._find(object_class, key_type, label)
            if key is None and create:
                key = make()
            return key

        key = self.call(lookup, f"finding key {label!r}")
        if key is None:
            raise KeyNotFoundError(f"{self._description} has no key labelled {label!r}")
        self.call(lambda: _require_non_exportable(key, label), f"checking key {label!r}")
        return key

    def ed25519_key(self, label: str, *, create: bool = False) -> Pkcs11Ed25519PrivateKey:
        """The Ed25519 key pair ``label``; generated in the token if absent and ``create``."""

        def make() -> Any:
            params = self._session.create_domain_parameters(
                KeyType.EC_EDWARDS,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)},
                local=True,
            )
            key_id = os.urandom(_ID_BYTES)
            _public, private = params.generate_keypair(
                store=True,
                label=label,
                id=key_id,
                public_template={Attribute.TOKEN: True, Attribute.VERIFY: True},
                private_template={**_NON_EXPORTABLE, Attribute.SIGN: True},
            )
            return private

        private = self._existing_or_new(
            ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS, label, create, make
        )
        public = self.call(
            lambda: self._find(ObjectClass.PUBLIC_KEY, KeyType.EC_EDWARDS, label),
            f"finding public key {label!r}",
        )
        if public is None:
            raise KeyNotFoundError(f"{self._description} has no public key labelled {label!r}")
        point = self.call(lambda: bytes(public[Attribute.EC_POINT]), f"reading {label!r}")
        return Pkcs11Ed25519PrivateKey(self, private, _raw_ed25519_point(point, label))

    def aes_kek(self, label: str, *, create: bool = False) -> Pkcs11Kek:
        """The AES-256 key-encryption key ``label``; generated if absent and ``create``."""

        def make() -> Any:
            return self._session.generate_key(
                KeyType.AES,
                256,
                label=label,
                id=os.urandom(_ID_BYTES),
                store=True,
                template={
                    **_NON_EXPORTABLE,
                    Attribute.WRAP: True,
                    Attribute.UNWRAP: True,
                    Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False,
                },
            )

        key = self._existing_or_new(ObjectClass.SECRET_KEY, KeyType.AES, label, create, make)
        return Pkcs11Kek(self, key, label)

    def import_aes_kek(self, label: str, key: bytes, key_id: str) -> Pkcs11Kek:
        """Store an existing 32-byte KEK (e.g. a :class:`~crypto.atrest.FileKek`'s) under
        ``label`` with ``CKA_ID`` = ``key_id`` (hex), so blobs it sealed keep opening.

        The imported copy is non-exportable; destroy the file afterwards.
        """
        if len(key) != _DATA_KEY_BYTES:
            raise HsmError(f"a KEK is {_DATA_KEY_BYTES} bytes")
        try:
            raw_id = bytes.fromhex(key_id)
        except ValueError:
            raise HsmError("a KEK id to import must be hexadecimal") from None

        def store() -> Any:
            if self._find(ObjectClass.SECRET_KEY, KeyType.AES, label) is not None:
                raise HsmError(f"{self._description} already has a key labelled {label!r}")
            return self._session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.LABEL: label,
                    Attribute.ID: raw_id,
                    Attribute.VALUE: key,
                    **_NON_EXPORTABLE,
                    Attribute.WRAP: True,
                    Attribute.UNWRAP: True,
                    Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False,
                }
            )

        return Pkcs11Kek(self, self.call(store, f"importing key {label!r}"), label)

    def hmac_key(self, label: str, *, create: bool = False) -> Pkcs11HmacKey:
        """The 256-bit HMAC-SHA256 secret ``label``; generated if absent and ``create``."""

        def make() -> Any:
            return self._session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                label=label,
                id=os.urandom(_ID_BYTES),
                store=True,
                template={**_NON_EXPORTABLE, Attribute.SIGN: True, Attribute.VERIFY: True},
            )

        key = self._existing_or_new(
            ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET, label, create, make
        )
        return Pkcs11HmacKey(self, key, label)

    def new_session_key(self, data_key: bytes) -> Any:
        """A temporary (session, extractable) AES object holding ``data_key``, to wrap it."""
        return self._session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: data_key,
                Attribute.TOKEN: False,
                Attribute.SENSITIVE: False,
                Attribute.EXTRACTABLE: True,
            }
        )


def _require_non_exportable(key: Any, label: str) -> None:
    if key[Attribute.SENSITIVE] is not True or key[Attribute.EXTRACTABLE] is not False:
        raise HsmError(f"key {label!r} is exportable (CKA_SENSITIVE/CKA_EXTRACTABLE); refused")


def _raw_ed25519_point(point: bytes, label: str) -> bytes:
    """The 32-byte public key from ``CKA_EC_POINT`` (DER OCTET STRING, or raw)."""
    if len(point) == 34 and point[:2] == b"\x04\x20":
        return point[2:]
    if len(point) == 32:
        return point
    raise HsmError(f"public key {label!r} is not a 32-byte Ed25519 point")


def _key_id(token: Pkcs11Token, key: Any, label: str) -> str:
    raw = token.call(lambda: bytes(key[Attribute.ID]), f"reading the id of {label!r}")
    if not 1 <= len(raw) <= 32:
        raise HsmError(f"key {label!r} has no usable CKA_ID (1..32 bytes)")
    return raw.hex()


class Pkcs11Ed25519PrivateKey(Ed25519PrivateKey):
    """An Ed25519 private key that signs inside the token and never leaves it."""

    def __init__(self, token: Pkcs11Token, key: Any, public_raw: bytes) -> None:
        self._token = token
        self._key = key
        self._public = Ed25519PublicKey.from_public_bytes(public_raw)

    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def sign(self, data: Any) -> bytes:
        message = bytes(data)
        signature = self._token.call(
            lambda: bytes(self._key.sign(message, mechanism=Mechanism.EDDSA)), "EdDSA signing"
        )
        if len(signature) != 64:
            raise HsmError("the token returned an Ed25519 signature of the wrong length")
        return signature

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        raise KeyExportRefusedError("an HSM-held Ed25519 key cannot be exported")

    def private_bytes_raw(self) -> bytes:
        raise KeyExportRefusedError("an HSM-held Ed25519 key cannot be exported")

    def __copy__(self) -> Pkcs11Ed25519PrivateKey:
        return self  # a handle: copies would share the same token key anyway

    def __deepcopy__(self, memo: dict[Any, Any]) -> Pkcs11Ed25519PrivateKey:
        return self

    def __repr__(self) -> str:
        return "Pkcs11Ed25519PrivateKey(<in token>)"


class _TokenKey:
    """A key object inside the token, its label (for messages) and its ``CKA_ID`` as
    ``key_id``; subclasses add the operations."""

    def __init__(self, token: Pkcs11Token, key: Any, label: str) -> None:
        self._token = token
        self._key = key
        self._label = label
        self._key_id = _key_id(token, key, label)

    @property
    def key_id(self) -> str:
        return self._key_id


class Pkcs11Kek(_TokenKey):
    """A :class:`crypto.atrest.KeyEncryptionKey` whose AES key stays in the token.

    ``key_id`` is the key's ``CKA_ID`` in hex (16 digits for keys generated here; the
    original id for an imported :class:`~crypto.atrest.FileKek`).
    """

    def wrap(self, data_key: bytes) -> bytes:
        """RFC 3394 wrap of a 32-byte data key, computed by the token."""
        if len(data_key) != _DATA_KEY_BYTES:
            raise HsmError(f"data keys are {_DATA_KEY_BYTES} bytes")

        def operation() -> bytes:
            temporary = self._token.new_session_key(data_key)
            try:
                return bytes(self._key.wrap_key(temporary, mechanism=Mechanism.AES_KEY_WRAP))
            finally:
                temporary.destroy()

        return self._token.call(operation, f"wrapping under {self._label!r}")

    def unwrap(self, wrapped: bytes) -> bytes:
        """Inverse of :meth:`wrap`; ``SealedDataError`` if it does not authenticate."""
        if len(wrapped) != _DATA_KEY_BYTES + 8:
            raise SealedDataError()

        def operation() -> bytes:
            temporary = self._key.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.AES,
                wrapped,
                mechanism=Mechanism.AES_KEY_WRAP,
                store=False,
                template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
            )
            try:
                return bytes(temporary[Attribute.VALUE])
            finally:
                temporary.destroy()

        try:
            return self._token.call(operation, f"unwrapping under {self._label!r}")
        except HsmError:
            raise SealedDataError() from None

    def __repr__(self) -> str:
        return f"Pkcs11Kek(key_id={self._key_id!r})"


class Pkcs11HmacKey(_TokenKey):
    """A :class:`crypto.keystore.MacKey` computing HMAC-SHA256 inside the token."""

    def tag(self, data: bytes) -> bytes:
        message = bytes(data)
        return self._token.call(
            lambda: bytes(self._key.sign(message, mechanism=Mechanism.SHA256_HMAC)),
            f"HMAC under {self._label!r}",
        )

    def verify(self, data: bytes, tag: bytes) -> None:
        if not hmac.compare_digest(self.tag(data), bytes(tag)):
            raise TagMismatchError()

    def __repr__(self) -> str:
        return f"Pkcs11HmacKey(key_id={self._key_id!r})"

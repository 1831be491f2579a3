"""Error root of the ``crypto`` package and its specific subclasses.

Every check in ``crypto`` raises one of these (never returns a boolean). Messages name
ids, sizes and versions only: never key material, templates, ciphertexts or plaintexts.
"""

from __future__ import annotations

from core.errors import VeilmatchError

__all__ = [
    "CryptoError",
    "GalleryError",
    "HsmError",
    "KeyExportRefusedError",
    "KeyMismatchError",
    "KeyNotFoundError",
    "LayoutError",
    "MalformedInputError",
    "OversizedInputError",
    "ParameterMismatchError",
    "RetiredKeyError",
    "SealedDataError",
    "TagMismatchError",
    "UnknownKeyError",
    "UnknownParameterSetError",
]


class CryptoError(VeilmatchError):
    """Root of every error raised on purpose by ``crypto``."""


class SealedDataError(CryptoError):
    """An at-rest blob could not be opened.

    Deliberately opaque (like ``cryptography.fernet.InvalidToken``): a wrong key, a wrong
    AAD, a truncated or tampered blob and an unknown version all look the same to callers.
    """

    def __init__(self) -> None:
        super().__init__("sealed data could not be opened")


class UnknownParameterSetError(CryptoError):
    """A parameter-set name or hash is not one this build knows."""


class MalformedInputError(CryptoError):
    """Bytes that claim to be a probe, result or key bundle do not parse."""


class OversizedInputError(MalformedInputError):
    """Input larger than the caller's limit; refused before any parsing."""


class ParameterMismatchError(CryptoError):
    """An object was made under a different parameter set than the one expected."""


class KeyMismatchError(CryptoError):
    """An object was made under a different gate key than the one it is used with."""


class UnknownKeyError(CryptoError):
    """A key id is not registered."""


class RetiredKeyError(CryptoError):
    """A key id is registered but retired: its ciphertexts are refused."""


class GalleryError(CryptoError):
    """Templates given to the gallery are unusable (shape, dtype, norm, emptiness)."""


class PreparedQueryError(CryptoError):
    """A prepared query does not fit the probe, gallery or key, or was used before."""


class LayoutError(CryptoError):
    """SEAL's serialized layout is not the one the fast path was written for.

    Raised loudly at start-up rather than computing on misread residues.
    """


class TagMismatchError(CryptoError):
    """A message-authentication tag does not verify (opaque: no detail on why)."""

    def __init__(self) -> None:
        super().__init__("tag does not verify")


class HsmError(CryptoError):
    """A PKCS#11 token could not be used: module, token, PIN or a token operation.

    Messages name the module path, token label and key label, never a PIN or key bytes.
    """


class KeyNotFoundError(HsmError):
    """The token holds no key with the expected label (and creating one was not asked)."""


class KeyExportRefusedError(HsmError):
    """Secret key material was asked for; keys in a token are never exportable."""

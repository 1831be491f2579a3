"""Ed25519 request signing between gates and the service (format ``vm-req-v1``).

A gate signs every request over its method, path, gate id, key id, timestamp, nonce
and the SHA-256 of its body; the service verifies the signature, then refuses stale
timestamps and (with its own nonce store) replays. Binding method and path stops a
signature made for one route being replayed on another; binding the body hash stops
a captured signature being reused with a different probe.

Signed message (UTF-8, fields joined by ``\\n``)::

    vm-req-v1
    <METHOD>
    <path>
    <gate id>
    <key id>
    <timestamp: integer Unix seconds>
    <nonce: 16..64 chars [A-Za-z0-9_-]>
    <sha256(body) as lowercase hex>

Headers carrying it: ``X-VM-Gate``, ``X-VM-Key-Id``, ``X-VM-Timestamp``, ``X-VM-Nonce``,
``X-VM-Signature`` (base64url Ed25519 signature, no padding).

Usage::

    key = SigningKey.generate()
    headers = RequestSigner(key, "gate-1", "k1").sign("POST", "/gate/v1/match", body)
    signed = verify_request(key.public_bytes(), "POST", "/gate/v1/match", body, headers,
                            now=time.time())
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crypto.errors import CryptoError

__all__ = [
    "FORMAT",
    "HEADER_GATE",
    "HEADER_KEY_ID",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_SKEW_S",
    "MalformedSignatureError",
    "RequestSigner",
    "SignatureInvalidError",
    "SignedRequest",
    "SigningError",
    "SigningKey",
    "StaleRequestError",
    "load_public_key",
    "verify_request",
]

FORMAT = "vm-req-v1"
HEADER_GATE = "X-VM-Gate"
HEADER_KEY_ID = "X-VM-Key-Id"
HEADER_TIMESTAMP = "X-VM-Timestamp"
HEADER_NONCE = "X-VM-Nonce"
HEADER_SIGNATURE = "X-VM-Signature"
#: Largest accepted difference, in seconds, between the request's timestamp and ``now``.
MAX_SKEW_S = 60
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_IDENT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PATH = re.compile(r"^/[\x21-\x7e]{0,1023}$")


class SigningError(CryptoError):
    """Root of request-signing failures."""

    code = "signature-invalid"


class MalformedSignatureError(SigningError):
    """A signing header is missing or not in the expected form."""

    code = "signature-malformed"


class SignatureInvalidError(SigningError):
    """The Ed25519 signature does not verify under the key on record."""

    code = "signature-invalid"


class StaleRequestError(SigningError):
    """The timestamp is further than ``MAX_SKEW_S`` from the service's clock."""

    code = "request-stale"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise binascii.Error("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SigningKey:
    """A gate's Ed25519 request-signing key (private). Never leaves the gate."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> SigningKey:
        """Load the 32-byte raw private key; raises :class:`MalformedSignatureError`."""
        if len(raw) != 32:
            raise MalformedSignatureError("Ed25519 private key must be 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The 32-byte raw private key (store it encrypted at rest)."""
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def public_bytes(self) -> bytes:
        """The 32-byte raw public key the service records at registration."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, message: bytes) -> bytes:
        """Raw Ed25519 signature over ``message``."""
        return self._key.sign(message)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    """Parse a 32-byte raw Ed25519 public key; raises :class:`MalformedSignatureError`."""
    if len(raw) != 32:
        raise MalformedSignatureError("Ed25519 public key must be 32 bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise MalformedSignatureError("not an Ed25519 public key") from None


def signed_message(
    method: str, path: str, gate_id: str, key_id: str, timestamp: int, nonce: str, body: bytes
) -> bytes:
    """The exact bytes that are signed (see the module docstring)."""
    fields = [
        FORMAT,
        method.upper(),
        path,
        gate_id,
        key_id,
        str(timestamp),
        nonce,
        hashlib.sha256(body).hexdigest(),
    ]
    return "\n".join(fields).encode("utf-8")


@dataclass(frozen=True)
class SignedRequest:
    """A request whose signature verified and whose timestamp was fresh.

    The caller must still check ``nonce`` against its replay store.
    """

    gate_id: str
    key_id: str
    timestamp: int
    nonce: str


class RequestSigner:
    """Gate side: produce the signing headers for one request."""

    def __init__(self, key: SigningKey, gate_id: str, key_id: str) -> None:
        if not _IDENT.match(gate_id) or not _IDENT.match(key_id):
            raise MalformedSignatureError("gate id and key id must match [A-Za-z0-9._:-]{1,128}")
        self.key = key
        self.gate_id = gate_id
        self.key_id = key_id

    def sign(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        now: float | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """Headers for ``method path`` with ``body``; ``now`` (Unix s) and ``nonce`` injectable."""
        timestamp = int(time.time() if now is None else now)
        nonce = nonce or _b64url(secrets.token_bytes(18))
        message = signed_message(method, path, self.gate_id, self.key_id, timestamp, nonce, body)
        return {
            HEADER_GATE: self.gate_id,
            HEADER_KEY_ID: self.key_id,
            HEADER_TIMESTAMP: str(timestamp),
            HEADER_NONCE: nonce,
            HEADER_SIGNATURE: _b64url(self.key.sign(message)),
        }


def parse_headers(headers: Mapping[str, str]) -> tuple[str, str, int, str, bytes]:
    """Extract (gate id, key id, timestamp, nonce, signature) or raise ``MalformedSignatureError``.

    ``headers`` lookups must be case-insensitive (Starlette's ``Headers`` is).
    """
    values: dict[str, str] = {}
    for name in (HEADER_GATE, HEADER_KEY_ID, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE):
        value = headers.get(name) or headers.get(name.lower())
        if not value:
            raise MalformedSignatureError(f"missing header {name}")
        values[name] = value
    gate_id, key_id = values[HEADER_GATE], values[HEADER_KEY_ID]
    if not _IDENT.match(gate_id) or not _IDENT.match(key_id):
        raise MalformedSignatureError("malformed gate or key id header")
    if not re.fullmatch(r"[0-9]{1,12}", values[HEADER_TIMESTAMP]):
        raise MalformedSignatureError(f"malformed {HEADER_TIMESTAMP}")
    nonce = values[HEADER_NONCE]
    if not _NONCE.match(nonce):
        raise MalformedSignatureError(f"malformed {HEADER_NONCE}")
    try:
        signature = _unb64url(values[HEADER_SIGNATURE])
    except (binascii.Error, ValueError):
        raise MalformedSignatureError(f"malformed {HEADER_SIGNATURE}") from None
    if len(signature) != 64:
        raise MalformedSignatureError("Ed25519 signatures are 64 bytes")
    return gate_id, key_id, int(values[HEADER_TIMESTAMP]), nonce, signature


def verify_request(
    public_key: bytes,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float,
    max_skew_s: int = MAX_SKEW_S,
) -> SignedRequest:
    """Verify a signed request. Steps, each raising a :class:`SigningError` subclass:

    1. Parse the five headers (``MalformedSignatureError``).
    2. Verify the Ed25519 signature over :func:`signed_message` (``SignatureInvalidError``).
    3. Check ``|timestamp - now| <= max_skew_s`` (``StaleRequestError``), after the
       signature so an attacker cannot probe the clock with unsigned requests.
    """
    gate_id, key_id, timestamp, nonce, signature = parse_headers(headers)
    key = load_public_key(public_key)
    if not _PATH.match(path):
        raise MalformedSignatureError("malformed path")
    message = signed_message(method, path, gate_id, key_id, timestamp, nonce, body)
    try:
        key.verify(signature, message)
    except InvalidSignature:
        raise SignatureInvalidError("request signature does not verify") from None
    if abs(timestamp - now) > max_skew_s:
        raise StaleRequestError(f"timestamp outside ±{max_skew_s} s of the service clock")
    return SignedRequest(gate_id, key_id, timestamp, nonce)

"""Local staff accounts: argon2id password hashes and short-lived bearer tokens.

Tokens are ``vmt1.<payload>.<mac>``: base64url JSON ``{"sub", "role", "exp", "jti"}``
authenticated with HMAC-SHA256 under the deployment's token key: a
:class:`crypto.keystore.MacKey`, from ``Settings.token_secret`` (a random per-process
secret when unset, so tokens die with the process) or held in an HSM
(:mod:`service.keys`). They last
``TOKEN_TTL_S`` seconds. Authentication of an unknown user still verifies against a
dummy hash, so timing does not reveal which usernames exist.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection

from crypto.keystore import MIN_SECRET_BYTES, MacKey, SecretMacKey
from service.errors import AuthenticationError, ConflictError, MalformedRequestError
from service.tables import accounts

__all__ = [
    "ROLES",
    "TOKEN_TTL_S",
    "Principal",
    "TokenIssuer",
    "authenticate",
    "create_account",
    "ensure_bootstrap_admin",
]

#: Staff roles. ``gate`` is not a staff role: gates authenticate with mTLS + signatures.
ROLES: Final = ("officer", "supervisor", "oversight", "legal", "admin")
TOKEN_TTL_S: Final = 900
_TOKEN_PREFIX: Final = "vmt1"  # noqa: S105 - a format tag, not a secret
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("veilmatch-dummy-password-for-constant-time")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a staff account (``kind='staff'``) or a gate (``kind='gate'``)."""

    subject: str
    role: str
    kind: str = "staff"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise binascii.Error("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    """Issues and checks bearer tokens under one MAC key: a :class:`MacKey` (e.g. in an
    HSM) or a secret of at least 32 bytes; a random secret when neither is given."""

    def __init__(self, secret: bytes | MacKey | None = None, ttl_s: int = TOKEN_TTL_S) -> None:
        if isinstance(secret, bytes | bytearray) and len(secret) < MIN_SECRET_BYTES:
            raise ValueError("token secret must be at least 32 bytes")
        if isinstance(secret, MacKey):
            self._key: MacKey = secret
        else:
            self._key = SecretMacKey(bytes(secret) if secret else secrets.token_bytes(32))
        self.ttl_s = ttl_s

    def _mac(self, payload: str) -> str:
        return _b64(self._key.tag(f"{_TOKEN_PREFIX}.{payload}".encode()))

    def issue(self, principal: Principal, now: dt.datetime) -> tuple[str, dt.datetime]:
        """A token for ``principal`` and its expiry time."""
        expires = now + dt.timedelta(seconds=self.ttl_s)
        body = {
            "sub": principal.subject,
            "role": principal.role,
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        return f"{_TOKEN_PREFIX}.{payload}.{self._mac(payload)}", expires

    def verify(self, token: str, now: dt.datetime) -> Principal:
        """The principal named by a valid, unexpired token; else ``AuthenticationError``."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _TOKEN_PREFIX:
            raise AuthenticationError("malformed bearer token", code="token-invalid")
        payload, mac = parts[1], parts[2]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise AuthenticationError("bearer token does not verify", code="token-invalid")
        try:
            body = json.loads(_unb64(payload))
            subject, role, exp = str(body["sub"]), str(body["role"]), int(body["exp"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            raise AuthenticationError("malformed bearer token", code="token-invalid") from None
        if now.timestamp() >= exp:
            raise AuthenticationError("bearer token expired", code="token-expired")
        return Principal(subject, role)


def create_account(
    conn: Connection,
    username: str,
    password: str,
    role: str,
    *,
    created_by: str | None,
    now: dt.datetime,
) -> str:
    """Create an active account; returns its id. Password: 12..256 characters."""
    if not _USERNAME.match(username):
        raise MalformedRequestError("username must match [a-z0-9][a-z0-9._-]{2,63}")
    if role not in ROLES:
        raise MalformedRequestError(f"role must be one of {', '.join(ROLES)}")
    if not 12 <= len(password) <= 256:
        raise MalformedRequestError("password must be 12 to 256 characters")
    exists = conn.execute(sa.select(accounts.c.id).where(accounts.c.username == username))
    if exists.first() is not None:
        raise ConflictError("username already exists", code="account-exists")
    account_id = str(uuid.uuid4())
    conn.execute(
        accounts.insert().values(
            id=account_id,
            username=username,
            role=role,
            password_hash=_HASHER.hash(password),
            active=True,
            created_at=now,
            created_by=created_by,
        )
    )
    return account_id


def authenticate(conn: Connection, username: str, password: str) -> Principal:
    """Check a password; one opaque ``AuthenticationError`` for every failure."""
    row = conn.execute(
        sa.select(accounts.c.password_hash, accounts.c.role, accounts.c.active).where(
            accounts.c.username == username
        )
    ).first()
    stored = row.password_hash if row is not None else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password)
        ok = row is not None and bool(row.active)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or row is None:
        raise AuthenticationError("invalid username or password", code="login-failed")
    return Principal(username, str(row.role))


def ensure_bootstrap_admin(conn: Connection, password: str | None, now: dt.datetime) -> bool:
    """Create account ``admin`` with ``password`` if no admin exists yet; True if created."""
    if not password:
        return False
    existing = conn.execute(sa.select(accounts.c.id).where(accounts.c.role == "admin")).first()
    if existing is not None:
        return False
    create_account(conn, "admin", password, "admin", created_by=None, now=now)
    return True

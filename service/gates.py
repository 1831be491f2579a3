"""Gate registry: registration, approval, revocation, key rotation, request authentication.

A gate is known by the common name of its client certificate. Registration records the
certificate's SHA-256, the Ed25519 request-signing key and the HE public key bundle,
and leaves the gate ``pending`` until an admin approves it. Every later request is
authenticated by :func:`authenticate_request`, whose numbered steps each raise a
:class:`GateRefusedError` with a precise code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from crypto.signing import (
    MAX_SKEW_S,
    load_public_key,
    parse_headers,
    verify_request,
)
from service.errors import ConflictError, GateRefusedError, MalformedRequestError, NotFoundError
from service.tables import gate_keys, gates, request_nonces, utc
from service.tls import PeerCertificate

__all__ = [
    "GateIdentity",
    "approve_gate",
    "authenticate_request",
    "check_request",
    "key_id_for",
    "register_gate",
    "revoke_gate",
    "rotate_key",
    "rotation_message",
    "spend_nonce",
]


def key_id_for(signing_public_key: bytes) -> str:
    """The id of a gate signing key: ``k-`` + 16 hex digits of its SHA-256."""
    return "k-" + hashlib.sha256(signing_public_key).hexdigest()[:16]


def rotation_message(gate_id: str, new_key_id: str, he_bundle: bytes) -> bytes:
    """What the *new* key signs to prove possession during a rotation."""
    digest = hashlib.sha256(he_bundle).hexdigest()
    return f"vm-rotate-v1\n{gate_id}\n{new_key_id}\n{digest}".encode()


@dataclass(frozen=True)
class GateIdentity:
    """An authenticated gate request: who, under which keys."""

    gate_id: str
    key_id: str
    he_key_id: str
    nonce: str
    site: str = ""
    gate_status: str = "active"
    key_created_at: dt.datetime | None = None


def register_gate(
    conn: Connection,
    cert: PeerCertificate,
    gate_id: str,
    site: str,
    signing_public_key: bytes,
    he_public_bundle: bytes,
    he_key_id: str,
    *,
    now: dt.datetime,
    key_ttl: dt.timedelta,
) -> str:
    """Record a new ``pending`` gate and its first key; returns the key id.

    The caller has already verified the request signature under ``signing_public_key``
    (proof of possession) and that ``cert``'s common name is ``gate_id``.
    """
    load_public_key(signing_public_key)
    row = conn.execute(sa.select(gates.c.status).where(gates.c.id == gate_id)).first()
    if row is not None:
        raise ConflictError(f"gate is already registered ({row.status})", code="gate-exists")
    key_id = key_id_for(signing_public_key)
    conn.execute(
        gates.insert().values(
            id=gate_id, site=site, status="pending", cert_sha256=cert.sha256, registered_at=now
        )
    )
    conn.execute(
        gate_keys.insert().values(
            id=key_id,
            gate_id=gate_id,
            signing_public_key=signing_public_key,
            he_public_bundle=he_public_bundle,
            he_key_id=he_key_id,
            status="active",
            created_at=now,
            expires_at=now + key_ttl,
        )
    )
    return key_id


def _gate_status(conn: Connection, gate_id: str) -> str:
    row = conn.execute(sa.select(gates.c.status).where(gates.c.id == gate_id)).first()
    if row is None:
        raise NotFoundError("no such gate")
    return str(row.status)


def approve_gate(conn: Connection, gate_id: str, approver: str, now: dt.datetime) -> None:
    """pending → active."""
    if _gate_status(conn, gate_id) != "pending":
        raise ConflictError("only a pending gate can be approved", code="gate-not-pending")
    conn.execute(
        gates.update()
        .where(gates.c.id == gate_id)
        .values(status="active", approved_by=approver, approved_at=now)
    )


def revoke_gate(conn: Connection, gate_id: str, now: dt.datetime) -> None:
    """Any state → revoked, retiring every key. Revocation is final."""
    if _gate_status(conn, gate_id) == "revoked":
        raise ConflictError("gate already revoked", code="gate-revoked")
    conn.execute(
        gates.update().where(gates.c.id == gate_id).values(status="revoked", revoked_at=now)
    )
    conn.execute(
        gate_keys.update()
        .where(gate_keys.c.gate_id == gate_id, gate_keys.c.status == "active")
        .values(status="retired", retired_at=now)
    )


def rotate_key(
    conn: Connection,
    identity: GateIdentity,
    signing_public_key: bytes,
    he_public_bundle: bytes,
    he_key_id: str,
    new_key_signature: bytes,
    *,
    now: dt.datetime,
    key_ttl: dt.timedelta,
) -> str:
    """Replace the gate's active key; the old one is retired at once. Returns the new key id.

    The request is signed by the old key (``identity``); ``new_key_signature`` proves
    possession of the new one over :func:`rotation_message`.
    """
    new_key = load_public_key(signing_public_key)
    new_key_id = key_id_for(signing_public_key)
    try:
        new_key.verify(
            new_key_signature, rotation_message(identity.gate_id, new_key_id, he_public_bundle)
        )
    except Exception:
        raise GateRefusedError(
            "new key's proof of possession does not verify", code="signature-invalid"
        ) from None
    exists = conn.execute(sa.select(gate_keys.c.id).where(gate_keys.c.id == new_key_id)).first()
    if exists is not None:
        raise ConflictError("this signing key was used before", code="key-reused")
    conn.execute(
        gate_keys.update()
        .where(gate_keys.c.gate_id == identity.gate_id, gate_keys.c.status == "active")
        .values(status="retired", retired_at=now)
    )
    conn.execute(
        gate_keys.insert().values(
            id=new_key_id,
            gate_id=identity.gate_id,
            signing_public_key=signing_public_key,
            he_public_bundle=he_public_bundle,
            he_key_id=he_key_id,
            status="active",
            created_at=now,
            expires_at=now + key_ttl,
        )
    )
    return new_key_id


def claimed_gate(headers: Mapping[str, str]) -> str | None:
    """The gate id a request claims, for audit records of refusals (may be a lie)."""
    try:
        return parse_headers(headers)[0]
    except Exception:
        return None


def _registered_gate(
    conn: Connection, gate_id: str, cert: PeerCertificate, *, allow_pending: bool
) -> sa.Row[Any]:
    """Step 4 of :func:`check_request`: the gate row, registered with this certificate."""
    gate = conn.execute(sa.select(gates).where(gates.c.id == gate_id)).first()
    if gate is None:
        raise GateRefusedError("gate is not registered", code="gate-unknown")
    if gate.cert_sha256 != cert.sha256:
        raise GateRefusedError(
            "certificate is not the one registered for this gate", code="certificate-mismatch"
        )
    if gate.status == "revoked":
        raise GateRefusedError("gate is revoked", code="gate-revoked")
    if gate.status == "pending" and not allow_pending:
        raise GateRefusedError("gate is awaiting approval", code="gate-pending")
    return gate


def _usable_key(conn: Connection, gate_id: str, key_id: str, *, now: dt.datetime) -> sa.Row[Any]:
    """Step 5 of :func:`check_request`: the gate's active, unexpired signing key row."""
    columns = [c for c in gate_keys.c if c.name != "he_public_bundle"]
    key = conn.execute(
        sa.select(*columns).where(gate_keys.c.id == key_id, gate_keys.c.gate_id == gate_id)
    ).first()
    if key is None:
        raise GateRefusedError("signing key is not registered", code="key-unknown")
    if key.status != "active":
        raise GateRefusedError("signing key is retired", code="key-retired")
    if utc(key.expires_at) <= now:
        raise GateRefusedError("signing key has expired", code="key-expired")
    return key


def check_request(
    conn: Connection,
    cert: PeerCertificate | None,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: dt.datetime,
    allow_pending: bool = False,
) -> GateIdentity:
    """Authenticate a signed gate request without writing. Steps, each raising
    ``GateRefusedError``:

    1. A verified client certificate is present (``certificate-required``).
    2. The signing headers parse (``signature-malformed``).
    3. The certificate's CN equals the claimed gate id (``certificate-mismatch``).
    4. The gate is registered (``gate-unknown``) with this certificate
       (``certificate-mismatch``), not revoked (``gate-revoked``) and, unless
       ``allow_pending``, approved (``gate-pending``).
    5. The key id belongs to the gate (``key-unknown``), is not retired
       (``key-retired``) nor expired (``key-expired``).
    6. The Ed25519 signature verifies (``signature-invalid``) and the timestamp is
       within ``MAX_SKEW_S`` (``request-stale``).
    7. The nonce was not seen before from this gate (``request-replayed``).

    The nonce is *not* spent here: the caller spends it with :func:`spend_nonce`, in
    the transaction that commits the request's work, or on its own when the work
    fails, so a nonce is spent exactly when the request was answered. The (large) HE
    key bundle is not read here: scoring asks for it by key id (:func:`load_he_bundle`).
    """
    if cert is None:
        raise GateRefusedError("a client certificate is required", code="certificate-required")
    try:
        gate_id, key_id, _ts, _nonce, _sig = parse_headers(headers)
    except Exception as exc:
        raise GateRefusedError(str(exc), code="signature-malformed") from None
    if cert.common_name != gate_id:
        raise GateRefusedError(
            "certificate does not belong to the claimed gate", code="certificate-mismatch"
        )
    gate = _registered_gate(conn, gate_id, cert, allow_pending=allow_pending)
    key = _usable_key(conn, gate_id, key_id, now=now)
    signed = verify_request(
        bytes(key.signing_public_key), method, path, body, headers, now=now.timestamp()
    )
    seen = conn.execute(
        sa.select(request_nonces.c.nonce).where(
            request_nonces.c.gate_id == gate_id, request_nonces.c.nonce == signed.nonce
        )
    ).first()
    if seen is not None:
        raise GateRefusedError("request was already seen", code="request-replayed")
    return GateIdentity(
        gate_id,
        key_id,
        str(key.he_key_id),
        signed.nonce,
        site=str(gate.site),
        gate_status=str(gate.status),
        key_created_at=utc(key.created_at),
    )


class _BundleCache:
    """HE public bundles by signing-key id, most recently used kept (thread-safe).

    A gate key row's bundle never changes (rotation inserts a new row; only the status
    of old rows is updated), so caching by row id is exact. ckks-v2 bundles are ~4 MB.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_id: str) -> bytes | None:
        with self._lock:
            found = self._items.get(key_id)
            if found is not None:
                self._items.move_to_end(key_id)
            return found

    def put(self, key_id: str, bundle: bytes) -> None:
        with self._lock:
            self._items[key_id] = bundle
            self._items.move_to_end(key_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


# Scoring workers keep the keys they use; this only serves their first use (and a
# restarted worker's) without a database read per worker.
_BUNDLES = _BundleCache(size=16)


def load_he_bundle(conn: Connection, key_id: str) -> bytes:
    """The HE public bundle of gate key ``key_id`` (cached; read from ``conn`` on a miss;
    empty if there is no such key)."""
    cached = _BUNDLES.get(key_id)
    if cached is not None:
        return cached
    row = conn.execute(
        sa.select(gate_keys.c.he_public_bundle).where(gate_keys.c.id == key_id)
    ).first()
    bundle = b"" if row is None else bytes(row.he_public_bundle)
    if bundle:
        _BUNDLES.put(key_id, bundle)
    return bundle


def spend_nonce(conn: Connection, identity: GateIdentity, now: dt.datetime) -> None:
    """Record the request's nonce (``request-replayed`` if a concurrent copy won) and
    the gate's last contact, inside ``conn``'s transaction."""
    try:
        conn.execute(
            request_nonces.insert().values(
                gate_id=identity.gate_id, nonce=identity.nonce, seen_at=now
            )
        )
    except IntegrityError:
        raise GateRefusedError("request was already seen", code="request-replayed") from None
    conn.execute(gates.update().where(gates.c.id == identity.gate_id).values(last_seen_at=now))


def authenticate_request(
    conn: Connection,
    cert: PeerCertificate | None,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: dt.datetime,
    allow_pending: bool = False,
) -> GateIdentity:
    """:func:`check_request` then :func:`spend_nonce` in ``conn``'s transaction.

    Callers commit it before doing the work, so the nonce stays spent even when the
    work fails.
    """
    identity = check_request(
        conn, cert, method, path, body, headers, now=now, allow_pending=allow_pending
    )
    spend_nonce(conn, identity, now)
    return identity


def verify_registration(
    cert: PeerCertificate | None,
    gate_id: str,
    signing_public_key: bytes,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: dt.datetime,
) -> None:
    """Check a registration request: cert CN = gate id, signed by the enclosed key."""
    if cert is None:
        raise GateRefusedError("a client certificate is required", code="certificate-required")
    if cert.common_name != gate_id:
        raise GateRefusedError(
            "certificate does not belong to the claimed gate", code="certificate-mismatch"
        )
    signed = verify_request(signing_public_key, method, path, body, headers, now=now.timestamp())
    if signed.gate_id != gate_id or signed.key_id != key_id_for(signing_public_key):
        raise MalformedRequestError("signing headers do not match the registration body")


def purge_nonces(conn: Connection, now: dt.datetime) -> int:
    """Forget nonces old enough that their timestamps are stale anyway."""
    cutoff = now - dt.timedelta(seconds=4 * MAX_SKEW_S)
    result = conn.execute(request_nonces.delete().where(request_nonces.c.seen_at < cutoff))
    return int(result.rowcount or 0)

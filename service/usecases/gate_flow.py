"""A gate's own lifecycle: registration, key rotation, heartbeat.

Registration is the one gate request not authenticated by a registered key: it proves
possession of the key it encloses, and its certificate's common name must be the gate
id it asks for. Rotation and heartbeat come through :func:`service.gate_auth.gate_auth`
(nonce spent before the work). Each state change commits with its audit leaf, which
carries the access decision that allowed it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool

from service import gates as gate_registry
from service import queries
from service.accounts import Principal
from service.audit_events import gate_key_rotated, gate_registration_requested
from service.context import ServiceContext
from service.errors import GateRefusedError
from service.gate_auth import GateRequest
from service.schemas import GateRegister, KeyRotate, b64decode_field
from service.tls import PeerCertificate
from service.usecases.common import parse_body

__all__ = [
    "BUNDLE_MAX",
    "Registration",
    "SignedRequest",
    "VerifiedRegistration",
    "heartbeat",
    "parse_registration",
    "register",
    "rotate",
    "verify_registration",
]

#: Largest HE public key bundle accepted (bytes): Galois keys dominate.
BUNDLE_MAX = 36 * 1024 * 1024


@dataclass(frozen=True)
class Registration:
    """A parsed registration request, not yet verified."""

    request: GateRegister
    signing_key: bytes
    bundle: bytes


def parse_registration(body: bytes) -> Registration:
    """The registration body with its keys decoded (typed errors name the field)."""
    req = parse_body(GateRegister, body)
    signing_key = b64decode_field(req.signing_public_key, "signing_public_key", 64)
    bundle = b64decode_field(req.he_public_bundle, "he_public_bundle", BUNDLE_MAX)
    return Registration(req, signing_key, bundle)


@dataclass(frozen=True)
class SignedRequest:
    """What a request signature covers, and the client certificate it came with."""

    cert: PeerCertificate | None
    method: str
    path: str
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class VerifiedRegistration:
    """A registration whose certificate and proof of possession checked out at ``now``."""

    registration: Registration
    cert: PeerCertificate
    now: dt.datetime


def verify_registration(
    ctx: ServiceContext, reg: Registration, signed: SignedRequest
) -> VerifiedRegistration:
    """The certificate's common name is the gate id asked for, and the request is signed
    by the enclosed key (``GateRefusedError`` otherwise)."""
    now, cert = ctx.now(), signed.cert
    gate_registry.verify_registration(
        cert,
        reg.request.gate_id,
        reg.signing_key,
        signed.method,
        signed.path,
        signed.body,
        signed.headers,
        now=now,
    )
    if cert is None:  # verify_registration refuses a missing certificate; keep mypy sure
        raise GateRefusedError("a client certificate is required", code="certificate-required")
    return VerifiedRegistration(reg, cert, now)


async def register(
    ctx: ServiceContext, verified: VerifiedRegistration, principal: Principal
) -> str:
    """Authorise ``gate.register`` for ``principal`` (the verified gate), record the gate
    as ``pending`` with its first key; returns the key id."""
    reg, cert, now = verified.registration, verified.cert, verified.now
    req = reg.request
    decision = ctx.authorize(principal, "gate.register", {"gate_id": req.gate_id})
    he_key_id = await run_in_threadpool(ctx.he.public_bundle_key_id, reg.bundle)
    key_ttl = dt.timedelta(days=ctx.settings.gate_key_ttl_days)

    def run() -> str:
        with ctx.transaction() as conn:
            key_id = gate_registry.register_gate(
                conn,
                cert,
                req.gate_id,
                req.site,
                reg.signing_key,
                reg.bundle,
                he_key_id,
                now=now,
                key_ttl=key_ttl,
            )
            ctx.record(
                conn,
                gate_registration_requested(req.gate_id, req.site, key_id, cert.sha256, decision),
            )
            return key_id

    return await run_in_threadpool(run)


async def rotate(ctx: ServiceContext, gate: GateRequest) -> str:
    """Replace the gate's signing and HE keys (the new key proves possession); returns
    the new key id."""
    req = parse_body(KeyRotate, gate.body)
    signing_key = b64decode_field(req.signing_public_key, "signing_public_key", 64)
    bundle = b64decode_field(req.he_public_bundle, "he_public_bundle", BUNDLE_MAX)
    proof = b64decode_field(req.new_key_signature, "new_key_signature", 64)
    he_key_id = await run_in_threadpool(ctx.he.public_bundle_key_id, bundle)
    now, identity = ctx.now(), gate.identity
    key_ttl = dt.timedelta(days=ctx.settings.gate_key_ttl_days)

    def run() -> str:
        with ctx.transaction() as conn:
            new_id = gate_registry.rotate_key(
                conn, identity, signing_key, bundle, he_key_id, proof, now=now, key_ttl=key_ttl
            )
            ctx.record(conn, gate_key_rotated(identity, new_id, gate.decision))
            return new_id

    return await run_in_threadpool(run)


async def heartbeat(ctx: ServiceContext, gate: GateRequest) -> dict[str, Any]:
    """The gate's key expiry and the service time, so the gate rotates in time."""

    def expiry() -> dt.datetime:
        with ctx.reader() as conn:
            return queries.key_expiry(conn, gate.identity.key_id)

    expires = await run_in_threadpool(expiry)
    return {
        "gate_id": gate.identity.gate_id,
        "key_id": gate.identity.key_id,
        "key_expires_at": expires.isoformat(),
        "time": ctx.now().isoformat(),
    }

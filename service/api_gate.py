"""Gate API (mutual TLS + signed requests): register, rotate keys, match, reveal, heartbeat.

Thin handlers: every signed route authenticates and authorises through the one
dependency :func:`service.gate_auth.gate_auth`, whose nonce mode says when the request's
nonce is spent; the work is a use case in :mod:`service.usecases`. Bodies are parsed
after authentication, so they are documented in the OpenAPI schema through
``openapi_extra``.

Match protocol (see ``docs/api.md``): ``match`` scores the encrypted probe in a worker
process and returns the masked result; the secret mapping stays in memory for
``pending_query_ttl_s``. ``reveal`` turns the gate's positive positions into watchlist
entries, asks ``veilmatch.alert``, and answers ``proceed`` or ``secondary``. Each of
the two commits its nonce, records and audit leaves in one transaction before it
answers; ``match`` speaks JSON or the binary frames of :mod:`protocol.wire`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from protocol import wire
from service.deps import CtxDep
from service.gate_auth import GateRequest, NonceMode, gate_auth, gate_principal
from service.schemas import (
    GateRegister,
    KeyRotate,
    MatchRequest,
    MatchResponse,
    RevealRequest,
    RevealResponse,
)
from service.tls import peer_certificate
from service.usecases import gate_flow, match_flow, reveal_flow

__all__ = ["BODY_LIMITS", "router"]

router = APIRouter(prefix="/gate/v1", tags=["gate"])

#: Per-route body limits (bytes). Key bundles carry Galois keys; probes are one ciphertext.
BODY_LIMITS = {
    "/gate/v1/register": 48 * 1024 * 1024,
    "/gate/v1/keys/rotate": 48 * 1024 * 1024,
    "/gate/v1/match": 8 * 1024 * 1024,
    "/gate/v1/reveal": 64 * 1024,
    "/gate/v1/heartbeat": 4 * 1024,
}

RotateGate = Annotated[GateRequest, gate_auth("gate.rotate_key", NonceMode.BEFORE_WORK)]
HeartbeatGate = Annotated[GateRequest, gate_auth("gate.heartbeat", NonceMode.BEFORE_WORK)]
MatchGate = Annotated[GateRequest, gate_auth("gate.match", NonceMode.WITH_WORK)]
RevealGate = Annotated[GateRequest, gate_auth("gate.reveal", NonceMode.WITH_WORK)]


def _doc(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


_MATCH_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": MatchRequest.model_json_schema()},
            wire.MATCH_REQUEST_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": {
            "description": "The masked result, in the wire form of the request.",
            "content": {
                "application/json": {"schema": MatchResponse.model_json_schema()},
                wire.MATCH_RESPONSE_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
}


@router.post("/register", status_code=202, openapi_extra=_doc(GateRegister))
async def register(request: Request, ctx: CtxDep) -> dict[str, str]:
    """Register this gate (pending until an admin approves). Signed by the enclosed key."""
    body = await request.body()
    reg = gate_flow.parse_registration(body)
    request.state.action = "gate.register"
    signed = gate_flow.SignedRequest(
        peer_certificate(request.scope), request.method, request.url.path, body, request.headers
    )
    verified = gate_flow.verify_registration(ctx, reg, signed)
    # Only a verified certificate names the principal: a refusal before this point is
    # recorded against the certificate presented, not the gate id the body claims.
    principal = gate_principal(request, reg.request.gate_id, "gate.register")
    key_id = await gate_flow.register(ctx, verified, principal)
    return {"gate_id": reg.request.gate_id, "key_id": key_id, "status": "pending"}


@router.post("/keys/rotate", openapi_extra=_doc(KeyRotate))
async def rotate(ctx: CtxDep, gate: RotateGate) -> dict[str, str]:
    """Replace this gate's signing and HE keys; the request is signed by the current key."""
    new_id = await gate_flow.rotate(ctx, gate)
    return {"gate_id": gate.identity.gate_id, "key_id": new_id}


@router.post("/heartbeat")
async def heartbeat(ctx: CtxDep, gate: HeartbeatGate) -> dict[str, Any]:
    """Liveness from the gate; answers with the key's expiry so the gate rotates in time."""
    return await gate_flow.heartbeat(ctx, gate)


@router.post("/match", response_model=MatchResponse, openapi_extra=_MATCH_DOC)
async def match(ctx: CtxDep, gate: MatchGate) -> Response:
    """Score an encrypted probe against the watchlist; returns the masked result.

    Two wire forms: JSON with a base64 probe, or a binary frame
    (``application/vnd.veilmatch.match-request``, see ``protocol.wire``) answered with a
    binary frame.
    """
    reply = await match_flow.match(ctx, gate)
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type)


@router.post("/reveal", response_model=RevealResponse, openapi_extra=_doc(RevealRequest))
async def reveal(ctx: CtxDep, gate: RevealGate) -> Response:
    """Turn the gate's positive positions into an outcome: ``proceed`` or ``secondary``."""
    done = await reveal_flow.reveal(ctx, gate)
    if done.outcome is not None:
        ctx.metrics.decisions.labels(done.outcome).inc()
    if done.alert is not None:
        ctx.bus.publish(done.alert.announcement())
    reply = done.reply
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type)

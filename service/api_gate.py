"""Gate API (mutual TLS + signed requests): register, rotate keys, match, reveal, heartbeat.

Each handler reads the raw body, authenticates it (certificate, signature, key state,
unseen nonce), authorises the action with ``veilmatch.access`` and only then parses
the body. Bodies are documented in the OpenAPI schema through ``openapi_extra``
because they are parsed after authentication.

Match protocol (see ``docs/api.md``): ``match`` scores the encrypted probe in a worker
process and returns the masked result; the secret mapping stays in memory for
``pending_query_ttl_s``. ``reveal`` turns the gate's positive positions into watchlist
entries, asks ``veilmatch.alert``, and answers ``proceed`` or ``secondary``. Each of
the two commits its nonce, records and audit leaves in one transaction before it
answers (see the comment above ``match``); ``match`` speaks JSON or the binary frames
of :mod:`service.wire`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError

from service import gates as gate_registry
from service import watchlist, wire
from service.accounts import Principal
from service.alerts import create_alert
from service.context import ServiceContext
from service.errors import (
    ConflictError,
    ForbiddenError,
    GateRefusedError,
    MalformedRequestError,
    QueryExpiredError,
    RateLimitedError,
)
from service.gates import GateIdentity, load_he_bundle
from service.ports import ServiceEvent
from service.schemas import (
    GateRegister,
    KeyRotate,
    MatchMeta,
    MatchRequest,
    MatchResponse,
    MatchResultMeta,
    RevealRequest,
    RevealResponse,
    b64decode_field,
)
from service.scoring.pending import PendingQuery
from service.tables import (
    crossings,
    gate_keys,
    idempotency_keys,
    pending_queries,
    probe_records,
    utc,
)
from service.tls import peer_certificate

__all__ = ["BODY_LIMITS", "router"]

log = logging.getLogger("veilmatch.gate_api")
router = APIRouter(prefix="/gate/v1", tags=["gate"])
Model = TypeVar("Model", bound=BaseModel)

#: Per-route body limits (bytes). Key bundles carry Galois keys; probes are one ciphertext.
BODY_LIMITS = {
    "/gate/v1/register": 48 * 1024 * 1024,
    "/gate/v1/keys/rotate": 48 * 1024 * 1024,
    "/gate/v1/match": 8 * 1024 * 1024,
    "/gate/v1/reveal": 64 * 1024,
    "/gate/v1/heartbeat": 4 * 1024,
}
_PROBE_MAX = 6 * 1024 * 1024
_BUNDLE_MAX = 36 * 1024 * 1024


def _doc(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _parse(model: type[Model], body: bytes) -> Model:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        where = sorted({".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()})
        raise MalformedRequestError("invalid body fields: " + ", ".join(where[:10])) from None


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


async def _authenticate(
    request: Request, action: str
) -> tuple[ServiceContext, GateIdentity, bytes]:
    """Authenticate (own committed transaction), then authorise ``action``."""
    ctx = _ctx(request)
    body = await request.body()
    cert = peer_certificate(request.scope)
    now = ctx.now()

    def run() -> GateIdentity:
        with ctx.transaction() as conn:
            return gate_registry.authenticate_request(
                conn, cert, request.method, request.url.path, body, request.headers, now=now
            )

    identity = await run_in_threadpool(run)
    principal = Principal(identity.gate_id, "gate", kind="gate")
    request.state.principal = principal
    request.state.action = action
    ctx.authorize(principal, action, {"gate_id": identity.gate_id})
    return ctx, identity, body


def _idempotent(
    ctx: ServiceContext,
    conn: sa.Connection,
    gate_id: str,
    request_id: str,
    route: str,
    digest: str,
) -> Response | None:
    """A stored response for a retried request id, or None. Another body: 409.

    ``digest`` is the SHA-256 (hex) of the request body.
    """
    row = conn.execute(
        sa.select(idempotency_keys).where(
            idempotency_keys.c.gate_id == gate_id,
            idempotency_keys.c.request_id == request_id,
        )
    ).first()
    if row is None:
        return None
    if row.route != route or row.body_sha256 != digest:
        raise ConflictError("request id reused with a different body", code="request-id-reused")
    stored = bytes(row.response)
    media_type = "application/json"
    if route == "match":
        # Masked results are large and only useful while their mapping lives: the
        # database keeps the query id, memory keeps the response until the TTL.
        query_id = json.loads(stored)["query_id"]
        pending = ctx.pending.response_for(query_id, gate_id, ctx.now())
        if pending is None:
            raise QueryExpiredError("the retried query expired; send a new request")
        stored, media_type = pending
    return Response(stored, status_code=int(row.status_code), media_type=media_type)


def _store_idempotent(
    conn: sa.Connection,
    gate_id: str,
    request_id: str,
    route: str,
    digest: str,
    response: bytes,
    now: dt.datetime,
) -> None:
    conn.execute(
        idempotency_keys.insert().values(
            gate_id=gate_id,
            request_id=request_id,
            route=route,
            body_sha256=digest,
            status_code=200,
            response=response,
            created_at=now,
        )
    )


# --- registration and keys ------------------------------------------------------------


@router.post("/register", status_code=202, openapi_extra=_doc(GateRegister))
async def register(request: Request) -> dict[str, str]:
    """Register this gate (pending until an admin approves). Signed by the enclosed key."""
    ctx = _ctx(request)
    body = await request.body()
    req = _parse(GateRegister, body)
    signing_key = b64decode_field(req.signing_public_key, "signing_public_key", 64)
    bundle = b64decode_field(req.he_public_bundle, "he_public_bundle", _BUNDLE_MAX)
    cert = peer_certificate(request.scope)
    now = ctx.now()
    request.state.principal = Principal(req.gate_id, "gate", kind="gate")
    request.state.action = "gate.register"
    gate_registry.verify_registration(
        cert,
        req.gate_id,
        signing_key,
        request.method,
        request.url.path,
        body,
        request.headers,
        now=now,
    )
    assert cert is not None
    ctx.authorize(request.state.principal, "gate.register", {"gate_id": req.gate_id})
    he_key_id = await run_in_threadpool(ctx.he.public_bundle_key_id, bundle)
    key_ttl = dt.timedelta(days=ctx.settings.gate_key_ttl_days)

    def run() -> str:
        with ctx.transaction() as conn:
            key_id = gate_registry.register_gate(
                conn,
                cert,
                req.gate_id,
                req.site,
                signing_key,
                bundle,
                he_key_id,
                now=now,
                key_ttl=key_ttl,
            )
            ctx.record(
                conn,
                ServiceEvent(
                    "gate.register",
                    f"gate:{req.gate_id}",
                    (f"gate:{req.gate_id}",),
                    {
                        "step": "requested",
                        "site": req.site,
                        "key_id": key_id,
                        "cert_sha256": cert.sha256,
                    },
                ),
            )
            return key_id

    key_id = await run_in_threadpool(run)
    return {"gate_id": req.gate_id, "key_id": key_id, "status": "pending"}


@router.post("/keys/rotate", openapi_extra=_doc(KeyRotate))
async def rotate(request: Request) -> dict[str, str]:
    """Replace this gate's signing and HE keys; the request is signed by the current key."""
    ctx, identity, body = await _authenticate(request, "gate.rotate_key")
    req = _parse(KeyRotate, body)
    signing_key = b64decode_field(req.signing_public_key, "signing_public_key", 64)
    bundle = b64decode_field(req.he_public_bundle, "he_public_bundle", _BUNDLE_MAX)
    proof = b64decode_field(req.new_key_signature, "new_key_signature", 64)
    he_key_id = await run_in_threadpool(ctx.he.public_bundle_key_id, bundle)
    now = ctx.now()
    key_ttl = dt.timedelta(days=ctx.settings.gate_key_ttl_days)

    def run() -> str:
        with ctx.transaction() as conn:
            new_id = gate_registry.rotate_key(
                conn, identity, signing_key, bundle, he_key_id, proof, now=now, key_ttl=key_ttl
            )
            ctx.record(
                conn,
                ServiceEvent(
                    "gate.key_rotate",
                    f"gate:{identity.gate_id}",
                    (f"gate:{identity.gate_id}",),
                    {"old_key_id": identity.key_id, "new_key_id": new_id},
                ),
            )
            return new_id

    new_id = await run_in_threadpool(run)
    return {"gate_id": identity.gate_id, "key_id": new_id}


@router.post("/heartbeat")
async def heartbeat(request: Request) -> dict[str, Any]:
    """Liveness from the gate; answers with the key's expiry so the gate rotates in time."""
    ctx = _ctx(request)
    body = await request.body()
    cert = peer_certificate(request.scope)
    now = ctx.now()

    def run() -> tuple[GateIdentity, dt.datetime]:
        with ctx.transaction() as conn:
            identity = gate_registry.authenticate_request(
                conn, cert, request.method, request.url.path, body, request.headers, now=now
            )
            row = conn.execute(
                sa.select(gate_keys.c.expires_at).where(gate_keys.c.id == identity.key_id)
            ).one()
            return identity, utc(row.expires_at)

    identity, expires = await run_in_threadpool(run)
    principal = Principal(identity.gate_id, "gate", kind="gate")
    request.state.principal = principal
    request.state.action = "gate.heartbeat"
    ctx.authorize(principal, "gate.heartbeat", {"gate_id": identity.gate_id})
    return {
        "gate_id": identity.gate_id,
        "key_id": identity.key_id,
        "key_expires_at": expires.isoformat(),
        "time": ctx.now().isoformat(),
    }


# --- match and reveal -------------------------------------------------------------------
#
# Two committed transactions per traveller. Each handler first checks the request
# without writing (certificate, signature, key state, unseen nonce; then policy and
# idempotency reads), does the work, and then commits in ONE transaction the nonce, the
# records and their audit leaves before answering. If anything fails after the checks,
# the nonce is spent in its own transaction before the error goes out, so a request
# that was answered — successfully or not — can never be replayed.


def _check_gate(
    ctx: ServiceContext,
    request: Request,
    conn: sa.Connection,
    body: bytes,
    action: str,
    now: dt.datetime,
    seen: list[GateIdentity],
) -> GateIdentity:
    """Authenticate without writing, then authorise ``action`` (runs in a worker thread).

    The identity is appended to ``seen`` as soon as the request authenticates, so the
    caller can spend its nonce if anything after this point (authorisation included)
    refuses the request.
    """
    identity = gate_registry.check_request(
        conn,
        peer_certificate(request.scope),
        request.method,
        request.url.path,
        body,
        request.headers,
        now=now,
    )
    seen.append(identity)
    principal = Principal(identity.gate_id, "gate", kind="gate")
    request.state.principal = principal
    request.state.action = action
    ctx.authorize(principal, action, {"gate_id": identity.gate_id})
    return identity


def _spend_alone(ctx: ServiceContext, identity: GateIdentity, now: dt.datetime) -> None:
    """Spend the nonce of a request whose work failed (best effort: the error stands)."""
    try:
        with ctx.transaction() as conn:
            gate_registry.spend_nonce(conn, identity, now)
    except Exception as exc:  # already spent by a concurrent copy, or the database is down
        log.warning("nonce not recorded", extra={"error_type": type(exc).__name__})


async def _spending_on_failure(
    ctx: ServiceContext, seen: list[GateIdentity], now: dt.datetime, exc: BaseException
) -> None:
    replayed = isinstance(exc, GateRefusedError) and exc.code == "request-replayed"
    if seen and not replayed:
        await run_in_threadpool(_spend_alone, ctx, seen[0], now)


def _match_policy(
    ctx: ServiceContext, conn: sa.Connection, identity: GateIdentity, now: dt.datetime
) -> Any:
    key = conn.execute(
        sa.select(gate_keys.c.id, gate_keys.c.created_at).where(
            gate_keys.c.gate_id == identity.gate_id, gate_keys.c.status == "active"
        )
    ).first()
    recent = conn.execute(
        sa.select(sa.func.count())
        .select_from(pending_queries)
        .where(
            pending_queries.c.gate_id == identity.gate_id,
            pending_queries.c.created_at > now - dt.timedelta(seconds=60),
        )
    ).scalar_one()
    decision = ctx.policy.evaluate(
        "veilmatch.match.decision",
        {
            "now": now.isoformat(),
            "gate": {
                "id": identity.gate_id,
                "site": identity.site,
                "registered": True,
                "active": identity.gate_status == "active",
                "key_id": identity.key_id,
                "current_key_id": key.id if key is not None else None,
                "key_created_at": utc(key.created_at).isoformat() if key is not None else None,
            },
            "requests_last_minute": int(recent),
        },
    )
    result = decision.result if isinstance(decision.result, dict) else {}
    if result.get("allow") is not True:
        reasons = [str(r) for r in result.get("reasons") or ["denied"]]
        if any("rate limit" in r for r in reasons):
            raise RateLimitedError("; ".join(reasons), code="rate-limited", retry_after_s=60)
        raise ForbiddenError("match refused: " + "; ".join(reasons), code="match-refused")
    return decision


def _match_body(body: bytes, binary: bool) -> tuple[MatchMeta, bytes]:
    """The request's metadata and probe bytes, from either wire form."""
    if binary:
        frame = wire.parse_frame(body, wire.MATCH_REQUEST_MAGIC, max_payload=_PROBE_MAX)
        return _parse(MatchMeta, frame.meta), frame.payload
    req = _parse(MatchRequest, body)
    probe = b64decode_field(req.probe, "probe", _PROBE_MAX)
    meta = MatchMeta(
        request_id=req.request_id, doc_pseudonym=req.doc_pseudonym, next_seed=req.next_seed
    )
    return meta, probe


@dataclass
class _MatchAdmission:
    identity: GateIdentity
    meta: MatchMeta
    probe: bytes
    digest: str
    decision: Any = None
    cached: Response | None = None


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


@router.post("/match", response_model=MatchResponse, openapi_extra=_MATCH_DOC)
async def match(request: Request) -> Response:
    """Score an encrypted probe against the watchlist; returns the masked result.

    Two wire forms: JSON with a base64 probe, or a binary frame
    (``application/vnd.veilmatch.match-request``, see ``service.wire``) answered with a
    binary frame.
    """
    ctx = _ctx(request)
    body = await request.body()
    binary = wire.is_media_type(request.headers.get("content-type"), wire.MATCH_REQUEST_TYPE)
    now = ctx.now()
    seen: list[GateIdentity] = []

    def admit() -> _MatchAdmission:
        with ctx.reader() as conn:
            identity = _check_gate(ctx, request, conn, body, "gate.match", now, seen)
            meta, probe = _match_body(body, binary)
            digest = hashlib.sha256(body).hexdigest()
            adm = _MatchAdmission(identity, meta, probe, digest)
            adm.cached = _idempotent(ctx, conn, identity.gate_id, meta.request_id, "match", digest)
            if adm.cached is None:
                adm.decision = _match_policy(ctx, conn, identity, now)
        return adm

    try:
        adm = await run_in_threadpool(admit)
        if adm.cached is not None:
            await run_in_threadpool(_spend_alone, ctx, adm.identity, now)
            return adm.cached
        return await _score_and_commit(ctx, adm, binary, now)
    except BaseException as exc:
        await _spending_on_failure(ctx, seen, now, exc)
        raise


async def _score_and_commit(
    ctx: ServiceContext, adm: _MatchAdmission, binary: bool, now: dt.datetime
) -> Response:
    identity, meta = adm.identity, adm.meta

    def load_bundle() -> bytes:
        with ctx.engine.connect() as conn:
            return load_he_bundle(conn, identity.key_id)

    outcome = await ctx.pool.score(
        adm.probe, identity.key_id, load_bundle, ctx.settings.match_threshold
    )
    ctx.metrics.he_score_seconds.observe(outcome.seconds)
    single_ciphertext = ctx.he.single_ciphertext
    if single_ciphertext:
        ctx.metrics.prepared.labels("used" if outcome.prepared else "missed").inc()
    query_id = str(uuid.uuid4())
    # The gate's reveal window starts when the result exists, not when the request came.
    expires = ctx.now() + dt.timedelta(seconds=ctx.settings.pending_query_ttl_s)
    if binary:
        head = MatchResultMeta(
            query_id=query_id, expires_at=expires, gallery_version=outcome.gallery_version
        )
        media_type = wire.MATCH_RESPONSE_TYPE
        payload = wire.encode_frame(
            wire.MATCH_RESPONSE_MAGIC, head.model_dump_json().encode(), outcome.masked_result
        )
    else:
        media_type = "application/json"
        payload = (
            MatchResponse(
                query_id=query_id,
                result=base64.b64encode(outcome.masked_result).decode("ascii"),
                expires_at=expires,
                gallery_version=outcome.gallery_version,
            )
            .model_dump_json()
            .encode()
        )
    decision = adm.decision
    event = ServiceEvent(
        "match.query",
        f"gate:{identity.gate_id}",
        (f"query:{query_id}", f"gate:{identity.gate_id}"),
        {
            "key_id": identity.key_id,
            "he_key_id": identity.he_key_id,
            "gallery_version": outcome.gallery_version,
            "gallery_size": len(outcome.entry_ids),
            "travel_info": meta.doc_pseudonym is not None,
            "request_id": meta.request_id,
        },
        decision_id=decision.decision_id,
        bundle_digest=decision.bundle_digest,
    )
    # The database keeps only the query id for retries (no masked result on disk).
    stored = json.dumps({"query_id": query_id}).encode()

    def commit(conn: sa.Connection) -> None:
        gate_registry.spend_nonce(conn, identity, now)
        conn.execute(
            pending_queries.insert().values(
                id=query_id,
                gate_id=identity.gate_id,
                key_id=identity.key_id,
                created_at=now,
                expires_at=expires,
                gallery_version=outcome.gallery_version,
                doc_pseudonym=meta.doc_pseudonym,
                status="pending",
            )
        )
        if meta.doc_pseudonym:
            conn.execute(
                crossings.insert().values(
                    id=str(uuid.uuid4()),
                    doc_pseudonym=meta.doc_pseudonym,
                    gate_id=identity.gate_id,
                    at=now,
                )
            )
        ctx.record(conn, event)
        _store_idempotent(conn, identity.gate_id, meta.request_id, "match", adm.digest, stored, now)

    # Remember the mapping before committing: once committed, a retry may ask for it.
    ctx.pending.put(
        PendingQuery(
            query_id,
            identity.gate_id,
            outcome.mapping,
            outcome.entry_ids,
            outcome.gallery_version,
            expires,
            adm.probe,
            payload,
            media_type,
            meta.doc_pseudonym,
        )
    )
    try:
        await run_in_threadpool(ctx.write, commit)
    except BaseException:
        ctx.pending.discard(query_id)
        raise
    if meta.next_seed is not None and single_ciphertext:
        # The gate committed the seed of its next probe: an idle worker can do that
        # query's template-independent half now (skipped when the pool is busy).
        ctx.pool.prepare_soon(identity.key_id, load_bundle, bytes.fromhex(meta.next_seed))
    return Response(payload, media_type=media_type)


def _alert_decision(
    ctx: ServiceContext, conn: sa.Connection, hits: list[str], doc: str | None, now: dt.datetime
) -> Any:
    facts = watchlist.hit_facts(conn, hits, now)
    travel: dict[str, Any] = {}
    if doc:
        travel["crossings_24h"] = int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(crossings)
                .where(
                    crossings.c.doc_pseudonym == doc,
                    crossings.c.at > now - dt.timedelta(hours=24),
                )
            ).scalar_one()
        )
    return ctx.policy.evaluate(
        "veilmatch.alert.decision", {"now": now.isoformat(), "hits": facts, "travel": travel}
    )


def _keep_probe(ctx: ServiceContext, state: str) -> bool:
    decision = ctx.policy.evaluate(
        "veilmatch.retention.decision",
        {"kind": "probe_ciphertext", "state": state, "age_days": 0},
    )
    result = decision.result if isinstance(decision.result, dict) else {}
    return result.get("action") == "keep"


@router.post("/reveal", response_model=RevealResponse, openapi_extra=_doc(RevealRequest))
async def reveal(request: Request) -> Response:
    """Turn the gate's positive positions into an outcome: ``proceed`` or ``secondary``."""
    ctx = _ctx(request)
    body = await request.body()
    now = ctx.now()
    seen: list[GateIdentity] = []

    def run() -> tuple[Response | None, str, dict[str, Any] | None, bytes]:
        digest = hashlib.sha256(body).hexdigest()
        with ctx.reader() as conn:
            identity = _check_gate(ctx, request, conn, body, "gate.reveal", now, seen)
            req = _parse(RevealRequest, body)
            cached = _idempotent(ctx, conn, identity.gate_id, req.request_id, "reveal", digest)
            if cached is not None:
                return cached, "", None, b""
            pending = ctx.pending.take(req.query_id, identity.gate_id, now)
            rows = ctx.he.resolve(req.positions, pending.mapping)
            hits = sorted({pending.entry_ids[i] for i in rows if 0 <= i < len(pending.entry_ids)})
            decision = _alert_decision(ctx, conn, hits, pending.doc_pseudonym, now)
        result = decision.result if isinstance(decision.result, dict) else {}
        raise_alert = result.get("alert") is True
        outcome = "secondary" if raise_alert else "proceed"
        keep_probe = raise_alert and _keep_probe(ctx, "alert_open")
        events = [
            ServiceEvent(
                "match.decision",
                f"gate:{identity.gate_id}",
                (f"query:{req.query_id}", *(f"watchlist:{h}" for h in hits)),
                {
                    "outcome": outcome,
                    "hits": len(hits),
                    "reason": str(result.get("reason", ""))[:200],
                    "severity": str(result.get("severity", "none")),
                    "gallery_version": pending.gallery_version,
                    "frequent_crossing": bool(result.get("frequent_crossing", False)),
                },
                decision_id=decision.decision_id,
                bundle_digest=decision.bundle_digest,
            )
        ]
        payload = RevealResponse(query_id=req.query_id, outcome=outcome).model_dump_json().encode()
        alert: dict[str, Any] | None = None

        def write(conn: sa.Connection) -> None:
            nonlocal alert
            gate_registry.spend_nonce(conn, identity, now)
            conn.execute(
                pending_queries.update()
                .where(pending_queries.c.id == req.query_id)
                .values(status="revealed", outcome=outcome, decision_id=decision.decision_id)
            )
            if raise_alert:
                entries = [str(e) for e in result.get("entries", hits)]
                alert_id = create_alert(
                    conn,
                    gate_id=identity.gate_id,
                    query_id=req.query_id,
                    entry_ids=entries,
                    reason=str(result.get("reason", "watchlist match")),
                    severity=str(result.get("severity", "medium")),
                    decision_id=decision.decision_id,
                    bundle_digest=decision.bundle_digest,
                    gallery_version=pending.gallery_version,
                    now=now,
                )
                if keep_probe:
                    conn.execute(
                        probe_records.insert().values(
                            id=str(uuid.uuid4()),
                            query_id=req.query_id,
                            alert_id=alert_id,
                            ciphertext=pending.probe,
                            created_at=now,
                        )
                    )
                events.append(
                    ServiceEvent(
                        "alert.raised",
                        "system",
                        (
                            f"alert:{alert_id}",
                            f"query:{req.query_id}",
                            *(f"watchlist:{e}" for e in entries),
                        ),
                        {
                            "gate_id": identity.gate_id,
                            "reason": str(result.get("reason", ""))[:200],
                            "severity": str(result.get("severity", "")),
                            "gallery_version": pending.gallery_version,
                            "required_reviewers": int(result.get("required_reviewers", 2)),
                        },
                        decision_id=decision.decision_id,
                        bundle_digest=decision.bundle_digest,
                    )
                )
                alert = {
                    "id": alert_id,
                    "status": "open",
                    "kind": "raised",
                    "severity": str(result.get("severity", "")),
                    "gate_id": identity.gate_id,
                }
            ctx.record(conn, *events)
            _store_idempotent(
                conn, identity.gate_id, req.request_id, "reveal", digest, payload, now
            )

        ctx.write(write)
        return None, outcome, alert, payload

    try:
        cached, outcome, alert, payload = await run_in_threadpool(run)
        if cached is not None:
            await run_in_threadpool(_spend_alone, ctx, seen[0], now)
            return cached
    except BaseException as exc:
        await _spending_on_failure(ctx, seen, now, exc)
        raise
    ctx.metrics.decisions.labels(outcome).inc()
    if alert is not None:
        ctx.bus.publish(alert)
    return Response(payload, media_type="application/json")

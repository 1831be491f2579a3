"""Match, the first half of a traveller's search: score the encrypted probe against the
watchlist and answer the masked result.

Steps: parse the body (JSON with a base64 probe, or a binary frame of
:mod:`protocol.wire`); answer a retried request id from its stored reply; ask the match
policy (gate state, key age, rate, opening hours); score in a worker process; then
commit in ONE transaction the nonce, the pending query, the crossing, the
``match.query`` audit leaf and the idempotency record. The secret mapping stays in
memory (:class:`~service.scoring.pending.PendingStore`) for ``pending_query_ttl_s``; the
database never holds the masked result.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection

from protocol import wire
from service import queries
from service.audit_events import match_queried
from service.context import ServiceContext
from service.decisions import MatchDecision, ask_match
from service.errors import ForbiddenError, RateLimitedError
from service.gate_auth import GateRequest
from service.gates import GateIdentity, load_he_bundle
from service.schemas import (
    MatchMeta,
    MatchRequest,
    MatchResponse,
    MatchResultMeta,
    b64decode_field,
)
from service.scoring.backend import ScoreOutcome
from service.scoring.pending import PendingQuery
from service.usecases.common import JSON, Reply, body_digest, parse_body, replay

__all__ = ["PROBE_MAX", "MatchInput", "match", "parse_match"]

#: Largest probe accepted (bytes): one ckks-v2 ciphertext is ~2 MB.
PROBE_MAX = 6 * 1024 * 1024
#: The window of the match policy's rate input.
_RATE_WINDOW = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class MatchInput:
    """A parsed match request; ``digest`` is the SHA-256 (hex) of the raw body."""

    meta: MatchMeta
    probe: bytes
    binary: bool
    digest: str


def parse_match(body: bytes, content_type: str | None) -> MatchInput:
    """The request's metadata and probe bytes, from either wire form."""
    digest = body_digest(body)
    if wire.is_media_type(content_type, wire.MATCH_REQUEST_TYPE):
        frame = wire.parse_frame(body, wire.MATCH_REQUEST_MAGIC, max_payload=PROBE_MAX)
        return MatchInput(parse_body(MatchMeta, frame.meta), frame.payload, True, digest)
    req = parse_body(MatchRequest, body)
    probe = b64decode_field(req.probe, "probe", PROBE_MAX)
    meta = MatchMeta(
        request_id=req.request_id, doc_pseudonym=req.doc_pseudonym, next_seed=req.next_seed
    )
    return MatchInput(meta, probe, False, digest)


def _ask_policy(
    ctx: ServiceContext, conn: Connection, identity: GateIdentity, now: dt.datetime
) -> MatchDecision:
    """``veilmatch.match``: refused searches raise (429 for the rate limit, else 403)."""
    key = queries.active_key(conn, identity.gate_id)
    recent = queries.count_recent_queries(conn, identity.gate_id, now - _RATE_WINDOW)
    decision = ask_match(
        ctx.policy,
        {
            "now": now.isoformat(),
            "gate": {
                "id": identity.gate_id,
                "site": identity.site,
                "registered": True,
                "active": identity.gate_status == "active",
                "key_id": identity.key_id,
                "current_key_id": key.id if key is not None else None,
                "key_created_at": key.created_at.isoformat() if key is not None else None,
            },
            "requests_last_minute": recent,
        },
    )
    if not decision.allow:
        why = "; ".join(decision.reasons)
        if decision.rate_limited:
            raise RateLimitedError(why, code="rate-limited", retry_after_s=60)
        raise ForbiddenError("match refused: " + why, code="match-refused")
    return decision


def _admit(ctx: ServiceContext, gate: GateRequest) -> tuple[MatchInput, MatchDecision | Reply]:
    """Parse, then the stored reply of a retry or the policy's permission (no writes)."""
    with ctx.reader() as conn:
        request = parse_match(gate.body, gate.content_type)
        meta = request.meta
        cached = replay(ctx, conn, gate.identity.gate_id, meta.request_id, "match", request.digest)
        if cached is not None:
            return request, cached
        return request, _ask_policy(ctx, conn, gate.identity, gate.now)


def _encode(outcome: ScoreOutcome, query_id: str, expires: dt.datetime, binary: bool) -> Reply:
    """The masked result in the wire form of the request."""
    if binary:
        head = MatchResultMeta(
            query_id=query_id, expires_at=expires, gallery_version=outcome.gallery_version
        )
        payload = wire.encode_frame(
            wire.MATCH_RESPONSE_MAGIC, head.model_dump_json().encode(), outcome.masked_result
        )
        return Reply(payload, wire.MATCH_RESPONSE_TYPE)
    response = MatchResponse(
        query_id=query_id,
        result=base64.b64encode(outcome.masked_result).decode("ascii"),
        expires_at=expires,
        gallery_version=outcome.gallery_version,
    )
    return Reply(response.model_dump_json().encode(), JSON)


def _commit(
    ctx: ServiceContext,
    gate: GateRequest,
    request: MatchInput,
    pending: queries.NewPendingQuery,
    outcome: ScoreOutcome,
    decision: MatchDecision,
) -> None:
    """The nonce, records, audit leaf and idempotency record, in one (group) commit."""
    identity, meta, now = gate.identity, request.meta, gate.now
    event = match_queried(
        identity,
        pending.id,
        gallery_version=outcome.gallery_version,
        gallery_size=len(outcome.entry_ids),
        travel_info=meta.doc_pseudonym is not None,
        request_id=meta.request_id,
        decision=decision.policy,
    )
    # The database keeps only the query id for retries (no masked result on disk).
    stored = json.dumps({"query_id": pending.id}).encode()

    def work(conn: Connection) -> None:
        gate.spend_in(conn)
        queries.insert_pending_query(conn, pending)
        if meta.doc_pseudonym:
            queries.record_crossing(conn, meta.doc_pseudonym, identity.gate_id, now)
        ctx.record(conn, event)
        queries.store_reply(
            conn, identity.gate_id, meta.request_id, "match", request.digest, stored, now
        )

    ctx.write(work)


async def match(ctx: ServiceContext, gate: GateRequest) -> Reply:
    """Score the gate's probe and commit the pending query; returns the masked result
    (or the stored reply of a retried request id)."""
    request, admitted = await run_in_threadpool(_admit, ctx, gate)
    if isinstance(admitted, Reply):
        return admitted
    identity, meta = gate.identity, request.meta

    def load_bundle() -> bytes:
        with ctx.engine.connect() as conn:
            return load_he_bundle(conn, identity.key_id)

    outcome = await ctx.pool.score(
        request.probe, identity.key_id, load_bundle, ctx.settings.match_threshold
    )
    ctx.metrics.he_score_seconds.observe(outcome.seconds)
    single_ciphertext = ctx.he.single_ciphertext
    if single_ciphertext:
        ctx.metrics.prepared.labels("used" if outcome.prepared else "missed").inc()
    query_id = str(uuid.uuid4())
    # The gate's reveal window starts when the result exists, not when the request came.
    expires = ctx.now() + dt.timedelta(seconds=ctx.settings.pending_query_ttl_s)
    reply = _encode(outcome, query_id, expires, request.binary)
    pending = queries.NewPendingQuery(
        query_id,
        identity.gate_id,
        identity.key_id,
        gate.now,
        expires,
        outcome.gallery_version,
        meta.doc_pseudonym,
    )
    # Remember the mapping before committing: once committed, a retry may ask for it.
    ctx.pending.put(
        PendingQuery(
            query_id,
            identity.gate_id,
            outcome.mapping,
            outcome.entry_ids,
            outcome.gallery_version,
            expires,
            request.probe,
            reply.body,
            reply.media_type,
            meta.doc_pseudonym,
        )
    )
    try:
        await run_in_threadpool(_commit, ctx, gate, request, pending, outcome, admitted)
    except BaseException:
        ctx.pending.discard(query_id)
        raise
    if meta.next_seed is not None and single_ciphertext:
        # The gate committed the seed of its next probe: an idle worker can do that
        # query's template-independent half now (skipped when the pool is busy).
        ctx.pool.prepare_soon(identity.key_id, load_bundle, bytes.fromhex(meta.next_seed))
    return reply

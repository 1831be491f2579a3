"""Oversight API (read-only): audit entries, checkpoints and cosignatures, proofs, tiles,
statistics. Nothing biometric is reachable from here: audit payloads are pseudonymous by
construction (the audit package refuses template-like data), and statistics are counts.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from audit.errors import AuditError
from audit.errors import NotFoundError as AuditNotFound
from audit.events import EventType
from service import queries
from service.accounts import Principal
from service.deps import CtxDep, require
from service.errors import MalformedRequestError, NotFoundError

__all__ = ["router", "stats_router"]

router = APIRouter(prefix="/api/v1/audit", tags=["oversight"])
_AUDIT_READ = Annotated[Principal, Depends(require("audit.read"))]
_AUDIT_PROOF = Annotated[Principal, Depends(require("audit.proof"))]


def _log(ctx: CtxDep) -> Any:
    return ctx.audit.log  # type: ignore[attr-defined]


def _audit_error(exc: Exception) -> Exception:
    if isinstance(exc, AuditNotFound):
        return NotFoundError(str(exc))
    return MalformedRequestError(f"{type(exc).__name__}: {exc}"[:200], code="audit-refused")


@router.get("/entries")
def entries(
    ctx: CtxDep,
    _p: _AUDIT_READ,
    start: Annotated[int, Query(ge=0, le=2**62)] = 0,
    end: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    event_type: Annotated[str | None, Query(alias="type", pattern=r"^[a-z_.]{1,40}$")] = None,
    gate: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,128}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Entries ``start <= seq < end``, optionally of one type and/or about one gate."""
    if event_type is not None and event_type not in {t.value for t in EventType}:
        raise MalformedRequestError("unknown event type", code="unknown-event-type")
    try:
        rows = _log(ctx).entries(
            start, end, types=[event_type] if event_type else None, limit=limit
        )
    except AuditError as exc:
        raise _audit_error(exc) from None
    out = []
    for entry in rows:
        header = entry.header.to_dict()
        if gate is not None:
            tag = f"gate:{gate}"
            if header["actor"] != tag and tag not in header["subjects"]:
                continue
        out.append(
            {
                "seq": entry.seq,
                "header": header,
                "leaf_hash": entry.leaf_hash.hex(),
                "payload": entry.payload,
            }
        )
    return out


@router.get("/checkpoint", response_class=Response)
def checkpoint(ctx: CtxDep, _p: _AUDIT_READ) -> Response:
    """The latest signed checkpoint with its witness cosignatures (C2SP signed note)."""
    try:
        data = _log(ctx).latest_checkpoint().to_bytes()
    except AuditError as exc:
        raise NotFoundError(str(exc)) from None
    return Response(data, media_type="text/plain; charset=utf-8")


@router.get("/log-key")
def log_key(ctx: CtxDep, _p: _AUDIT_READ) -> dict[str, str]:
    """The log's public note key (verify checkpoints with it, out of band ideally)."""
    return {"vkey": _log(ctx).signer.verifier().to_string(), "origin": _log(ctx).origin}


@router.get("/proofs/inclusion")
def inclusion_proof(
    ctx: CtxDep,
    _p: _AUDIT_PROOF,
    seq: Annotated[int, Query(ge=0, le=2**62)],
    size: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of entry ``seq`` (default size: latest checkpoint)."""
    try:
        proof = _log(ctx).inclusion_proof(seq, size)
    except AuditError as exc:
        raise _audit_error(exc) from None
    return {
        "seq": proof.seq,
        "size": proof.size,
        "leaf_hash": proof.leaf_hash.hex(),
        "hashes": [base64.b64encode(h).decode() for h in proof.hashes],
    }


@router.get("/proofs/consistency")
def consistency_proof(
    ctx: CtxDep,
    _p: _AUDIT_PROOF,
    old: Annotated[int, Query(ge=0, le=2**62)],
    new: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> dict[str, Any]:
    """RFC 9162 consistency proof between two tree sizes."""
    try:
        hashes = _log(ctx).consistency_proof(old, new)
    except AuditError as exc:
        raise _audit_error(exc) from None
    return {"old": old, "new": new, "hashes": [base64.b64encode(h).decode() for h in hashes]}


@router.get("/tiles/{path:path}", response_class=Response)
def tiles(
    ctx: CtxDep,
    _p: _AUDIT_READ,
    path: Annotated[str, Path(max_length=300, pattern=r"^[A-Za-z0-9._/-]+$")],
) -> Response:
    """C2SP tlog-tiles static resources (``tile/…``, ``checkpoint``)."""
    # Fixed messages: the audit layer's text quotes the requested path, and an error body
    # echoing request input is a reflection vector (and tells nothing a client needs).
    try:
        data = _log(ctx).read_static(path)
    except (AuditError, ValueError):
        raise NotFoundError("no such tile") from None
    return Response(data, media_type="application/octet-stream")


stats_router = APIRouter(prefix="/api/v1", tags=["oversight"])


@stats_router.get("/statistics")
def statistics(
    ctx: CtxDep,
    _p: Annotated[Principal, Depends(require("stats.read"))],
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> dict[str, Any]:
    """Counts only: queries per gate per day, hits, alerts, reviews, deletions, policies."""
    since = ctx.now() - dt.timedelta(days=days)
    with ctx.engine.connect() as conn:
        counts = queries.statistics_counts(conn, since)
    log = _log(ctx)
    deletions = len(log.entries(0, None, types=["retention.delete"], limit=100_000))
    policies = sorted(
        {
            e.header.policy_digest
            for e in log.entries(0, None, types=["policy.load"], limit=10_000)
            if e.header.policy_digest
        }
    )
    return {
        "since": since.isoformat(),
        "queries_per_gate_per_day": counts.per_gate,
        "secondary_outcomes": counts.secondary,
        "alerts": counts.alerts_by_status,
        "confirmations": counts.verdicts.get("confirm", 0),
        "dismissals": counts.verdicts.get("dismiss", 0),
        "retention_deletion_events": deletions,
        "policy_versions": policies,
        "policy_in_force": ctx.policy.bundle_digest,
    }

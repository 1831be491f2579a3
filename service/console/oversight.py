"""Oversight pages: the audit browser with per-entry inclusion proofs, checkpoint
history with witness cosignatures, statistics charts and policy versions in force.

Read-only. Every entry shown is proven against the newest signed checkpoint twice:
on the server (:mod:`service.console.auditview`) and again in the browser
(``static/console.js``, WebCrypto SHA-256 and Ed25519) from the leaf bytes, the proof
hashes, the checkpoint note and the log's public key printed on the page.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from audit.events import EventType
from audit.log import AuditLog
from audit.note import COSIGNATURE_V1, NoteVerifier
from service.console import auditview
from service.console.charts import bar_chart
from service.console.session import SessionDep, require_page
from service.console.web import ConsoleRoute, render
from service.context import ServiceContext
from service.deps import CtxDep
from service.errors import MalformedRequestError

__all__ = ["router", "witness_keys"]

router = APIRouter(route_class=ConsoleRoute)
_TIME = Annotated[str | None, Query(max_length=32)]
_LABELS = {
    "queries": "Queries",
    "hits": "Hits (matched entries)",
    "alerts": "Alerts raised",
    "confirmations": "Confirmations",
    "dismissals": "Dismissals",
    "deletions": "Deletions (retention)",
}


def _log(ctx: ServiceContext) -> AuditLog:
    log: AuditLog = ctx.audit.log  # type: ignore[attr-defined]
    return log


def witness_keys(key_dir: Path | None) -> list[NoteVerifier]:
    """Witness (cosignature) verifier keys found as ``*.vkey`` files in ``key_dir``."""
    found: list[NoteVerifier] = []
    if key_dir is None or not key_dir.is_dir():
        return found
    for path in sorted(key_dir.glob("*.vkey")):
        try:
            key = NoteVerifier.from_string(path.read_text(encoding="ascii"))
        except (ValueError, OSError):
            continue
        if key.sig_type == COSIGNATURE_V1:
            found.append(key)
    return found


def _when(value: str | None, name: str) -> dt.datetime | None:
    """A ``datetime-local`` value (read as UTC) or ``None``."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise MalformedRequestError(f"{name} is not a date and time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@router.get("/audit")
def audit_browser(
    request: Request,
    ctx: CtxDep,
    principal: SessionDep,
    since: _TIME = None,
    until: _TIME = None,
    type: Annotated[str | None, Query(max_length=40)] = None,
    gate: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{0,128}$")] = None,
    before: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Response:
    """Entries newest first, each with its inclusion proof and verification status."""
    require_page(request, ctx, principal, "console.audit", "audit.read", "audit.proof")
    try:
        flt = auditview.EntryFilter(
            _when(since, "from"), _when(until, "until"), type or None, gate or None
        )
    except ValueError as exc:
        raise MalformedRequestError(
            str(exc) if "period" in str(exc) else "unknown event type"
        ) from None
    log = _log(ctx)
    log_key = log.signer.verifier()
    checkpoint = auditview.latest_checkpoint(log, log_key)
    page = auditview.browse(log, flt, before=before)
    rows = [(entry, auditview.prove(log, entry, checkpoint)) for entry in page.entries]
    query = {
        k: v for k, v in {"since": since, "until": until, "type": type, "gate": gate}.items() if v
    }
    return render(
        request,
        "audit.html",
        {
            "rows": rows,
            "page": page,
            "checkpoint": checkpoint,
            "log_key": log_key.to_string(),
            "types": [t.value for t in EventType],
            "filters": query,
            "older_query": {**query, "before": page.older} if page.older is not None else None,
        },
    )


@router.get("/audit/checkpoints")
def checkpoints(request: Request, ctx: CtxDep, principal: SessionDep) -> Response:
    """Signed checkpoints, newest first, with their witness cosignatures."""
    require_page(request, ctx, principal, "console.audit", "audit.read")
    log = _log(ctx)
    witnesses = witness_keys(ctx.settings.key_dir)
    rows, total = auditview.checkpoint_history(log, log.signer.verifier(), witnesses)
    return render(
        request,
        "checkpoints.html",
        {
            "rows": rows,
            "total": total,
            "log_key": log.signer.verifier().to_string(),
            "witnesses": [w.to_string() for w in witnesses],
        },
    )


@router.get("/audit/policies")
def policies_in_force(request: Request, ctx: CtxDep, principal: SessionDep) -> Response:
    """Policy bundle versions in force over time (from ``policy.load`` audit entries)."""
    require_page(request, ctx, principal, "console.audit", "audit.read")
    return render(
        request,
        "policies_in_force.html",
        {"timeline": auditview.policy_timeline(_log(ctx)), "current": ctx.policy.bundle_digest},
    )


@router.get("/stats")
def statistics(
    request: Request,
    ctx: CtxDep,
    principal: SessionDep,
    days: Annotated[int, Query(ge=1, le=366)] = 14,
) -> Response:
    """Per-day counts with charts: queries, hits, alerts, reviews, deletions."""
    require_page(request, ctx, principal, "console.stats", "stats.read")
    labels, series, partial = auditview.daily_counts(_log(ctx), days, ctx.now())
    charts: list[dict[str, Any]] = [
        {
            "name": name,
            "label": _LABELS[name],
            "total": sum(values),
            "svg": bar_chart(_LABELS[name], labels, values),
        }
        for name, values in series.items()
    ]
    return render(
        request,
        "stats.html",
        {
            "days": days,
            "labels": labels,
            "series": series,
            "charts": charts,
            "partial": partial,
            "names": _LABELS,
            "policy_in_force": ctx.policy.bundle_digest,
        },
    )

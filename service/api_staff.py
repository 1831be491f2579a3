"""Staff API (server TLS, bearer tokens): accounts, gates, watchlist, alerts.

Every route names one ``veilmatch.access`` action. Every state change goes through
:func:`service.usecases.staff_change.authorised_change`: authorised inside the
transaction that makes it, with its audit event carrying the decision's id and bundle
digest. Policy comes before lookup: a role that may not perform an action is refused
before the target is read, so it gets the same 403 for an existing id and a missing one;
resource facts the policy needs (enroller, reviewers) are read only after that check.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import Connection
from sse_starlette import EventSourceResponse

from service import alerts as alert_store
from service import audit_events as events
from service import gates as gate_registry
from service import queries, watchlist
from service.accounts import Principal, create_account
from service.decisions import ask_review_state
from service.deps import CtxDep, PrincipalDep, authorize_role, require
from service.errors import MalformedRequestError, UnavailableError
from service.lifecycle import rebuild_gallery
from service.schemas import (
    AccountCreate,
    AccountPublic,
    EnrolPhotos,
    EnrolTemplate,
    LoginRequest,
    RenewRequest,
    ReviewRequest,
    RevokeRequest,
    TokenResponse,
    b64decode_field,
)
from service.signin import client_address, sign_in
from service.usecases.staff_change import authorised_change
from service.watchlist import WatchlistEntry

__all__ = ["router"]

log = logging.getLogger("veilmatch.service")

router = APIRouter(prefix="/api/v1")
IdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
_PHOTO_MAX = 8 * 1024 * 1024


# --- authentication and accounts ------------------------------------------------------


@router.post("/auth/token", response_model=TokenResponse, tags=["auth"])
def login(body: LoginRequest, ctx: CtxDep, request: Request) -> TokenResponse:
    """Exchange a username and password for a short-lived bearer token (throttled: 429)."""
    principal = sign_in(ctx, body.username, body.password, client_address(request))
    token, expires = ctx.tokens.issue(principal, ctx.now())
    return TokenResponse(access_token=token, expires_at=expires, role=principal.role)


@router.post("/accounts", response_model=AccountPublic, status_code=201, tags=["admin"])
def create_staff_account(
    body: AccountCreate,
    request: Request,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require("admin.accounts"))],
) -> AccountPublic:
    """Create a staff account (admin)."""
    now = ctx.now()
    account_id = authorised_change(
        request,
        ctx,
        principal,
        "admin.accounts",
        lambda conn: create_account(
            conn, body.username, body.password, body.role, created_by=principal.subject, now=now
        ),
        lambda account_id, decision: events.account_created(
            principal, account_id, body.role, decision
        ),
    )
    return AccountPublic(id=account_id, username=body.username, role=body.role, active=True)


@router.get("/accounts", response_model=list[AccountPublic], tags=["admin"])
def list_accounts(
    ctx: CtxDep, _p: Annotated[Principal, Depends(require("admin.accounts"))]
) -> list[AccountPublic]:
    """List staff accounts (no password hashes)."""
    with ctx.transaction() as conn:
        rows = queries.list_accounts(conn)
    return [
        AccountPublic(id=r.id, username=r.username, role=r.role, active=bool(r.active))
        for r in rows
    ]


# --- gates ---------------------------------------------------------------------------


@router.get("/gates", tags=["admin"])
def list_gates(
    ctx: CtxDep, _p: Annotated[Principal, Depends(require("admin.gates"))]
) -> list[dict[str, Any]]:
    """Registered gates with their status and current key ids."""
    with ctx.transaction() as conn:
        return queries.list_gates(conn)


@router.post("/gates/{gate_id}/approve", tags=["admin"])
def approve_gate(
    gate_id: IdPath,
    request: Request,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require("admin.gates"))],
) -> dict[str, str]:
    """Activate a pending gate (admin)."""
    now = ctx.now()
    authorised_change(
        request,
        ctx,
        principal,
        "admin.gates",
        lambda conn: gate_registry.approve_gate(conn, gate_id, principal.subject, now),
        lambda _, decision: events.gate_approved(principal, gate_id, decision),
    )
    return {"gate_id": gate_id, "status": "active"}


@router.post("/gates/{gate_id}/revoke", tags=["admin"])
def revoke_gate(
    gate_id: IdPath,
    request: Request,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require("admin.gates"))],
) -> dict[str, str]:
    """Revoke a gate and retire its keys (admin). Final."""
    now = ctx.now()
    authorised_change(
        request,
        ctx,
        principal,
        "admin.gates",
        lambda conn: gate_registry.revoke_gate(conn, gate_id, now),
        lambda _, decision: events.gate_revoked(principal, gate_id, decision),
    )
    return {"gate_id": gate_id, "status": "revoked"}


# --- watchlist -----------------------------------------------------------------------


def _enrol(
    request: Request,
    ctx: CtxDep,
    principal: Principal,
    template: Any,
    body: EnrolTemplate | EnrolPhotos,
    source: str,
) -> dict[str, Any]:
    now = ctx.now()

    def change(conn: Connection) -> WatchlistEntry:
        entry_id = watchlist.enrol_template(
            conn,
            ctx.kek,
            template,
            body.subject_ref,
            body.legal_basis,
            body.category,
            body.expires_at,
            officer=principal.subject,
            now=now,
        )
        return watchlist.get_entry(conn, entry_id)

    entry = authorised_change(
        request,
        ctx,
        principal,
        "watchlist.enrol",
        change,
        lambda entry, decision: events.watchlist_enrolled(
            principal,
            entry.id,
            source=source,
            legal_basis=body.legal_basis,
            category=body.category,
            decision=decision,
        ),
        facts={"legal_basis": body.legal_basis},
    )
    return entry.public(now)


@router.post("/watchlist", status_code=201, tags=["watchlist"])
def enrol_from_template(
    body: EnrolTemplate, request: Request, ctx: CtxDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Propose a watchlist entry from a template (pending until a supervisor approves)."""
    authorize_role(request, ctx, principal, "watchlist.enrol")
    template = watchlist.normalise_template(body.template)
    return _enrol(request, ctx, principal, template, body, "template")


@router.post("/watchlist/photos", status_code=201, tags=["watchlist"])
def enrol_from_photos(
    body: EnrolPhotos, request: Request, ctx: CtxDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Propose an entry from 1-5 photos, embedded on the service with the gate pipeline.

    The template is the normalised mean of the photos' embeddings; photos are not kept.
    """
    authorize_role(request, ctx, principal, "watchlist.enrol")
    if ctx.face_embedder is None:
        raise UnavailableError("face pipeline is not available", code="pipeline-unavailable")
    vectors = [
        ctx.face_embedder(b64decode_field(photo, f"photos[{i}]", _PHOTO_MAX))
        for i, photo in enumerate(body.photos)
    ]
    dims = {len(v) for v in vectors}
    if len(dims) != 1:
        raise MalformedRequestError("photos produced templates of different dimensions")
    mean = np.mean(np.asarray(vectors, dtype=np.float64), axis=0)
    template = watchlist.normalise_template(mean.tolist())
    return _enrol(request, ctx, principal, template, body, "photos")


@router.get("/watchlist", tags=["watchlist"])
def list_watchlist(
    ctx: CtxDep,
    _p: Annotated[Principal, Depends(require("watchlist.read"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[dict[str, Any]]:
    """Entry metadata (never templates), newest first."""
    now = ctx.now()
    with ctx.transaction() as conn:
        return [e.public(now) for e in watchlist.list_entries(conn, limit, offset)]


@router.get("/watchlist/{entry_id}", tags=["watchlist"])
def get_watchlist_entry(
    entry_id: IdPath,
    ctx: CtxDep,
    _p: Annotated[Principal, Depends(require("watchlist.read"))],
) -> dict[str, Any]:
    """One entry's metadata."""
    with ctx.transaction() as conn:
        return watchlist.get_entry(conn, entry_id).public(ctx.now())


def _after_watchlist_change(ctx: CtxDep, entry_id: str, now: dt.datetime) -> dict[str, Any]:
    """Re-encode the gallery, then return the entry's public view. The change is
    committed either way; if the rebuild fails the error says so."""
    try:
        rebuild_gallery(ctx)
    except Exception as exc:
        log.error("gallery rebuild failed", extra={"error_type": type(exc).__name__})
        raise UnavailableError(
            "change recorded, but the gallery could not be rebuilt; matching uses the "
            "previous version until a rebuild succeeds",
            code="gallery-rebuild-failed",
        ) from None
    with ctx.transaction() as conn:
        return watchlist.get_entry(conn, entry_id).public(now)


@router.post("/watchlist/{entry_id}/approve", tags=["watchlist"])
def approve_watchlist_entry(
    entry_id: IdPath,
    request: Request,
    ctx: CtxDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Approve a pending entry (supervisor; never the enroller). Rebuilds the gallery."""
    now = ctx.now()

    def approve(conn: Connection) -> str:
        legal_basis = watchlist.get_entry(conn, entry_id).legal_basis
        watchlist.approve_entry(conn, entry_id, principal.subject, now)
        return legal_basis

    authorised_change(
        request,
        ctx,
        principal,
        "watchlist.approve",
        approve,
        lambda legal_basis, decision: events.watchlist_approved(
            principal, entry_id, legal_basis, decision
        ),
        facts=lambda conn: {"enrolled_by": watchlist.get_entry(conn, entry_id).created_by},
    )
    return _after_watchlist_change(ctx, entry_id, now)


@router.post("/watchlist/{entry_id}/renew", tags=["watchlist"])
def renew_watchlist_entry(
    entry_id: IdPath,
    body: RenewRequest,
    request: Request,
    ctx: CtxDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Extend an entry with a restated legal basis (supervisor)."""
    now = ctx.now()
    authorised_change(
        request,
        ctx,
        principal,
        "watchlist.renew",
        lambda conn: watchlist.renew_entry(
            conn, entry_id, principal.subject, body.legal_basis, body.expires_at, now
        ),
        lambda _, decision: events.watchlist_renewed(
            principal, entry_id, body.legal_basis, body.expires_at, decision
        ),
        facts={"legal_basis": body.legal_basis},
    )
    return _after_watchlist_change(ctx, entry_id, now)


@router.post("/watchlist/{entry_id}/revoke", tags=["watchlist"])
def revoke_watchlist_entry(
    entry_id: IdPath,
    body: RevokeRequest,
    request: Request,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require("watchlist.revoke"))],
) -> dict[str, Any]:
    """Revoke an entry; its sealed template is deleted at once."""
    now = ctx.now()
    authorised_change(
        request,
        ctx,
        principal,
        "watchlist.revoke",
        lambda conn: watchlist.revoke_entry(conn, entry_id, principal.subject, body.reason, now),
        lambda _, decision: events.watchlist_revoked(principal, entry_id, body.reason, decision),
    )
    return _after_watchlist_change(ctx, entry_id, now)


# --- alerts --------------------------------------------------------------------------


@router.get("/alerts", tags=["alerts"])
def list_alerts(
    ctx: CtxDep,
    _p: Annotated[Principal, Depends(require("alert.read"))],
    status: Annotated[str | None, Query(pattern=r"^(open|actionable|dismissed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Alerts, newest first."""
    with ctx.transaction() as conn:
        return alert_store.list_alerts(conn, status, limit)


@router.get("/alerts/stream", tags=["alerts"])
async def alert_stream(
    ctx: CtxDep, _p: Annotated[Principal, Depends(require("alert.read"))]
) -> EventSourceResponse:
    """Server-Sent Events: one ``alert`` event per new alert or status change."""

    async def stream() -> AsyncIterator[dict[str, str]]:
        yield {"event": "ready", "data": "{}"}
        async for item in ctx.bus.subscribe():
            yield {"event": "alert", "data": json.dumps(item)}

    return EventSourceResponse(stream(), ping=15)


@router.get("/alerts/{alert_id}", tags=["alerts"])
def get_alert(
    alert_id: IdPath,
    ctx: CtxDep,
    _p: Annotated[Principal, Depends(require("alert.read"))],
) -> dict[str, Any]:
    """One alert with its reviews."""
    with ctx.transaction() as conn:
        return alert_store.get_alert(conn, alert_id)


def _reviewers(conn: Connection, alert_id: str) -> dict[str, Any]:
    alert_store.get_alert(conn, alert_id)  # 404 for a missing alert (after the role check)
    return {"reviewers": queries.alert_reviewers(conn, alert_id)}


@router.post("/alerts/{alert_id}/reviews", tags=["alerts"])
def review_alert(
    alert_id: IdPath,
    body: ReviewRequest,
    request: Request,
    ctx: CtxDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Confirm or dismiss. Two distinct confirmations make the alert actionable."""
    now = ctx.now()

    def review(conn: Connection) -> tuple[str, dict[str, Any]]:
        status = alert_store.review_alert(
            conn,
            alert_id,
            principal.subject,
            principal.role,
            body.verdict,
            body.reason,
            now,
            decide=lambda reviews: ask_review_state(ctx.policy, reviews),
        )
        return status, alert_store.get_alert(conn, alert_id)

    status, result = authorised_change(
        request,
        ctx,
        principal,
        "alert.review",
        review,
        lambda done, decision: events.alert_reviewed(
            principal,
            alert_id,
            verdict=body.verdict,
            reason=body.reason,
            status=done[0],
            decision=decision,
        ),
        facts=lambda conn: _reviewers(conn, alert_id),
    )
    ctx.bus.publish({"id": alert_id, "status": status, "kind": "review"})
    return result

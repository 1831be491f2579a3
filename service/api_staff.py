"""Staff API (server TLS, bearer tokens): accounts, gates, watchlist, alerts.

Every route names one ``veilmatch.access`` action; resource facts the policy needs
(enroller, reviewers, legal basis) are read from the database first. Each state
change and its audit event commit in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Request
from sse_starlette import EventSourceResponse

from service import alerts as alert_store
from service import gates as gate_registry
from service import watchlist
from service.accounts import Principal, authenticate, create_account
from service.deps import CtxDep, PrincipalDep, authorize, require
from service.errors import MalformedRequestError, UnavailableError
from service.ports import ServiceEvent
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
from service.tables import accounts, alert_reviews, gate_keys, gates, utc

__all__ = ["router"]

log = logging.getLogger("veilmatch.service")

router = APIRouter(prefix="/api/v1")
IdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
_PHOTO_MAX = 8 * 1024 * 1024


def _actor(principal: Principal) -> str:
    return f"{principal.role}:{principal.subject}"


# --- authentication and accounts ------------------------------------------------------


@router.post("/auth/token", response_model=TokenResponse, tags=["auth"])
def login(body: LoginRequest, ctx: CtxDep) -> TokenResponse:
    """Exchange a username and password for a short-lived bearer token."""
    with ctx.transaction() as conn:
        principal = authenticate(conn, body.username, body.password)
    token, expires = ctx.tokens.issue(principal, ctx.now())
    return TokenResponse(access_token=token, expires_at=expires, role=principal.role)


@router.post("/accounts", response_model=AccountPublic, status_code=201, tags=["admin"])
def create_staff_account(
    body: AccountCreate,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require("admin.accounts"))],
) -> AccountPublic:
    """Create a staff account (admin)."""
    now = ctx.now()
    with ctx.transaction() as conn:
        account_id = create_account(
            conn, body.username, body.password, body.role, created_by=principal.subject, now=now
        )
        ctx.record(
            conn,
            ServiceEvent(
                "admin",
                _actor(principal),
                (f"account:{account_id}",),
                {"action": "account.create", "role": body.role},
            ),
        )
    return AccountPublic(id=account_id, username=body.username, role=body.role, active=True)


@router.get("/accounts", response_model=list[AccountPublic], tags=["admin"])
def list_accounts(
    ctx: CtxDep, _p: Annotated[Principal, Depends(require("admin.accounts"))]
) -> list[AccountPublic]:
    """List staff accounts (no password hashes)."""
    with ctx.transaction() as conn:
        rows = conn.execute(sa.select(accounts).order_by(accounts.c.username)).all()
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
        rows = conn.execute(sa.select(gates).order_by(gates.c.id)).all()
        keys = conn.execute(
            sa.select(gate_keys.c.gate_id, gate_keys.c.id, gate_keys.c.expires_at).where(
                gate_keys.c.status == "active"
            )
        ).all()
    current = {k.gate_id: (k.id, utc(k.expires_at).isoformat()) for k in keys}
    return [
        {
            "id": r.id,
            "site": r.site,
            "status": r.status,
            "cert_sha256": r.cert_sha256,
            "registered_at": utc(r.registered_at).isoformat(),
            "key_id": current.get(r.id, (None, None))[0],
            "key_expires_at": current.get(r.id, (None, None))[1],
        }
        for r in rows
    ]


@router.post("/gates/{gate_id}/approve", tags=["admin"])
def approve_gate(
    gate_id: IdPath,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require("admin.gates"))],
) -> dict[str, str]:
    """Activate a pending gate (admin)."""
    now = ctx.now()
    with ctx.transaction() as conn:
        gate_registry.approve_gate(conn, gate_id, principal.subject, now)
        ctx.record(
            conn,
            ServiceEvent(
                "gate.register", _actor(principal), (f"gate:{gate_id}",), {"step": "approved"}
            ),
        )
    return {"gate_id": gate_id, "status": "active"}


@router.post("/gates/{gate_id}/revoke", tags=["admin"])
def revoke_gate(
    gate_id: IdPath,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require("admin.gates"))],
) -> dict[str, str]:
    """Revoke a gate and retire its keys (admin). Final."""
    now = ctx.now()
    with ctx.transaction() as conn:
        gate_registry.revoke_gate(conn, gate_id, now)
        ctx.record(
            conn,
            ServiceEvent(
                "admin", _actor(principal), (f"gate:{gate_id}",), {"action": "gate.revoke"}
            ),
        )
    return {"gate_id": gate_id, "status": "revoked"}


# --- watchlist -----------------------------------------------------------------------


def _enrol(
    ctx: CtxDep,
    principal: Principal,
    template: Any,
    body: EnrolTemplate | EnrolPhotos,
    source: str,
) -> dict[str, Any]:
    subject_ref, legal_basis, category = body.subject_ref, body.legal_basis, body.category
    expires_at = body.expires_at
    now = ctx.now()
    with ctx.transaction() as conn:
        entry_id = watchlist.enrol_template(
            conn,
            ctx.kek,
            template,
            subject_ref,
            legal_basis,
            category,
            expires_at,
            officer=principal.subject,
            now=now,
        )
        ctx.record(
            conn,
            ServiceEvent(
                "watchlist.enrol",
                _actor(principal),
                (f"watchlist:{entry_id}",),
                {
                    "source": source,
                    "legal_basis": legal_basis[:200],
                    "category": category,
                    "status": "pending",
                },
            ),
        )
        entry = watchlist.get_entry(conn, entry_id)
    return entry.public(now)


@router.post("/watchlist", status_code=201, tags=["watchlist"])
def enrol_from_template(
    body: EnrolTemplate, request: Request, ctx: CtxDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Propose a watchlist entry from a template (pending until a supervisor approves)."""
    authorize(request, ctx, principal, "watchlist.enrol", {"legal_basis": body.legal_basis})
    template = watchlist.normalise_template(body.template)
    return _enrol(ctx, principal, template, body, "template")


@router.post("/watchlist/photos", status_code=201, tags=["watchlist"])
def enrol_from_photos(
    body: EnrolPhotos, request: Request, ctx: CtxDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Propose an entry from 1-5 photos, embedded on the service with the gate pipeline.

    The template is the normalised mean of the photos' embeddings; photos are not kept.
    """
    authorize(request, ctx, principal, "watchlist.enrol", {"legal_basis": body.legal_basis})
    if ctx.face_embedder is None:
        raise UnavailableError("face pipeline is not available", code="pipeline-unavailable")
    vectors = [
        ctx.face_embedder(b64decode_field(photo, f"photos[{i}]", _PHOTO_MAX))
        for i, photo in enumerate(body.photos)
    ]
    dims = {len(v) for v in vectors}
    if len(dims) != 1:
        raise MalformedRequestError("photos produced templates of different dimensions")
    import numpy as np

    mean = np.mean(np.asarray(vectors, dtype=np.float64), axis=0)
    template = watchlist.normalise_template(mean.tolist())
    return _enrol(ctx, principal, template, body, "photos")


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
    from service.lifecycle import rebuild_gallery

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
    with ctx.transaction() as conn:
        entry = watchlist.get_entry(conn, entry_id)
        decision = authorize(
            request, ctx, principal, "watchlist.approve", {"enrolled_by": entry.created_by}
        )
        watchlist.approve_entry(conn, entry_id, principal.subject, now)
        ctx.record(
            conn,
            ServiceEvent(
                "watchlist.approve",
                _actor(principal),
                (f"watchlist:{entry_id}",),
                {"legal_basis": entry.legal_basis[:200]},
                decision_id=decision.decision_id,
                bundle_digest=decision.bundle_digest,
            ),
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
    decision = authorize(
        request, ctx, principal, "watchlist.renew", {"legal_basis": body.legal_basis}
    )
    with ctx.transaction() as conn:
        watchlist.renew_entry(
            conn, entry_id, principal.subject, body.legal_basis, body.expires_at, now
        )
        ctx.record(
            conn,
            ServiceEvent(
                "watchlist.renew",
                _actor(principal),
                (f"watchlist:{entry_id}",),
                {"legal_basis": body.legal_basis[:200], "expires_at": body.expires_at.isoformat()},
                decision_id=decision.decision_id,
                bundle_digest=decision.bundle_digest,
            ),
        )
    return _after_watchlist_change(ctx, entry_id, now)


@router.post("/watchlist/{entry_id}/revoke", tags=["watchlist"])
def revoke_watchlist_entry(
    entry_id: IdPath,
    body: RevokeRequest,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require("watchlist.revoke"))],
) -> dict[str, Any]:
    """Revoke an entry; its sealed template is deleted at once."""
    now = ctx.now()
    with ctx.transaction() as conn:
        watchlist.revoke_entry(conn, entry_id, principal.subject, body.reason, now)
        ctx.record(
            conn,
            ServiceEvent(
                "watchlist.revoke",
                _actor(principal),
                (f"watchlist:{entry_id}",),
                {"reason": body.reason[:200]},
            ),
        )
    return _after_watchlist_change(ctx, entry_id, now)


def review_state(ctx: CtxDep, reviews: list[dict[str, str]]) -> str:
    """``veilmatch.alert.review``: pending, confirmed or dismissed (fails closed: pending)."""
    decision = ctx.policy.evaluate("veilmatch.alert.review", {"reviews": reviews})
    result = decision.result if isinstance(decision.result, dict) else {}
    state = result.get("state")
    return state if state in ("confirmed", "dismissed") else "pending"


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

    async def events() -> AsyncIterator[dict[str, str]]:
        yield {"event": "ready", "data": "{}"}
        async for item in ctx.bus.subscribe():
            yield {"event": "alert", "data": json.dumps(item)}

    return EventSourceResponse(events(), ping=15)


@router.get("/alerts/{alert_id}", tags=["alerts"])
def get_alert(
    alert_id: IdPath,
    ctx: CtxDep,
    _p: Annotated[Principal, Depends(require("alert.read"))],
) -> dict[str, Any]:
    """One alert with its reviews."""
    with ctx.transaction() as conn:
        return alert_store.get_alert(conn, alert_id)


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
    with ctx.transaction() as conn:
        alert_store.get_alert(conn, alert_id)  # 404 before policy, so ids are not probed
        reviewers = [
            r.reviewer
            for r in conn.execute(
                sa.select(alert_reviews.c.reviewer).where(alert_reviews.c.alert_id == alert_id)
            )
        ]
        decision = authorize(request, ctx, principal, "alert.review", {"reviewers": reviewers})
        status = alert_store.review_alert(
            conn,
            alert_id,
            principal.subject,
            principal.role,
            body.verdict,
            body.reason,
            now,
            decide=lambda reviews: review_state(ctx, reviews),
        )
        ctx.record(
            conn,
            ServiceEvent(
                "alert.review",
                _actor(principal),
                (f"alert:{alert_id}",),
                {"verdict": body.verdict, "reason": body.reason[:200], "status": status},
                decision_id=decision.decision_id,
                bundle_digest=decision.bundle_digest,
            ),
        )
        result = alert_store.get_alert(conn, alert_id)
    ctx.bus.publish({"id": alert_id, "status": status, "kind": "review"})
    return result

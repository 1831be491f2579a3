"""Officer pages: the live alert queue, one alert with its decision trail and review
form, and the watchlist (enrol, approve, renew, revoke).

State changes go through the staff API's own route functions (``service.api_staff``),
so the console authorises, records and audits exactly as the API does; the console
adds only its page action (``console.alerts``, ``console.watchlist``) in front.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from sse_starlette import EventSourceResponse

from service import alerts as alert_store
from service import api_staff, watchlist
from service.accounts import Principal
from service.console.legal import versions_for
from service.console.session import FormSessionDep, SessionDep, allowed, require_page
from service.console.web import ConsoleRoute, render, see_other
from service.deps import CtxDep
from service.errors import MalformedRequestError, NotFoundError, ServiceError
from service.schemas import EnrolPhotos, EnrolTemplate, RenewRequest, ReviewRequest, RevokeRequest

__all__ = ["parse_template_upload", "review_guidance", "router"]

router = APIRouter(route_class=ConsoleRoute)
IdPath = api_staff.IdPath
#: A live stream ends after this long; the browser reconnects (and re-checks the session).
STREAM_LIFETIME: Final = dt.timedelta(minutes=5)
_TEXT = Annotated[str, Form(min_length=1, max_length=500)]
_DONE = {
    "confirm": "Your confirmation was recorded.",
    "dismiss": "Your dismissal was recorded.",
    "enrol": "Entry proposed. It stays pending until a supervisor (not you) approves it.",
    "approve": "Entry approved; the gallery was rebuilt.",
    "renew": "Entry renewed.",
    "revoke": "Entry revoked; its template was deleted.",
}


# --- alerts ----------------------------------------------------------------------------


def _queue(ctx: CtxDep) -> dict[str, list[dict[str, Any]]]:
    with ctx.transaction() as conn:
        return {
            "open": alert_store.list_alerts(conn, "open", 200),
            "recent": [a for a in alert_store.list_alerts(conn, None, 50) if a["status"] != "open"][
                :20
            ],
        }


@router.get("/alerts")
def alert_queue(request: Request, ctx: CtxDep, principal: SessionDep) -> Response:
    """Open alerts (live) and recently closed ones."""
    require_page(request, ctx, principal, "console.alerts", "alert.read")
    return render(request, "alerts.html", _queue(ctx))


@router.get("/alerts/rows")
def alert_rows(request: Request, ctx: CtxDep, principal: SessionDep) -> Response:
    """The queue's table body alone (the page script swaps it in on every event)."""
    require_page(request, ctx, principal, "console.alerts", "alert.read")
    return render(request, "alert_rows.html", _queue(ctx))


@router.get("/alerts/stream")
async def alert_stream(request: Request, ctx: CtxDep, principal: SessionDep) -> Response:
    """Server-Sent Events: ``alert`` whenever an alert is raised or reviewed."""
    require_page(request, ctx, principal, "console.alerts", "alert.read")
    deadline = ctx.now() + STREAM_LIFETIME

    async def events() -> AsyncIterator[dict[str, str | int]]:
        yield {"event": "ready", "data": "{}", "retry": 3000}
        async for item in ctx.bus.subscribe():
            safe = {k: str(item.get(k, "")) for k in ("id", "status", "kind", "gate_id")}
            yield {"event": "alert", "data": json.dumps(safe)}
            if ctx.now() >= deadline or await request.is_disconnected():
                return

    return EventSourceResponse(events(), ping=15)


def review_guidance(
    alert: dict[str, Any], me: str, required: int = alert_store.REQUIRED_CONFIRMATIONS
) -> dict[str, Any]:
    """What the review form should say and allow for reviewer ``me``.

    Keys: ``confirmations`` (count), ``required``, ``reviewed_by_me`` (bool),
    ``can_review`` (bool), ``message`` (plain text for the page).
    """
    reviews = alert["reviews"]
    confirmers = [r["reviewer"] for r in reviews if r["verdict"] == "confirm"]
    mine = any(r["reviewer"] == me for r in reviews)
    if alert["status"] == "actionable":
        message = (
            f"Confirmed by {len(set(confirmers))} different people "
            f"({', '.join(confirmers)}): the alert is actionable."
        )
    elif alert["status"] == "dismissed":
        message = "This alert was dismissed; no further review is possible."
    elif mine:
        message = (
            "You have reviewed this alert. The second confirmation must come from a "
            "different person."
        )
    elif confirmers:
        message = (
            f"{len(confirmers)} of {required} confirmations recorded (by "
            f"{', '.join(confirmers)}). The second confirmation must come from a different "
            "person than the first."
        )
    else:
        message = (
            f"No reviews yet. Acting on a match needs {required} confirmations by different "
            "people; one dismissal closes the alert."
        )
    return {
        "confirmations": len(confirmers),
        "required": required,
        "reviewed_by_me": mine,
        "can_review": alert["status"] == "open" and not mine,
        "message": message,
    }


def _alert_page(
    request: Request,
    ctx: CtxDep,
    principal: Principal,
    alert_id: str,
    error: str | None = None,
    status: int = 200,
) -> Response:
    with ctx.transaction() as conn:
        alert = alert_store.get_alert(conn, alert_id)
        now = ctx.now()
        entries: list[dict[str, Any]] = []
        for entry_id in alert["entry_ids"]:
            try:
                entries.append(watchlist.get_entry(conn, entry_id).public(now))
            except NotFoundError:
                entries.append({"id": entry_id, "missing": True})
    done = request.query_params.get("done")
    return render(
        request,
        "alert.html",
        {
            "alert": alert,
            "entries": entries,
            "guide": review_guidance(alert, principal.subject),
            "error": error,
            "notice": _DONE.get(done or ""),
        },
        status=status,
    )


@router.get("/alerts/{alert_id}")
def alert_page(alert_id: IdPath, request: Request, ctx: CtxDep, principal: SessionDep) -> Response:
    """One alert: matched entries (enrolled photo reference), decision trail, review form."""
    require_page(request, ctx, principal, "console.alerts", "alert.read", "watchlist.read")
    return _alert_page(request, ctx, principal, alert_id)


@router.post("/alerts/{alert_id}/review")
async def review(
    alert_id: IdPath,
    request: Request,
    ctx: CtxDep,
    principal: FormSessionDep,
    verdict: Annotated[str, Form(pattern=r"^(confirm|dismiss)$")],
    reason: _TEXT,
) -> Response:
    """Confirm or dismiss (through the API's review route: policy, two-person rule, audit)."""
    from fastapi.concurrency import run_in_threadpool

    require_page(request, ctx, principal, "console.alerts")
    body = ReviewRequest(verdict=verdict, reason=reason)  # type: ignore[arg-type]
    try:
        await run_in_threadpool(api_staff.review_alert, alert_id, body, request, ctx, principal)
    except ServiceError as err:
        if err.status == 404:
            raise
        if err.status == 403:
            await request.app.state.on_denial(request, err)
        return await run_in_threadpool(
            _alert_page, request, ctx, principal, alert_id, err.detail, err.status
        )
    return see_other(f"/console/alerts/{alert_id}?done={verdict}")


# --- watchlist -------------------------------------------------------------------------


def parse_template_upload(data: bytes) -> list[float]:
    """A template from an uploaded file.

    Accepted: a JSON array of numbers, an object ``{"template": [...]}``, or one record
    of ``veilmatch gate embed --json`` (the first face with a template). Raises
    ``MalformedRequestError`` otherwise; the values are checked and normalised later by
    :func:`service.watchlist.normalise_template`.
    """
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedRequestError("the template file is not JSON") from None
    if isinstance(doc, dict) and isinstance(doc.get("faces"), list):
        faces = [f for f in doc["faces"] if isinstance(f, dict) and f.get("template")]
        doc = faces[0] if faces else None
    if isinstance(doc, dict):
        doc = doc.get("template")
    if not isinstance(doc, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in doc
    ):
        raise MalformedRequestError("the template file holds no list of numbers")
    return [float(v) for v in doc]


def _expiry(day: dt.date) -> dt.datetime:
    """Entries stay valid through the chosen day (UTC)."""
    return dt.datetime.combine(day, dt.time(23, 59, 59), dt.UTC)


@router.get("/watchlist")
def watchlist_page(request: Request, ctx: CtxDep, principal: SessionDep) -> Response:
    """Entries (metadata only, never templates) and the enrolment form."""
    require_page(request, ctx, principal, "console.watchlist", "watchlist.read")
    now = ctx.now()
    with ctx.transaction() as conn:
        entries = [e.public(now) for e in watchlist.list_entries(conn, 500, 0)]
    alert_params = versions_for(ctx).active().data.get("params.alert", {})
    # Which forms to show (the forms require a legal basis; approval is asked per entry
    # with its enroller). Each action is authorised again with its real facts when it runs.
    can = {
        action: allowed(ctx, principal, f"watchlist.{action}", {"legal_basis": "given"})
        for action in ("enrol", "renew", "revoke")
    }
    approvable = {
        e["id"]
        for e in entries
        if e["status"] == "pending"
        and allowed(ctx, principal, "watchlist.approve", {"enrolled_by": e["created_by"]})
    }
    done = request.query_params.get("done")
    return render(
        request,
        "watchlist.html",
        {
            "entries": entries,
            "can": can,
            "approvable": approvable,
            "categories": sorted(alert_params.get("categories", {})),
            "legal_bases": alert_params.get("legal_bases", {}),
            "default_expiry": (now + dt.timedelta(days=180)).date().isoformat(),
            "min_expiry": (now + dt.timedelta(days=1)).date().isoformat(),
            "notice": _DONE.get(done or ""),
            "photos_enabled": ctx.face_embedder is not None,
        },
    )


@router.post("/watchlist")
async def enrol(
    request: Request,
    ctx: CtxDep,
    principal: FormSessionDep,
    subject_ref: Annotated[str, Form(min_length=1, max_length=128)],
    category: Annotated[str, Form(pattern=r"^[a-z_]{1,64}$")],
    legal_basis: _TEXT,
    expires_on: Annotated[dt.date, Form()],
    template_file: Annotated[UploadFile | None, File()] = None,
    photos: Annotated[list[UploadFile] | None, File()] = None,
) -> Response:
    """Propose an entry from a template file or from photos (pending until approved)."""
    from fastapi.concurrency import run_in_threadpool

    require_page(request, ctx, principal, "console.watchlist")
    images = [await p.read() for p in photos or [] if p.filename]
    images = [i for i in images if i]
    common = {
        "subject_ref": subject_ref,
        "legal_basis": legal_basis,
        "category": category,
        "expires_at": _expiry(expires_on),
    }
    if images:
        body_p = EnrolPhotos(photos=[base64.b64encode(i).decode() for i in images], **common)
        await run_in_threadpool(api_staff.enrol_from_photos, body_p, request, ctx, principal)
    else:
        data = await template_file.read() if template_file is not None else b""
        if not data:
            raise MalformedRequestError("choose a template file or at least one photo")
        body_t = EnrolTemplate(template=parse_template_upload(data), **common)
        await run_in_threadpool(api_staff.enrol_from_template, body_t, request, ctx, principal)
    return see_other("/console/watchlist?done=enrol")


@router.post("/watchlist/{entry_id}/approve")
def approve(entry_id: IdPath, request: Request, ctx: CtxDep, principal: FormSessionDep) -> Response:
    """Approve a pending entry (a supervisor other than the enroller)."""
    require_page(request, ctx, principal, "console.watchlist")
    api_staff.approve_watchlist_entry(entry_id, request, ctx, principal)
    return see_other("/console/watchlist?done=approve")


@router.post("/watchlist/{entry_id}/renew")
def renew(
    entry_id: IdPath,
    request: Request,
    ctx: CtxDep,
    principal: FormSessionDep,
    legal_basis: _TEXT,
    expires_on: Annotated[dt.date, Form()],
) -> Response:
    """Extend an entry, restating its legal basis."""
    require_page(request, ctx, principal, "console.watchlist")
    body = RenewRequest(legal_basis=legal_basis, expires_at=_expiry(expires_on))
    api_staff.renew_watchlist_entry(entry_id, body, request, ctx, principal)
    return see_other("/console/watchlist?done=renew")


@router.post("/watchlist/{entry_id}/revoke")
def revoke(
    entry_id: IdPath,
    request: Request,
    ctx: CtxDep,
    principal: FormSessionDep,
    reason: _TEXT,
) -> Response:
    """Revoke an entry; its sealed template is deleted at once."""
    require_page(request, ctx, principal, "console.watchlist", "watchlist.revoke")
    api_staff.revoke_watchlist_entry(
        entry_id, RevokeRequest(reason=reason), request, ctx, principal
    )
    return see_other("/console/watchlist?done=revoke")

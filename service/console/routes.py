"""Console entry points: sign-in, sign-out, the landing page and static files.

The section routers (officers, oversight, legal) are included here, so the staff app
mounts the whole console with ``app.include_router(console.router)``.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, Response

from service.accounts import authenticate
from service.console import legal, officer, oversight
from service.console.session import (
    FormSessionDep,
    SessionDep,
    clear_cookie,
    new_csrf_token,
    require_page,
    set_cookie,
)
from service.console.web import ConsoleRoute, render, see_other, static_file
from service.deps import CtxDep
from service.errors import AuthenticationError

__all__ = ["router"]

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
_NEXT = re.compile(r"^/console/[A-Za-z0-9/_.?=&%:-]*$")
_REASONS = {
    "expired": "Your session expired. Please sign in again.",
    "invalid": "Your session is no longer valid. Please sign in again.",
    "signed-out": "You have signed out.",
}


def _safe_next(target: str | None) -> str:
    """Only console paths on this origin (no ``//host`` or scheme) are followed."""
    if target and _NEXT.match(target) and "//" not in target:
        return target
    return "/console/"


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    """The console stylesheet and script."""
    return static_file(name)


@router.get("/login")
def login_page(request: Request, next: str | None = None, reason: str | None = None) -> Response:
    """The sign-in form."""
    return render(
        request,
        "login.html",
        {"next": _safe_next(next), "message": _REASONS.get(reason or "")},
    )


@router.post("/login")
async def login(
    request: Request,
    ctx: CtxDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form(max_length=500)] = "/console/",
) -> Response:
    """Check the password; on success set the session cookies and go to ``next``."""
    from fastapi.concurrency import run_in_threadpool

    def check() -> object:
        with ctx.transaction() as conn:
            return authenticate(conn, username, password)

    try:
        principal = await run_in_threadpool(check)
    except AuthenticationError as err:
        hook = getattr(request.app.state, "on_denial", None)
        if hook is not None:
            await hook(request, err)
        return render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "Invalid username or password."},
            status=401,
        )
    from service.accounts import Principal

    assert isinstance(principal, Principal)
    token, _expires = ctx.tokens.issue(principal, ctx.now())
    response = see_other(_safe_next(next))
    set_cookie(response, token, ctx.tokens.ttl_s, new_csrf_token())
    return response


@router.post("/logout")
def logout(request: Request, _p: FormSessionDep) -> Response:
    """End the session in this browser (the token itself lapses within its TTL)."""
    response = see_other("/console/login?reason=signed-out")
    clear_cookie(response)
    request.state.console_renewed = None
    return response


@router.get("/")
def home(request: Request, ctx: CtxDep, principal: SessionDep) -> Response:
    """Landing page: the sections this role may open."""
    require_page(request, ctx, principal, "console.home")
    return render(request, "home.html", {"bundle_digest": ctx.policy.bundle_digest})


router.include_router(officer.router)
router.include_router(oversight.router)
router.include_router(legal.router)

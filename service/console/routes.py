"""Console entry points: sign-in, sign-out, the landing page and static files.

The section routers (officers, oversight, legal) are included here, so the staff app
mounts the whole console with ``app.include_router(console.router)``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from service.console import legal, officer, oversight
from service.console.session import (
    FormSessionDep,
    SessionDep,
    check_login_form,
    clear_cookie,
    login_csrf,
    new_csrf_token,
    require_page,
    set_cookie,
    set_login_csrf,
)
from service.console.web import ConsoleRoute, render, see_other, static_file
from service.deps import CtxDep
from service.errors import AuthenticationError, ForbiddenError, ServiceError
from service.signin import LoginLockedError, client_address, sign_in

__all__ = ["router"]

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
_NEXT = re.compile(r"^/console/[A-Za-z0-9/_.?=&%:-]*$")
_REASONS = {
    "expired": "Your session expired. Please sign in again.",
    "invalid": "Your session is no longer valid. Please sign in again.",
    "signed-out": "You have signed out.",
}
_STALE: Final = "The sign-in form expired or came from another site. Please try again."


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
    """The sign-in form (with its CSRF value, also set as a cookie)."""
    return _login_form(request, next, message=_REASONS.get(reason or ""))


def _login_form(
    request: Request,
    next: str | None,
    *,
    message: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    token = login_csrf(request)
    context = {"next": _safe_next(next), "message": message, "error": error, "csrf": token}
    response = render(request, "login.html", context, status=status)
    set_login_csrf(response, token)
    return response


async def _report(request: Request, err: ServiceError) -> None:
    hook = getattr(request.app.state, "on_denial", None)
    if hook is not None:
        await hook(request, err)


@router.post("/login")
async def login(
    request: Request,
    ctx: CtxDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form(max_length=500)] = "/console/",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Check origin, CSRF value and password (throttled); on success set the session
    cookies and go to ``next``."""
    try:
        check_login_form(request, csrf)
        principal = await run_in_threadpool(
            sign_in, ctx, username, password, client_address(request)
        )
    except ForbiddenError as err:
        await _report(request, err)
        return _login_form(request, next, error=_STALE, status=403)
    except LoginLockedError as err:
        await _report(request, err)
        response = _login_form(request, next, error=_locked(err.retry_after_s), status=429)
        response.headers["Retry-After"] = str(err.retry_after_s)
        return response
    except AuthenticationError as err:
        await _report(request, err)
        return _login_form(request, next, error="Invalid username or password.", status=401)
    token, _expires = ctx.tokens.issue(principal, ctx.now())
    response = see_other(_safe_next(next))
    set_cookie(response, token, ctx.tokens.ttl_s, new_csrf_token())
    return response


def _locked(retry_after_s: int) -> str:
    minutes = max(1, math.ceil(retry_after_s / 60))
    return f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes > 1 else ''}."


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

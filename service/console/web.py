"""Console plumbing: templates, HTML error pages, security headers, static files.

Every console route uses :class:`ConsoleRoute`, which turns the service's errors into
HTML pages instead of ``application/problem+json``: a missing or expired session
redirects to the login page, a policy denial renders a 403 page (and is audited as
``access.denied`` through the same hook the API uses), other errors render their
message. It also sets the console's Content-Security-Policy (scripts, styles and
images from this origin only, no inline script) and renews the session cookie.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from core.errors import VeilmatchError
from service.errors import AuthenticationError, ServiceError
from service.problems import to_service_error

__all__ = [
    "CONSOLE_CSP",
    "ConsoleRoute",
    "LoginRequiredError",
    "render",
    "see_other",
    "static_file",
]

log = logging.getLogger("veilmatch.console")
_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(_HERE / "templates"))
templates.env.autoescape = True

#: Same-origin scripts, styles and images only; no inline script, no framing, forms
#: post back here only. Inline SVG charts are markup, so ``img-src data:`` is not needed.
CONSOLE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: The only files served under ``/console/static/`` (no path from the request is opened).
_STATIC: Final = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}


class LoginRequiredError(AuthenticationError):
    """No console session cookie: the browser is sent to the login page."""

    code = "login-required"


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """Render template ``name`` with the signed-in principal and CSRF token available."""
    full = {
        "principal": getattr(request.state, "principal", None),
        "csrf": getattr(request.state, "console_csrf", ""),
        "nav": getattr(request.state, "console_nav", ()),
        **(context or {}),
    }
    response: HTMLResponse = templates.TemplateResponse(request, name, full, status_code=status)
    return response


def see_other(url: str) -> RedirectResponse:
    """A 303 redirect (after a form post, the browser GETs ``url``)."""
    return RedirectResponse(url, status_code=303)


def static_file(name: str) -> FileResponse:
    """One of the console's own static files, or 404."""
    media = _STATIC.get(name)
    if media is None:
        raise HTTPException(404)
    return FileResponse(_HERE / "static" / name, media_type=media)


def _login_redirect(request: Request, reason: str | None) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    url = "/console/login?next=" + quote(target, safe="")
    if reason:
        url += "&reason=" + reason
    if request.method != "GET":
        url = "/console/login" + (f"?reason={reason}" if reason else "")
    response = see_other(url)
    from service.console.session import clear_cookie

    clear_cookie(response)
    return response


async def _report_denial(request: Request, err: ServiceError) -> None:
    hook = getattr(request.app.state, "on_denial", None)
    if hook is not None:
        await hook(request, err)


async def _error_page(request: Request, err: ServiceError) -> Response:
    if isinstance(err, LoginRequiredError):
        return _login_redirect(request, None)
    if isinstance(err, AuthenticationError):
        await _report_denial(request, err)
        return _login_redirect(request, "expired" if err.code == "token-expired" else "invalid")
    if err.status == 403:
        await _report_denial(request, err)
    return render(
        request,
        "error.html",
        {"status": err.status, "code": err.code, "detail": err.detail},
        status=err.status,
    )


class ConsoleRoute(APIRoute):
    """An API route whose errors become HTML pages and whose responses carry the CSP."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except VeilmatchError as exc:
                response = await _error_page(request, to_service_error(exc))
            except (RequestValidationError, ValidationError) as exc:
                fields = sorted(
                    {
                        ".".join(str(p) for p in e.get("loc", ()) if p != "body")
                        for e in exc.errors()
                    }
                )
                err = ServiceError("please check: " + ", ".join(f for f in fields if f)[:300])
                err.status, err.code = 422, "validation-failed"
                response = await _error_page(request, err)
            renewed = getattr(request.state, "console_renewed", None)
            if renewed is not None:
                from service.console.session import set_cookie

                token, _expires = renewed
                set_cookie(
                    response,
                    token,
                    request.app.state.ctx.tokens.ttl_s,
                    request.state.console_csrf or None,
                )
            response.headers["content-security-policy"] = CONSOLE_CSP
            # Same-origin referrers only: with the API's ``no-referrer`` the browser
            # would send ``Origin: null`` on form posts and the Origin check could not work.
            response.headers["referrer-policy"] = "same-origin"
            return response

        return handler

"""Console sessions: the service's own bearer token, carried in a hardened cookie.

Signing in checks the password with :func:`service.accounts.authenticate` (argon2id,
constant time for unknown users) and stores a token from the context's
:class:`~service.accounts.TokenIssuer` in the cookie ``__Host-veilmatch-console``
(``Secure``, ``HttpOnly``, ``SameSite=Strict``, ``Path=/``). The session therefore lasts
as long as a token (``TOKEN_TTL_S``), and every authenticated request renews it, so a
session ends after that long without activity.

State-changing requests are protected three ways: the strict same-site cookie, an
``Origin`` check, and a form field ``csrf`` that must equal the random value in a second
cookie, ``__Host-veilmatch-csrf`` (double submit: another site can neither read nor set
a ``__Host-`` cookie). The sign-in form is protected the same way, before any session
exists: the login page sets that cookie and puts its value in the form, and the value
is replaced by a fresh one at sign-in.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Annotated, Any, Final

from fastapi import Depends, Request, Response

from service.accounts import Principal
from service.context import ServiceContext
from service.deps import CtxDep, authorize
from service.errors import ForbiddenError
from service.ports import PolicyDecision

__all__ = [
    "COOKIE",
    "FormSessionDep",
    "SessionDep",
    "allowed",
    "check_login_form",
    "clear_cookie",
    "login_csrf",
    "new_csrf_token",
    "open_session",
    "require_page",
    "set_cookie",
    "set_login_csrf",
]

COOKIE: Final = "__Host-veilmatch-console"
CSRF_COOKIE: Final = "__Host-veilmatch-csrf"
#: Seconds the sign-in form's CSRF cookie lives before the form must be reloaded.
LOGIN_FORM_TTL_S: Final = 3600
_CSRF_VALUE: Final = re.compile(r"[0-9a-f]{64}")

#: Console sections in navigation order: (console action, path, label).
SECTIONS: Final = (
    ("console.alerts", "/console/alerts", "Alerts"),
    ("console.watchlist", "/console/watchlist", "Watchlist"),
    ("console.audit", "/console/audit", "Audit log"),
    ("console.audit", "/console/audit/checkpoints", "Checkpoints"),
    ("console.stats", "/console/stats", "Statistics"),
    ("console.audit", "/console/audit/policies", "Policies in force"),
    ("console.policies", "/console/policies", "Policy documentation"),
    ("console.policies", "/console/policies/history", "Policy history"),
)


def new_csrf_token() -> str:
    """A fresh random CSRF value (256 bits, hex), set once per sign-in."""
    return secrets.token_hex(32)


def set_cookie(response: Response, token: str, lifetime_s: int, csrf: str | None = None) -> None:
    """Store the session token and, at sign-in, the CSRF value, for ``lifetime_s`` seconds.

    A relative ``Max-Age``, not an absolute ``Expires``: the browser's clock and the
    service's need not agree (the token itself carries the authoritative expiry).
    """
    for name, value in ((COOKIE, token), (CSRF_COOKIE, csrf)):
        if value is not None:
            response.set_cookie(
                name,
                value,
                max_age=lifetime_s,
                path="/",
                secure=True,
                httponly=True,
                samesite="strict",
            )


def login_csrf(request: Request) -> str:
    """The CSRF value for the sign-in form: the browser's current one if it has a
    well-formed one (so another open tab's form stays valid), else a fresh one."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if _CSRF_VALUE.fullmatch(current):
        return current
    return new_csrf_token()


def set_login_csrf(response: Response, value: str) -> None:
    """Store the sign-in form's CSRF value (before any session exists)."""
    response.set_cookie(
        CSRF_COOKIE,
        value,
        max_age=LOGIN_FORM_TTL_S,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def check_login_form(request: Request, supplied: str) -> None:
    """Refuse a sign-in post from another origin or without this browser's CSRF value.

    Login CSRF: without this, another site's page could post *its* credentials and sign
    the victim's browser into the attacker's account. ``ForbiddenError`` (``csrf-failed``).
    """
    expected = request.cookies.get(CSRF_COOKIE, "")
    if (
        not _same_origin(request)
        or not _CSRF_VALUE.fullmatch(expected)
        or not hmac.compare_digest(supplied.encode(), expected.encode())
    ):
        raise ForbiddenError("the form is stale or came from another site", code="csrf-failed")


def clear_cookie(response: Response) -> None:
    """Forget the session in the browser."""
    for name in (COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")


def allowed(
    ctx: ServiceContext,
    principal: Principal,
    action: str,
    resource: Mapping[str, Any] | None = None,
) -> bool:
    """Whether the access policy allows ``action`` (to show links and forms; not audited).

    The action itself is authorised again, with its real resource facts, when it runs.
    """
    try:
        ctx.authorize(principal, action, resource)
    except ForbiddenError:
        return False
    return True


def open_session(request: Request, ctx: ServiceContext, principal: Principal, csrf: str) -> None:
    """Make ``principal`` the request's user: CSRF value and navigation for templates."""
    request.state.principal = principal
    request.state.console_csrf = csrf
    permitted = {action: allowed(ctx, principal, action) for action in {a for a, _, _ in SECTIONS}}
    request.state.console_nav = tuple(
        (path, label) for action, path, label in SECTIONS if permitted[action]
    )


def session_principal(request: Request, ctx: CtxDep) -> Principal:
    """The signed-in staff member; ``LoginRequiredError`` without a session cookie."""
    from service.console.web import LoginRequiredError

    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequiredError("sign in to use the console")
    now = ctx.now()
    principal = ctx.tokens.verify(token, now)  # AuthenticationError when forged or expired
    # Sliding session: every authenticated request gets a fresh token, so the session
    # ends after TOKEN_TTL_S of inactivity.
    request.state.console_renewed = ctx.tokens.issue(principal, now)
    open_session(request, ctx, principal, request.cookies.get(CSRF_COOKIE, ""))
    return principal


SessionDep = Annotated[Principal, Depends(session_principal)]


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        # Browsers send Origin on every POST (console pages use the ``same-origin``
        # referrer policy, so it is never ``null`` from them); without one this is a
        # non-browser client, which the CSRF field still covers.
        return True
    expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return hmac.compare_digest(origin, expected)


async def form_principal(request: Request, principal: SessionDep) -> Principal:
    """The session principal of a form post whose origin and CSRF field check out."""
    form = await request.form()
    supplied = form.get("csrf")
    expected = request.state.console_csrf
    if (
        not _same_origin(request)
        or not expected
        or not isinstance(supplied, str)
        or not hmac.compare_digest(supplied.encode(), expected.encode())
    ):
        raise ForbiddenError("the form is stale or came from another site", code="csrf-failed")
    return principal


FormSessionDep = Annotated[Principal, Depends(form_principal)]


def require_page(
    request: Request, ctx: ServiceContext, principal: Principal, *actions: str
) -> PolicyDecision:
    """Authorise every action (a ``console.*`` page action and the API actions it uses).

    Raises ``ForbiddenError`` at the first denial; the console renders it as a 403
    page and audits it. Returns the last decision.
    """
    decision: PolicyDecision | None = None
    for action in actions:
        decision = authorize(request, ctx, principal, action)
    assert decision is not None
    return decision

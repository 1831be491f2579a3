"""FastAPI dependencies: the shared context, the staff principal, policy authorisation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from service.accounts import Principal
from service.context import ServiceContext
from service.errors import AuthenticationError
from service.ports import PolicyDecision

__all__ = ["CtxDep", "PrincipalDep", "authorize", "authorize_role", "require"]


def get_ctx(request: Request) -> ServiceContext:
    """The process's :class:`ServiceContext`."""
    ctx: ServiceContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[ServiceContext, Depends(get_ctx)]


def current_principal(
    request: Request,
    ctx: CtxDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The staff member named by a valid ``Authorization: Bearer`` token."""
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthenticationError("a bearer token is required", code="token-missing")
    principal = ctx.tokens.verify(authorization.removeprefix("Bearer ").strip(), ctx.now())
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def authorize(
    request: Request,
    ctx: ServiceContext,
    principal: Principal,
    action: str,
    resource: Mapping[str, Any] | None = None,
) -> PolicyDecision:
    """Authorise ``action`` through ``veilmatch.access``; remembers it for denial audits."""
    request.state.principal = principal
    request.state.action = action
    return ctx.authorize(principal, action, resource)


def authorize_role(
    request: Request, ctx: ServiceContext, principal: Principal, action: str
) -> None:
    """Policy before lookup (:meth:`ServiceContext.authorize_role`); remembers the action
    for denial audits."""
    request.state.principal = principal
    request.state.action = action
    ctx.authorize_role(principal, action)


def require(action: str) -> Callable[..., Principal]:
    """A dependency that authenticates the caller and authorises ``action`` (no resource)."""

    def dependency(request: Request, ctx: CtxDep, principal: PrincipalDep) -> Principal:
        authorize(request, ctx, principal, action)
        return principal

    dependency.__name__ = f"require_{action.replace('.', '_')}"
    return dependency

"""The one way a staff route changes state: authorise, change, record, in one transaction.

:func:`authorised_change` asks ``veilmatch.access`` inside the transaction that makes
the change, and builds the audit event from the decision that allowed it, so the
entry always carries that decision's id and bundle digest (no route can drop them by
authorising elsewhere). When the policy needs facts about the target, they are read in
the same transaction, after a role-level check (:meth:`ServiceContext.authorize_role`):
a caller who may not act on any target is refused before anything is looked up, so it
cannot tell an existing id from a missing one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy import Connection

from service.accounts import Principal
from service.context import ServiceContext
from service.deps import authorize, authorize_role
from service.ports import PolicyDecision, ServiceEvent

__all__ = ["authorised_change"]

T = TypeVar("T")
Facts = Mapping[str, Any] | Callable[[Connection], Mapping[str, Any]]


def authorised_change(
    request: Request,
    ctx: ServiceContext,
    principal: Principal,
    action: str,
    change: Callable[[Connection], T],
    event: Callable[[T, PolicyDecision], ServiceEvent],
    *,
    facts: Facts | None = None,
) -> T:
    """Authorise ``action``, run ``change`` and append ``event(result, decision)``, all in
    one transaction; returns ``change``'s result.

    ``facts`` are what the policy needs about the target: a mapping taken from the
    request, or a function reading them in the transaction (then the role is checked
    first, before the read). ``ForbiddenError`` if refused, nothing written.
    """
    if callable(facts):
        authorize_role(request, ctx, principal, action)
    with ctx.transaction() as conn:
        resource = facts(conn) if callable(facts) else facts
        decision = authorize(request, ctx, principal, action, resource)
        result = change(conn)
        ctx.record(conn, event(result, decision))
    return result

"""Gate request authentication: one FastAPI dependency, with an explicit nonce mode.

Every signed gate route (all but ``register``, which proves possession of the key it
encloses) declares ``Annotated[GateRequest, gate_auth(action, mode)]``. The dependency
reads the raw body, authenticates it (:func:`service.gates.check_request`: certificate,
signature, key state, unseen nonce), authorises ``action`` with ``veilmatch.access``
and hands the handler a :class:`GateRequest`. When the nonce is spent depends on the
mode, and is the point of naming it:

``NonceMode.BEFORE_WORK``
    The nonce is spent in its own committed transaction before the handler runs
    (heartbeat, key rotation): the request can never be replayed, even if its work fails.
``NonceMode.WITH_WORK``
    Nothing is written while checking (match, reveal: the hot path). The use case spends
    the nonce in the transaction that commits its records and audit leaves
    (:meth:`GateRequest.spend_in`). If the request ends without that — an error, or a
    stored reply to a retry — the dependency spends the nonce on its own before the
    answer goes out. Either way a request that was answered can never be replayed.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection

from service import gates as gate_registry
from service.accounts import Principal
from service.context import ServiceContext
from service.errors import GateRefusedError
from service.gates import GateIdentity
from service.ports import PolicyDecision
from service.tls import peer_certificate

__all__ = ["GateRequest", "NonceMode", "gate_auth", "gate_principal"]

log = logging.getLogger("veilmatch.gate_api")


class NonceMode(enum.Enum):
    """When an authenticated gate request's nonce is spent (see the module docstring)."""

    BEFORE_WORK = "before-work"
    WITH_WORK = "with-work"


@dataclass
class GateRequest:
    """An authenticated, authorised gate request: who, the raw body, and the access
    decision that allowed ``action``. ``now`` is the service time the request was
    checked at (UTC)."""

    identity: GateIdentity
    body: bytes
    content_type: str | None
    now: dt.datetime
    decision: PolicyDecision
    mode: NonceMode
    _spent_by_work: bool = field(default=False, repr=False)

    @property
    def spent_by_work(self) -> bool:
        """Whether :meth:`spend_in` was called (the work's transaction holds the nonce)."""
        return self._spent_by_work

    def spend_in(self, conn: Connection) -> None:
        """Spend the nonce inside ``conn``'s transaction (``WITH_WORK`` only), the one
        that commits the request's work."""
        if self.mode is not NonceMode.WITH_WORK:
            raise RuntimeError("the nonce of this request was spent before its work")
        gate_registry.spend_nonce(conn, self.identity, self.now)
        self._spent_by_work = True


def gate_principal(request: Request, gate_id: str, action: str) -> Principal:
    """The gate's principal, remembered on the request for denial audits."""
    principal = Principal(gate_id, "gate", kind="gate")
    request.state.principal = principal
    request.state.action = action
    return principal


def _spend_alone(ctx: ServiceContext, identity: GateIdentity, now: dt.datetime) -> None:
    """Spend the nonce of a request whose work did not (best effort: the answer stands)."""
    try:
        with ctx.transaction() as conn:
            gate_registry.spend_nonce(conn, identity, now)
    except Exception as exc:  # already spent by a concurrent copy, or the database is down
        log.warning("nonce not recorded", extra={"error_type": type(exc).__name__})


def _admit(
    ctx: ServiceContext,
    request: Request,
    body: bytes,
    action: str,
    mode: NonceMode,
    now: dt.datetime,
) -> tuple[GateIdentity, PolicyDecision]:
    """Authenticate then authorise (in a worker thread). A request that authenticated
    but was refused has its nonce spent before the refusal goes out."""
    cert = peer_certificate(request.scope)
    args = (cert, request.method, request.url.path, body, request.headers)
    if mode is NonceMode.BEFORE_WORK:
        with ctx.transaction() as conn:
            identity = gate_registry.authenticate_request(conn, *args, now=now)
    else:
        with ctx.reader() as conn:
            identity = gate_registry.check_request(conn, *args, now=now)
    principal = gate_principal(request, identity.gate_id, action)
    try:
        decision = ctx.authorize(principal, action, {"gate_id": identity.gate_id})
    except BaseException:
        if mode is NonceMode.WITH_WORK:
            _spend_alone(ctx, identity, now)
        raise
    return identity, decision


def _replayed(exc: BaseException) -> bool:
    return isinstance(exc, GateRefusedError) and exc.code == "request-replayed"


def gate_auth(action: str, mode: NonceMode) -> Any:
    """``Depends(...)`` authenticating a signed gate request and authorising ``action``.

    Scoped to the handler (``scope="function"``): its exit runs before the response is
    sent, so a ``WITH_WORK`` nonce not spent by the work is spent before the answer.
    """

    async def dependency(request: Request) -> AsyncIterator[GateRequest]:
        ctx: ServiceContext = request.app.state.ctx
        body = await request.body()
        now = ctx.now()
        identity, decision = await run_in_threadpool(_admit, ctx, request, body, action, mode, now)
        gate = GateRequest(identity, body, request.headers.get("content-type"), now, decision, mode)
        if mode is NonceMode.BEFORE_WORK:
            yield gate
            return
        try:
            yield gate
        except GeneratorExit:
            raise
        except BaseException as exc:
            if not _replayed(exc):
                await run_in_threadpool(_spend_alone, ctx, identity, now)
            raise
        if not gate.spent_by_work:
            await run_in_threadpool(_spend_alone, ctx, identity, now)

    dependency.__name__ = f"gate_{action.replace('.', '_')}"
    return Depends(dependency, scope="function")

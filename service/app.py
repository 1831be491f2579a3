"""FastAPI application factories: the staff app and the gate app, sharing one context.

The apps are thin wiring: routers live in ``api_*`` modules, domain errors become
problem responses in :mod:`service.problems`, middleware adds request ids, metrics,
body limits and security headers. Bodies are never logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine, text

import core
from core.db import make_engine
from core.migrate import is_up_to_date
from core.settings import Settings
from service import api_gate, api_oversight, api_staff, console, denials
from service.audit_events import access_denied
from service.context import ServiceContext
from service.docs_pages import add_docs_pages
from service.errors import AuthenticationError, ServiceError
from service.gates import claimed_gate
from service.metrics import (
    SCRAPE_TOKEN_FILE,
    ServiceMetrics,
    load_or_create_scrape_token,
    scrape_allowed,
)
from service.middleware import BodyLimitMiddleware, RequestContextMiddleware
from service.problems import install_problem_handlers
from service.signin import client_address
from service.tls import peer_certificate

__all__ = ["create_app", "create_gate_app"]

log = logging.getLogger("veilmatch.http")
_STAFF_LIMITS = {"/api/v1/watchlist/photos": 48 * 1024 * 1024}
_DEFAULT_LIMIT = 256 * 1024


def _health(engine: Engine) -> tuple[dict[str, Any], bool]:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        schema = "current" if is_up_to_date(engine) else "outdated"
        database = "ok"
    except Exception:
        database, schema = "unavailable", "unknown"
    healthy = database == "ok" and schema == "current"
    body = {
        "status": "ok" if healthy else "degraded",
        "version": core.__version__,
        "database": database,
        "schema": schema,
    }
    return body, healthy


def _add_ops_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        """Liveness: the process answers, the database answers, its schema is current."""
        body, healthy = _health(app.state.engine)
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/readyz", tags=["ops"])
    def readyz() -> JSONResponse:
        """Readiness: healthy, policy loaded and the gallery built (else 503)."""
        body, healthy = _health(app.state.engine)
        ctx: ServiceContext | None = getattr(app.state, "ctx", None)
        ready = healthy and ctx is not None and ctx.ready
        gallery = ctx.pool.current if ctx is not None else None
        body.update(
            ready=ready,
            gallery_version=gallery.version if gallery else None,
            queue_depth=ctx.pool.depth if ctx is not None else None,
        )
        return JSONResponse(body, status_code=200 if ready else 503)


async def _audit_denial(request: Request, err: ServiceError) -> None:
    """Record a refused request (401/403/gate refusal) as ``access.denied``.

    Before a gate request authenticates, the entry names the gate of the client
    certificate presented, never the gate id the request claims (see
    :func:`service.audit_events.access_denied`). On the staff listener a refusal
    without a principal is only counted (:mod:`service.denials`); the gate listener is
    behind mutual TLS, so only certificate holders reach it and each of its refusals is
    an entry.
    """
    ctx: ServiceContext | None = getattr(request.app.state, "ctx", None)
    if ctx is None:
        return
    ctx.metrics.denials.labels(err.code).inc()
    principal = getattr(request.state, "principal", None)
    route = request.scope.get("route")
    template = getattr(route, "path", None) or "unmatched"
    if principal is None and request.app.state.aggregate_denials:
        # Anyone can cause these: counted per source and window, not one entry each.
        what = f"{request.method} {template}"
        address = client_address(request)
        try:
            await run_in_threadpool(denials.record_unauthenticated, ctx, address, what, err.code)
        except Exception as exc:  # the refusal stands even if its count fails; say so
            log.error("denial count failed", extra={"error_type": type(exc).__name__})
        return
    cert = peer_certificate(request.scope)
    event = access_denied(
        principal,
        code=err.code,
        status=err.status,
        action=getattr(request.state, "action", None),
        route=template,
        method=request.method,
        certificate=(cert.common_name, cert.sha256) if cert is not None else None,
        claimed_gate=claimed_gate(request.headers),
    )

    def write() -> None:
        with ctx.transaction() as conn:
            ctx.record(conn, event)

    try:
        await run_in_threadpool(write)
    except Exception as exc:  # the refusal stands even if its record fails; say so
        log.error("denial audit failed", extra={"error_type": type(exc).__name__})


def _scrape_token(settings: Settings) -> str:
    if settings.metrics_token is not None and settings.metrics_token.get_secret_value():
        return settings.metrics_token.get_secret_value()
    assert settings.key_dir is not None
    return load_or_create_scrape_token(Path(settings.key_dir) / SCRAPE_TOKEN_FILE)


def _base_app(
    title: str, listener: str, ctx: ServiceContext | None, engine: Engine, settings: Settings
) -> FastAPI:
    app = FastAPI(title=title, version=core.__version__, docs_url=None, redoc_url=None)
    if settings.api_docs:  # development only: the pages load code from a CDN
        add_docs_pages(app)
    app.state.engine = engine
    app.state.ctx = ctx
    app.state.on_denial = _audit_denial
    app.state.aggregate_denials = listener == "staff"
    install_problem_handlers(app)
    _add_ops_routes(app)
    return app


def _wrap(app: FastAPI, listener: str, ctx: ServiceContext | None, limits: dict[str, int]) -> None:
    metrics = ctx.metrics if ctx is not None else ServiceMetrics()
    app.add_middleware(BodyLimitMiddleware, limits=limits, default=_DEFAULT_LIMIT)
    app.add_middleware(RequestContextMiddleware, listener=listener, metrics=metrics)


def create_app(
    settings: Settings, engine: Engine | None = None, ctx: ServiceContext | None = None
) -> FastAPI:
    """The staff app (officers, supervisors, oversight, legal, admins; server TLS).

    Without ``ctx`` only the ops routes work (health checks before wiring).
    """
    engine = engine or (ctx.engine if ctx is not None else make_engine(settings))
    app = _base_app("veilmatch staff API", "staff", ctx, engine, settings)
    app.state.settings = settings
    app.include_router(api_staff.router)
    app.include_router(api_oversight.router)
    app.include_router(api_oversight.stats_router)
    app.include_router(console.router)  # web console under /console/ (docs/console.md)

    scrape_token = _scrape_token(settings) if ctx is not None else ""

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def metrics(
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Response:
        """Prometheus text exposition, for the holder of the scrape token only."""
        if ctx is None or not scrape_allowed(authorization, scrape_token):
            raise AuthenticationError("a scrape token is required", code="scrape-unauthorized")
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    _wrap(app, "staff", ctx, _STAFF_LIMITS)
    return app


def create_gate_app(ctx: ServiceContext) -> FastAPI:
    """The gate app (mutual TLS; every request signed)."""
    app = _base_app("veilmatch gate API", "gate", ctx, ctx.engine, ctx.settings)
    app.state.settings = ctx.settings
    app.include_router(api_gate.router)
    _wrap(app, "gate", ctx, dict(api_gate.BODY_LIMITS))
    return app

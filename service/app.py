"""FastAPI application factory.

The app is thin wiring: routers live in their own modules, domain errors are mapped
to problem responses in one place, and every request gets an id that appears in the
logs and in the ``X-Request-ID`` response header. Bodies are never logged.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

import veilmatch
from veilmatch.db import make_engine
from veilmatch.logs import request_id_var
from veilmatch.migrate import is_up_to_date
from veilmatch.settings import Settings

log = logging.getLogger("veilmatch.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """Build the staff/gate application bound to ``settings`` and ``engine``."""
    app = FastAPI(title="veilmatch", version=veilmatch.__version__)
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings)

    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        supplied = request.headers.get("x-request-id", "")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            request_id_var.reset(token)
        response.headers["X-Request-ID"] = request_id
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        """Liveness and readiness: the database answers and its schema is current."""
        db_engine: Engine = app.state.engine
        try:
            with db_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            schema = "current" if is_up_to_date(db_engine) else "outdated"
            database = "ok"
        except Exception:
            database, schema = "unavailable", "unknown"
        healthy = database == "ok" and schema == "current"
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "version": veilmatch.__version__,
                "database": database,
                "schema": schema,
            },
            status_code=200 if healthy else 503,
        )

    return app

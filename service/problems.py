"""The one place that maps errors to HTTP ``application/problem+json`` (RFC 9457).

Body: ``{"type", "title", "status", "code", "detail", "request_id"}``. ``code`` is stable
and documented in ``docs/api.md``. ``detail`` comes from our own error messages, which
never contain payloads; validation errors name the failing field location only, never
the submitted value. A database that is unreachable, read-only or locked is 503
``database-unavailable`` with ``Retry-After``; other unexpected exceptions become a bare
500 with no detail.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from audit.errors import SequencerChainError
from core.errors import VeilmatchError
from core.logs import request_id_var
from crypto.errors import CryptoError, OversizedInputError
from crypto.signing import SigningError
from protocol.errors import FrameTooLargeError, ProtocolError
from service.errors import (
    GateRefusedError,
    MalformedRequestError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceError,
    UnavailableError,
)

__all__ = ["PROBLEM_TYPE_BASE", "install_problem_handlers", "problem_response", "to_service_error"]

log = logging.getLogger("veilmatch.http")
PROBLEM_TYPE_BASE = "https://veilmatch.invalid/problems/"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A problem+json response with the current request id."""
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
        "request_id": request_id_var.get(),
    }
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def to_service_error(exc: VeilmatchError) -> ServiceError:
    """Translate another component's error into the service error it means over HTTP."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, SigningError):
        return GateRefusedError(str(exc), code=exc.code)
    if isinstance(exc, FrameTooLargeError):
        return PayloadTooLargeError(str(exc))
    if isinstance(exc, ProtocolError):
        # The protocol's codes are the API's: malformed-frame, unsupported-wire-version,
        # malformed-request.
        return MalformedRequestError(str(exc), code=exc.code)
    if isinstance(exc, SequencerChainError):
        # The stored log is not the one the sequencer wrote (tampering or a second
        # writer): nothing can be recorded, so nothing is done. The operator is alarmed
        # (veilmatch_audit_sequencer_alarms_total); the client retries later.
        return UnavailableError(
            "audit log unavailable: its stored chain does not verify", code="audit-unavailable"
        )
    if isinstance(exc, OversizedInputError):
        err = ServiceError("ciphertext or key bundle too large", code="payload-too-large")
        err.status = 413
        return err
    if isinstance(exc, CryptoError):
        return ServiceError(
            f"{type(exc).__name__}: cryptographic input refused", code="crypto-refused"
        )
    err = ServiceError("request refused", code="refused")
    err.status = 400
    return err


def _response_for(exc: ServiceError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, OverloadedError | RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after_s)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="veilmatch"'
    return problem_response(exc.status, exc.code, exc.detail, headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``. Denials are reported to ``app.state.on_denial``."""

    async def on_veilmatch_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, VeilmatchError)
        err = to_service_error(exc)
        if err.status in (401, 403) or isinstance(err, GateRefusedError | RateLimitedError):
            hook = getattr(request.app.state, "on_denial", None)
            if hook is not None:
                await hook(request, err)
        return _response_for(err)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        where = sorted({".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()})
        return problem_response(
            422, "validation-failed", "invalid fields: " + ", ".join(where[:10])
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = "no such route" if exc.status_code == 404 else str(exc.detail)[:200]
        return problem_response(exc.status_code, code, detail, dict(exc.headers or {}))

    async def on_database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database is down, read-only or locked past its timeout: the transaction was
        # rolled back, nothing was acknowledged, and the client may retry. Type only in
        # the log: driver messages can quote SQL parameters.
        log.warning("database unavailable", extra={"error_type": type(exc).__name__})
        return problem_response(
            503, "database-unavailable", "database unavailable, retry later", {"Retry-After": "1"}
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Type only: the message of an unexpected exception might quote input.
        log.error("unhandled error", extra={"error_type": type(exc).__name__})
        return problem_response(500, "internal-error", "internal error")

    handlers: dict[Any, Any] = {
        VeilmatchError: on_veilmatch_error,
        RequestValidationError: on_validation_error,
        StarletteHTTPException: on_http_error,
        OperationalError: on_database_unavailable,
        InterfaceError: on_database_unavailable,
        Exception: on_unexpected,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)

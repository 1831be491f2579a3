"""ASGI middleware: request ids and access logs, metrics, body limits, security headers.

Pure ASGI (no ``BaseHTTPMiddleware``) so request bodies stream through untouched and
limits apply while reading, not after buffering an oversized body.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logs import request_id_var
from service.errors import PayloadTooLargeError
from service.metrics import ServiceMetrics
from service.problems import problem_response

__all__ = ["BodyLimitMiddleware", "RequestContextMiddleware"]

log = logging.getLogger("veilmatch.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

#: Headers added to every response. The APIs serve JSON only, so the CSP forbids all.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class RequestContextMiddleware:
    """Request id (``X-Request-ID``), one access-log line, latency metric, security headers.

    The log line carries method, route template, status and milliseconds: never the body,
    the query string or headers.
    """

    def __init__(self, app: ASGIApp, listener: str, metrics: ServiceMetrics) -> None:
        self.app = app
        self.listener = listener
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                supplied = value.decode("latin-1")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS:
                    if name not in present:  # a page's own CSP (console, docs) wins
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            labels = (self.listener, template, method, str(status))
            self.metrics.request_seconds.labels(*labels).observe(elapsed)
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "listener": self.listener,
                    "method": method,
                    "route": template,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuse bodies above a per-route limit (bytes), by header and while streaming.

    ``limits`` maps exact paths to their limit; other paths get ``default``.
    """

    def __init__(self, app: ASGIApp, limits: Mapping[str, int], default: int) -> None:
        self.app = app
        self.limits = dict(limits)
        self.default = default

    def limit_for(self, path: str) -> int:
        """The byte limit for ``path``."""
        return self.limits.get(path, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(str(scope.get("path", "")))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                declared = value.decode("latin-1")
                if not declared.isdigit():
                    response = problem_response(400, "malformed-request", "bad Content-Length")
                    await response(scope, receive, send)
                    return
                if int(declared) > limit:
                    response = problem_response(
                        413, "payload-too-large", f"body larger than {limit} bytes"
                    )
                    await response(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message: dict[str, Any] = dict(await receive())
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLargeError(f"body larger than {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)

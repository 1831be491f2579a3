"""Service error root and its specific subclasses.

Every error the service raises on purpose carries a stable ``code`` (part of the API:
clients and tests match on it) and the HTTP ``status`` it maps to. Messages are written
for operators and never contain templates, ciphertexts, keys, tokens or document
pseudonyms. :mod:`service.problems` is the one place that turns these into HTTP
``application/problem+json`` responses.
"""

from __future__ import annotations

from core.errors import VeilmatchError

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "ForbiddenError",
    "GateRefusedError",
    "MalformedRequestError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "QueryExpiredError",
    "RateLimitedError",
    "ServiceError",
    "UnavailableError",
]


class ServiceError(VeilmatchError):
    """Root of the service's errors. Subclasses fix ``status`` and a default ``code``."""

    status: int = 400
    code: str = "bad-request"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class MalformedRequestError(ServiceError):
    """The body, a header or a parameter cannot be parsed (JSON, base64, ciphertext)."""

    status = 400
    code = "malformed-request"


class PayloadTooLargeError(ServiceError):
    """The body is larger than the route allows."""

    status = 413
    code = "payload-too-large"


class AuthenticationError(ServiceError):
    """No valid credential: bad password, missing/expired/forged bearer token."""

    status = 401
    code = "unauthenticated"


class ForbiddenError(ServiceError):
    """Authenticated, but the access policy denies this action."""

    status = 403
    code = "forbidden"


class GateRefusedError(ServiceError):
    """A gate request failed authentication: certificate, signature, replay, key state.

    ``code`` names the exact check (``signature-invalid``, ``request-replayed``,
    ``request-stale``, ``gate-unknown``, ``gate-revoked``, ``gate-pending``,
    ``key-expired``, ``key-unknown``, ``certificate-mismatch``).
    """

    status = 401
    code = "gate-refused"


class NotFoundError(ServiceError):
    """The named resource does not exist (or the caller may not know it exists)."""

    status = 404
    code = "not-found"


class ConflictError(ServiceError):
    """The resource is not in a state that allows this action."""

    status = 409
    code = "conflict"


class QueryExpiredError(ServiceError):
    """A reveal arrived after its pending query's mapping was dropped (TTL)."""

    status = 410
    code = "query-expired"


class RateLimitedError(ServiceError):
    """The match policy refused the query (rate limit, hours, key state)."""

    status = 429
    code = "rate-limited"

    def __init__(self, detail: str, *, code: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(detail, code=code)
        self.retry_after_s = retry_after_s


class OverloadedError(ServiceError):
    """The scoring queue is full; retry after ``retry_after_s`` seconds."""

    status = 503
    code = "overloaded"

    def __init__(self, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class UnavailableError(ServiceError):
    """A dependency the route needs (gallery, policy engine, audit log) is not ready."""

    status = 503
    code = "unavailable"

"""What the gate use cases share: the reply type, strict body parsing, idempotent retries."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection

from service import queries
from service.context import ServiceContext
from service.errors import ConflictError, MalformedRequestError, QueryExpiredError

__all__ = ["JSON", "Reply", "body_digest", "parse_body", "replay"]

Model = TypeVar("Model", bound=BaseModel)
JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    """A gate route's answer: body bytes, media type and HTTP status."""

    body: bytes
    media_type: str = JSON
    status: int = 200


def parse_body(model: type[Model], body: bytes) -> Model:
    """``body`` as ``model``, or ``MalformedRequestError`` naming the failing fields
    (never their values)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        where = sorted({".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()})
        raise MalformedRequestError("invalid body fields: " + ", ".join(where[:10])) from None


def body_digest(body: bytes) -> str:
    """SHA-256 (hex) of a request body: what an idempotency record is keyed on."""
    return hashlib.sha256(body).hexdigest()


def replay(
    ctx: ServiceContext,
    conn: Connection,
    gate_id: str,
    request_id: str,
    route: str,
    digest: str,
) -> Reply | None:
    """The stored reply for a retried request id, or None. Another body: 409.

    ``digest`` is the SHA-256 (hex) of the request body.
    """
    stored = queries.stored_reply(conn, gate_id, request_id)
    if stored is None:
        return None
    if stored.route != route or stored.body_sha256 != digest:
        raise ConflictError("request id reused with a different body", code="request-id-reused")
    body, media_type = stored.response, JSON
    if route == "match":
        # Masked results are large and only useful while their mapping lives: the
        # database keeps the query id, memory keeps the response until the TTL.
        query_id = json.loads(body)["query_id"]
        pending = ctx.pending.response_for(query_id, gate_id, ctx.now())
        if pending is None:
            raise QueryExpiredError("the retried query expired; send a new request")
        body, media_type = pending
    return Reply(body, media_type, stored.status_code)

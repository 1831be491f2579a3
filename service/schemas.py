"""Request and response bodies of both APIs (pydantic, strict sizes).

Bounds on every string, list and number keep malformed input a 4xx, never a 5xx, and
keep the OpenAPI document honest for fuzzing. Binary fields are base64 (standard
alphabet) and decoded by :func:`b64decode_field`, which raises a typed error.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.errors import MalformedRequestError

__all__ = [
    "AccountCreate",
    "AccountPublic",
    "EnrolPhotos",
    "EnrolTemplate",
    "GateRegister",
    "KeyRotate",
    "LoginRequest",
    "MatchMeta",
    "MatchRequest",
    "MatchResponse",
    "MatchResultMeta",
    "RenewRequest",
    "RevealRequest",
    "RevealResponse",
    "ReviewRequest",
    "RevokeRequest",
    "TokenResponse",
    "b64decode_field",
]

_ID = r"^[A-Za-z0-9._:-]{1,128}$"
_REQUEST_ID = r"^[A-Za-z0-9._-]{8,64}$"
_PSEUDONYM = r"^[0-9a-f]{64}$"
_SEED = r"^[0-9a-f]{64}$"
_NEXT_SEED_DOC = (
    "seed of this gate's next probe, committed in advance so the service can prepare that "
    "query (ckks-v2); 32 bytes as lowercase hex. The gate must encrypt at most one "
    "template under it"
)


class Strict(BaseModel):
    """Base: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


def b64decode_field(value: str, name: str, max_bytes: int) -> bytes:
    """Decode a base64 field or raise ``MalformedRequestError`` naming it (not its value)."""
    if len(value) > (max_bytes * 4) // 3 + 4:
        raise MalformedRequestError(f"{name} is too large")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise MalformedRequestError(f"{name} is not valid base64") from None


# --- staff ---------------------------------------------------------------------------


class LoginRequest(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type
    expires_at: dt.datetime
    role: str


class AccountCreate(Strict):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{2,63}$")
    password: str = Field(min_length=12, max_length=256)
    role: Literal["officer", "supervisor", "oversight", "legal", "admin"]


class AccountPublic(BaseModel):
    id: str
    username: str
    role: str
    active: bool


class EnrolTemplate(Strict):
    subject_ref: str = Field(min_length=1, max_length=128, pattern=_ID)
    template: list[float] = Field(min_length=32, max_length=1024)
    legal_basis: str = Field(min_length=1, max_length=500, description="legal basis id")
    category: str = Field(min_length=1, max_length=64, pattern=r"^[a-z_]{1,64}$")
    expires_at: dt.datetime


class EnrolPhotos(Strict):
    subject_ref: str = Field(min_length=1, max_length=128, pattern=_ID)
    photos: list[str] = Field(min_length=1, max_length=5, description="base64 JPEG/PNG images")
    legal_basis: str = Field(min_length=1, max_length=500, description="legal basis id")
    category: str = Field(min_length=1, max_length=64, pattern=r"^[a-z_]{1,64}$")
    expires_at: dt.datetime


class RenewRequest(Strict):
    legal_basis: str = Field(min_length=1, max_length=500)
    expires_at: dt.datetime


class RevokeRequest(Strict):
    reason: str = Field(min_length=1, max_length=500)


class ReviewRequest(Strict):
    verdict: Literal["confirm", "dismiss"]
    reason: str = Field(min_length=1, max_length=500)


# --- gate ----------------------------------------------------------------------------


class GateRegister(Strict):
    gate_id: str = Field(pattern=_ID)
    site: str = Field(min_length=1, max_length=128, pattern=_ID)
    signing_public_key: str = Field(max_length=64, description="base64 raw Ed25519 key")
    he_public_bundle: str = Field(max_length=48_000_000, description="base64 HE key bundle")


class KeyRotate(Strict):
    signing_public_key: str = Field(max_length=64)
    he_public_bundle: str = Field(max_length=48_000_000)
    new_key_signature: str = Field(max_length=128, description="base64 Ed25519 signature")


class MatchRequest(Strict):
    request_id: str = Field(pattern=_REQUEST_ID, description="client-chosen; retries reuse it")
    probe: str = Field(max_length=12_000_000, description="base64 encrypted probe")
    doc_pseudonym: str | None = Field(
        None, pattern=_PSEUDONYM, description="HMAC-SHA256 of the travel document, hex"
    )
    next_seed: str | None = Field(None, pattern=_SEED, description=_NEXT_SEED_DOC)


class MatchMeta(Strict):
    """Metadata of a binary match request (``protocol.wire``); the probe follows it."""

    request_id: str = Field(pattern=_REQUEST_ID, description="client-chosen; retries reuse it")
    doc_pseudonym: str | None = Field(
        None, pattern=_PSEUDONYM, description="HMAC-SHA256 of the travel document, hex"
    )
    next_seed: str | None = Field(None, pattern=_SEED, description=_NEXT_SEED_DOC)


class MatchResultMeta(BaseModel):
    """Metadata of a binary match response; the masked result follows it."""

    query_id: str
    expires_at: dt.datetime
    gallery_version: str


class MatchResponse(BaseModel):
    query_id: str
    result: str = Field(description="base64 masked result")
    expires_at: dt.datetime
    gallery_version: str


class RevealRequest(Strict):
    request_id: str = Field(pattern=_REQUEST_ID)
    query_id: str = Field(min_length=1, max_length=64)
    positions: list[int] = Field(max_length=4096)


class RevealResponse(BaseModel):
    query_id: str
    outcome: Literal["proceed", "secondary"]

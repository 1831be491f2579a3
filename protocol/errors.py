"""Error root of the ``protocol`` package and its specific subclasses.

Every check in ``protocol`` raises one of these (never returns a boolean). Each class
carries the stable ``code`` the service answers with over HTTP (``docs/api.md``), so the
service maps them in one place without knowing which check failed. Messages name sizes,
versions and field names only: never a probe, a result, a pseudonym or a position.
"""

from __future__ import annotations

from core.errors import VeilmatchError

__all__ = [
    "FrameTooLargeError",
    "MalformedFrameError",
    "MalformedMessageError",
    "ProtocolError",
    "UnsupportedWireVersionError",
]


class ProtocolError(VeilmatchError):
    """Root of every error raised on purpose by ``protocol``; ``code`` is stable."""

    code: str = "malformed-request"


class MalformedFrameError(ProtocolError):
    """A frame's header is unusable: truncated, wrong magic, bad metadata length."""

    code = "malformed-frame"


class UnsupportedWireVersionError(MalformedFrameError):
    """A frame of a version this build does not speak; refused before its metadata."""

    code = "unsupported-wire-version"


class FrameTooLargeError(ProtocolError):
    """A frame's payload (probe, masked result) is above the caller's limit."""

    code = "payload-too-large"


class MalformedMessageError(ProtocolError):
    """A message's metadata or JSON body is not JSON or fails its schema (names the
    field, never its value)."""

    code = "malformed-request"

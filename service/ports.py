"""What the service needs from audit, policy and the HE matcher, as small Protocols.

The adapters in :mod:`service.adapters` implement these over the real ``audit``,
``policy`` and ``crypto`` packages; the orchestration code depends only on these
shapes, so a component changing its API touches one adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection

__all__ = ["AuditPort", "HePort", "PolicyDecision", "PolicyPort", "ServiceEvent"]


@dataclass(frozen=True)
class ServiceEvent:
    """One audit event as the service describes it.

    ``subjects`` are pseudonymous references (query, entry, alert, gate ids);
    ``payload`` holds pseudonymous details only: never a template, ciphertext, image,
    key, token, password or document pseudonym.
    """

    event_type: str
    actor: str
    subjects: tuple[str, ...] = ()
    payload: Mapping[str, Any] = field(default_factory=dict)
    decision_id: str | None = None
    bundle_digest: str | None = None


class AuditPort(Protocol):
    """Appends events inside the caller's transaction (so record and leaf commit together)."""

    def append_in(self, conn: Connection, events: Sequence[ServiceEvent]) -> None:
        """Append ``events`` using ``conn``'s open transaction."""
        ...

    def flush(self) -> None:
        """Make everything appended so far durable and checkpointed (shutdown)."""
        ...

    def tick(self) -> None:
        """Checkpoint if one is due (timer)."""
        ...


@dataclass(frozen=True)
class PolicyDecision:
    """A policy answer with its provenance.

    ``allow`` is the engine's own reading of the result (``policy.engine.Decision.allow``),
    carried here so the service never re-derives it; it defaults to False (fail closed).
    :mod:`service.decisions` parses ``result`` into typed decisions per query.
    """

    result: Any
    decision_id: str
    bundle_digest: str
    allow: bool = False


class PolicyPort(Protocol):
    """Evaluates one policy query (e.g. ``veilmatch.access``) against an input document."""

    def evaluate(self, query: str, input_doc: Mapping[str, Any]) -> PolicyDecision:
        """Evaluate; undefined results must fail closed (raise or return a deny)."""
        ...

    @property
    def bundle_digest(self) -> str:
        """Digest of the active policy bundle."""
        ...


class HePort(Protocol):
    """The parts of the HE protocol the service runs in its own process (cheap calls)."""

    def public_bundle_key_id(self, bundle: bytes) -> str:
        """Parse a gate's public key bundle (typed error if malformed); return its key id."""
        ...

    def resolve(self, positions: Sequence[int], mapping: Any) -> list[int]:
        """Gallery row indices for the positions a gate revealed (typed error if invalid)."""
        ...

    @property
    def single_ciphertext(self) -> bool:
        """Whether probes of the active parameter set are one seeded ciphertext, so a
        query can be prepared from the seed a gate committed in advance."""
        ...

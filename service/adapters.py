"""Thin adapters from the service's ports to the real ``audit``, ``policy`` and ``gate``.

Only this module knows those packages' class names and call shapes; the rest of the
service speaks :mod:`service.ports`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from audit.errors import LogStateError
from audit.events import AuditEvent, EventType
from audit.log import AuditLog
from audit.note import NoteSigner
from service.ports import PolicyDecision, ServiceEvent

__all__ = ["AuditLogAdapter", "PolicyEngineAdapter", "load_or_create_log_signer"]

#: Key name of the development log key (the checkpoint origin line).
DEFAULT_LOG_NAME = "veilmatch.invalid/audit-log"


def load_or_create_log_signer(path: Path, name: str = DEFAULT_LOG_NAME) -> Any:
    """The audit log's note-signing key from ``path`` (0600), created on first start."""
    if path.exists():
        return NoteSigner.from_string(path.read_text(encoding="ascii"))
    signer = NoteSigner.generate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(signer.to_string() + "\n")
    path.with_suffix(".pub").write_text(signer.verifier().to_string() + "\n", encoding="ascii")
    return signer


class AuditLogAdapter:
    """:class:`service.ports.AuditPort` over ``audit.log.AuditLog``."""

    def __init__(self, engine: Engine, signer: Any, **kwargs: Any) -> None:
        self.log = AuditLog(engine, signer, **kwargs)

    def append_in(self, conn: Connection, events: Sequence[ServiceEvent]) -> None:
        """Translate and append inside ``conn``'s transaction."""
        self.log.append_in(
            conn,
            [
                AuditEvent(
                    EventType(e.event_type),
                    e.actor,
                    tuple(e.subjects),
                    dict(e.payload),
                    policy_digest=e.bundle_digest,
                    decision_id=e.decision_id,
                )
                for e in events
            ],
        )

    def flush(self) -> None:
        """Sign a checkpoint covering everything appended so far (if anything is new)."""
        size = self.log.tree_size()
        if size == 0:
            return
        try:
            latest = self.log.latest_checkpoint()
            if latest.checkpoint.size >= size:
                return
        except LogStateError:
            pass
        self.log.checkpoint()

    def tick(self) -> None:
        """Issue a checkpoint if one is due (called on a timer)."""
        self.log.maybe_checkpoint()


class PolicyEngineAdapter:
    """:class:`service.ports.PolicyPort` over ``policy``'s engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    @property
    def bundle_digest(self) -> str:
        """Digest of the active bundle."""
        return str(self.engine.bundle_digest)

    def evaluate(self, query: str, input_doc: Mapping[str, Any]) -> PolicyDecision:
        """Evaluate ``query``; the engine fails closed on undefined results."""
        decision = self.engine.evaluate(query, dict(input_doc))
        return PolicyDecision(
            decision.result, decision.decision_id, decision.bundle_digest, allow=decision.allow
        )

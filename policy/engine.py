"""One interface over the OPA engines: evaluate a query, load a bundle, with provenance.

Example::

    from policy import ACCESS, EmbeddedEngine, PolicyBundle, default_bundle_dir

    engine = EmbeddedEngine()
    event = engine.load(PolicyBundle.from_dir(default_bundle_dir()))  # audit `event`
    decision = engine.evaluate(ACCESS, {"role": "officer", "action": "alert.read",
                                        "subject": "officer-1"})
    decision.allow, decision.decision_id, decision.bundle_digest

Every decision carries a fresh decision id and the digest of the bundle that produced
it; callers write both to the audit log. An undefined result raises
:class:`~policy.errors.UndefinedDecisionError`: it never reads as "allowed".
"""

from __future__ import annotations

import re
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NewType

from policy.bundles import PolicyBundle
from policy.errors import NoPolicyLoadedError, PolicyError, UndefinedDecisionError

__all__ = [
    "ACCESS",
    "ALERT",
    "ALERT_REVIEW",
    "LEGAL_OBLIGATIONS",
    "MATCH",
    "RETENTION",
    "RETENTION_PERIODS",
    "Decision",
    "DecisionId",
    "LoadEvent",
    "Outcome",
    "PolicyEngine",
    "split_query",
]

DecisionId = NewType("DecisionId", str)

#: The queries the service calls; their input and output schemas are in docs/policies.md.
ACCESS = "veilmatch.access.decision"
MATCH = "veilmatch.match.decision"
ALERT = "veilmatch.alert.decision"
ALERT_REVIEW = "veilmatch.alert.review"
RETENTION = "veilmatch.retention.decision"
RETENTION_PERIODS = "veilmatch.retention.periods"
LEGAL_OBLIGATIONS = "veilmatch.legal.obligations"

# A query is a dotted path to one document under `data`. Keeping queries to this
# fixed shape matters: the embedded engine caches one prepared query per string.
_QUERY = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+$")


def split_query(query: str) -> tuple[str, str]:
    """``"veilmatch.access.decision"`` → ``("veilmatch.access", "decision")``; checks shape.

    Queries name a document below ``data`` without the ``data.`` prefix.
    """
    if not isinstance(query, str) or not _QUERY.match(query) or query.startswith("data."):
        raise PolicyError(f"malformed policy query {query!r}: want a dotted data path")
    package, _, rule = query.rpartition(".")
    return package, rule


@dataclass(frozen=True)
class Decision:
    """One policy answer and its provenance.

    ``result`` is the JSON value of the queried document; ``decision_id`` is a fresh
    UUID4 minted by veilmatch (``engine_decision_id`` is OPA's own id when a server
    returned one); ``bundle_digest`` names the bundle that decided, and ``profile`` the
    jurisdiction profile it decided under (None for a bundle without profiles; the
    digest covers the profile too, so the two cannot disagree).
    """

    query: str
    result: Any
    decision_id: DecisionId
    bundle_digest: str
    engine_decision_id: str | None = None
    profile: str | None = None

    @property
    def allow(self) -> bool:
        """True only when the result is ``true`` or an object whose ``allow`` is ``true``."""
        if self.result is True:
            return True
        return isinstance(self.result, Mapping) and self.result.get("allow") is True

    def provenance(self) -> dict[str, str]:
        """What to put in the audit log next to the event this decision governed."""
        out = {
            "decision_id": self.decision_id,
            "bundle_digest": self.bundle_digest,
            "query": self.query,
        }
        if self.profile is not None:
            out["profile"] = self.profile
        return out


@dataclass(frozen=True)
class LoadEvent:
    """A bundle became active; callers append :meth:`to_audit` to the audit log."""

    digest: str
    previous_digest: str | None
    engine: str
    files: tuple[tuple[str, str], ...]
    loaded_at: datetime
    profile: str | None = None

    def to_audit(self) -> dict[str, Any]:
        """The audit payload: digests, the active profile and per-file hashes, no text."""
        return {
            "event": "policy.load",
            "digest": self.digest,
            "previous_digest": self.previous_digest,
            "engine": self.engine,
            "profile": self.profile,
            "files": [{"path": path, "sha256": sha} for path, sha in self.files],
            "loaded_at": self.loaded_at.isoformat(),
        }


@dataclass(frozen=True)
class Outcome:
    """What an engine adapter returns: whether defined, the value, and which bundle decided."""

    defined: bool
    value: Any
    digest: str
    engine_id: str | None = None
    profile: str | None = None


def _new_decision_id() -> DecisionId:
    return DecisionId(str(uuid.uuid4()))


class PolicyEngine(ABC):
    """Evaluate queries against the active bundle; swap bundles atomically.

    ``load`` either activates the whole new bundle or raises
    :class:`~policy.errors.PolicyLoadError` and leaves the previous bundle active.
    Implementations are safe to share between threads.
    """

    kind: str = "abstract"

    def __init__(
        self,
        *,
        new_id: Callable[[], DecisionId] = _new_decision_id,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._new_id = new_id
        self._now = now
        self._lock = threading.Lock()
        self._bundle: PolicyBundle | None = None

    @property
    def bundle(self) -> PolicyBundle | None:
        """The active bundle, or None before the first successful load."""
        return self._bundle

    @property
    def bundle_digest(self) -> str:
        """Digest of the active bundle; raises before the first load."""
        bundle = self._bundle
        if bundle is None:
            raise NoPolicyLoadedError("no policy bundle loaded")
        return bundle.digest

    def load(self, bundle: PolicyBundle) -> LoadEvent:
        """Activate ``bundle``, or raise ``PolicyLoadError`` keeping the previous one."""
        with self._lock:
            previous = self._bundle
            self._activate(bundle, previous)
            self._bundle = bundle
        return LoadEvent(
            digest=bundle.digest,
            previous_digest=previous.digest if previous else None,
            engine=self.kind,
            files=bundle.manifest,
            loaded_at=self._now(),
            profile=bundle.profile,
        )

    def evaluate(self, query: str, input: Mapping[str, Any]) -> Decision:
        """Evaluate ``query`` (e.g. :data:`ACCESS`) with ``input`` as the input document.

        Raises ``UndefinedDecisionError`` when the policy has no answer,
        ``PolicyEvaluationError`` when evaluation fails and
        ``PolicyEngineUnavailableError`` when a server cannot be reached.
        """
        package, rule = split_query(query)
        if not isinstance(input, Mapping):
            raise PolicyError("policy input must be a JSON object")
        if self._bundle is None:
            raise NoPolicyLoadedError("no policy bundle loaded")
        decision_id = self._new_id()
        outcome = self._evaluate(query, package, rule, dict(input))
        if not outcome.defined:
            raise UndefinedDecisionError(query, decision_id, outcome.digest)
        return Decision(
            query, outcome.value, decision_id, outcome.digest, outcome.engine_id, outcome.profile
        )

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native or network resources."""

    @abstractmethod
    def _activate(self, bundle: PolicyBundle, previous: PolicyBundle | None) -> None:
        """Make ``bundle`` the evaluated one or raise ``PolicyLoadError`` (no change)."""

    @abstractmethod
    def _evaluate(
        self,
        query: str,
        package: str,
        rule: str,
        input: dict[str, Any],
    ) -> Outcome:
        """Evaluate ``data.<package>.<rule>`` against the bundle active at that instant."""

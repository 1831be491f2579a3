"""Policy answers parsed once into typed decisions, one type per query the service asks.

Each ``ask_*`` function evaluates one query of :mod:`policy.engine` (by its constant,
never a string literal) and parses the JSON result into a frozen dataclass that keeps
the :class:`~service.ports.PolicyDecision` it came from, so whoever acts on the answer
can write its decision id and bundle digest to the audit log. Whether a decision allows
is the engine's own reading (``PolicyDecision.allow``, i.e. ``policy.engine.Decision.allow``);
nothing here re-derives it. Missing or mistyped fields read as the safe default (deny,
no alert, do not keep), as the policies' documented outputs say they should.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from policy.engine import ACCESS, ALERT, ALERT_REVIEW, MATCH, RETENTION
from service.ports import PolicyDecision, PolicyPort

__all__ = [
    "CONDITION_REASON_PREFIX",
    "AccessDecision",
    "AlertDecision",
    "MatchDecision",
    "ask_access",
    "ask_alert",
    "ask_match",
    "ask_review_state",
    "keeps",
]

#: How ``veilmatch.access`` words a refusal caused by a resource condition (the facts of
#: one target) rather than by the role or the caller: ``"condition not met: <name>"``
#: (see ``policy/bundle/veilmatch/access/access.rego``).
CONDITION_REASON_PREFIX = "condition not met: "


def _fields(decision: PolicyDecision) -> Mapping[str, Any]:
    result = decision.result
    return result if isinstance(result, Mapping) else {}


def _reasons(fields: Mapping[str, Any]) -> tuple[str, ...]:
    raw = fields.get("reasons")
    return tuple(str(r) for r in raw) if isinstance(raw, list) and raw else ("denied",)


@dataclass(frozen=True)
class AccessDecision:
    """``veilmatch.access.decision``: may this caller perform this action on this target?

    ``reasons`` is empty when allowed (``("denied",)`` when refused without a reason).
    """

    allow: bool
    reasons: tuple[str, ...]
    policy: PolicyDecision

    @classmethod
    def parse(cls, decision: PolicyDecision) -> AccessDecision:
        """Read the policy's ``{"allow", "reasons"}`` output."""
        if decision.allow:
            return cls(True, (), decision)
        return cls(False, _reasons(_fields(decision)), decision)

    @property
    def refused_whatever_the_target(self) -> bool:
        """True when some reason is not a resource condition (the role, the caller, the
        action): no facts about any target could turn this refusal into an allow."""
        return not self.allow and any(
            not r.startswith(CONDITION_REASON_PREFIX) for r in self.reasons
        )


def ask_access(
    policy: PolicyPort, role: str, action: str, subject: str, resource: Mapping[str, Any]
) -> AccessDecision:
    """Evaluate :data:`policy.engine.ACCESS` for one caller, action and target facts."""
    decision = policy.evaluate(
        ACCESS, {"role": role, "action": action, "subject": subject, "resource": dict(resource)}
    )
    return AccessDecision.parse(decision)


@dataclass(frozen=True)
class MatchDecision:
    """``veilmatch.match.decision``: may this gate search now?"""

    allow: bool
    reasons: tuple[str, ...]
    policy: PolicyDecision

    @property
    def rate_limited(self) -> bool:
        """Whether a refusal names the rate limit (answered 429, not 403)."""
        return any("rate limit" in r for r in self.reasons)


def ask_match(policy: PolicyPort, input_doc: Mapping[str, Any]) -> MatchDecision:
    """Evaluate :data:`policy.engine.MATCH` (input schema in ``docs/policies.md``)."""
    decision = policy.evaluate(MATCH, input_doc)
    if decision.allow:
        return MatchDecision(True, (), decision)
    return MatchDecision(False, _reasons(_fields(decision)), decision)


@dataclass(frozen=True)
class AlertDecision:
    """``veilmatch.alert.decision``: does this search result raise an alert?

    ``reason`` and ``severity`` are None when the policy did not say; each consumer
    applies the default it always used (see the properties).
    """

    alert: bool
    reason: str | None
    severity: str | None
    entries: tuple[str, ...] | None
    required_reviewers: int
    frequent_crossing: bool
    policy: PolicyDecision

    @classmethod
    def parse(cls, decision: PolicyDecision) -> AlertDecision:
        """Read the policy's output object (absent fields: no alert, defaults)."""
        fields = _fields(decision)
        entries = fields.get("entries")
        return cls(
            alert=fields.get("alert") is True,
            reason=None if "reason" not in fields else str(fields["reason"]),
            severity=None if "severity" not in fields else str(fields["severity"]),
            entries=tuple(str(e) for e in entries) if isinstance(entries, list) else None,
            required_reviewers=int(fields.get("required_reviewers", 2)),
            frequent_crossing=bool(fields.get("frequent_crossing", False)),
            policy=decision,
        )

    @property
    def outcome(self) -> Literal["proceed", "secondary"]:
        """What the gate is told: ``secondary`` (to an officer) or ``proceed``."""
        return "secondary" if self.alert else "proceed"

    def alert_entries(self, hits: Sequence[str]) -> list[str]:
        """The entries the alert names: the policy's list, else every hit."""
        return list(self.entries) if self.entries is not None else list(hits)


def ask_alert(policy: PolicyPort, input_doc: Mapping[str, Any]) -> AlertDecision:
    """Evaluate :data:`policy.engine.ALERT` (input: ``now``, ``hits``, ``travel``)."""
    return AlertDecision.parse(policy.evaluate(ALERT, input_doc))


def ask_review_state(policy: PolicyPort, reviews: list[dict[str, str]]) -> str:
    """:data:`policy.engine.ALERT_REVIEW`: ``confirmed``, ``dismissed`` or (fails closed)
    ``pending``."""
    state = _fields(policy.evaluate(ALERT_REVIEW, {"reviews": reviews})).get("state")
    return state if state in ("confirmed", "dismissed") else "pending"


def keeps(policy: PolicyPort, kind: str, state: str, age_days: int = 0) -> bool:
    """:data:`policy.engine.RETENTION`: whether a record of ``kind`` in ``state`` is kept
    (anything but an explicit ``keep`` means no)."""
    decision = policy.evaluate(RETENTION, {"kind": kind, "state": state, "age_days": age_days})
    return _fields(decision).get("action") == "keep"

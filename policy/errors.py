"""Errors raised by the policy component; all subclass :class:`PolicyError`.

Messages carry query names, digests and the OPA engine's own message, never input
documents (an engine message may quote a malformed input value, so callers log the
error's ``code`` and ``digest``, and show the message only to policy authors).
"""

from __future__ import annotations

from core.errors import VeilmatchError


class PolicyError(VeilmatchError):
    """Root of every error the policy component raises."""


class BundleError(PolicyError):
    """A policy bundle directory or file set is malformed (before any engine sees it)."""


class UnknownProfileError(BundleError):
    """The requested jurisdiction profile is not defined by the bundle.

    ``profile`` is the requested id, ``available`` the ids the bundle defines.
    """

    def __init__(self, profile: str, available: tuple[str, ...], source: str) -> None:
        known = ", ".join(available) if available else "none"
        super().__init__(f"unknown policy profile {profile[:64]!r}: {source} defines {known}")
        self.profile = profile
        self.available = available


class PolicyLoadError(PolicyError):
    """The engine refused a bundle (parse or compile error); the previous one stays active.

    ``engine_message`` is the engine's own error text; ``digest`` names the refused bundle.
    """

    def __init__(self, digest: str, engine_message: str) -> None:
        super().__init__(f"policy bundle {digest} refused: {engine_message}")
        self.digest = digest
        self.engine_message = engine_message


class ProfileDataError(PolicyLoadError):
    """The bundle's profile data is inconsistent (e.g. a rule's legal basis is missing).

    ``problems`` lists every inconsistency ``veilmatch.profile.problems`` found, one
    sentence each; the bundle is refused as a whole.
    """

    def __init__(self, digest: str, problems: tuple[str, ...]) -> None:
        super().__init__(digest, "inconsistent profile data: " + "; ".join(problems))
        self.problems = problems


class NoPolicyLoadedError(PolicyError):
    """An evaluation was attempted before any bundle was loaded."""


class PolicyEvaluationError(PolicyError):
    """The engine failed while evaluating ``query``; callers fail closed."""

    def __init__(self, query: str, engine_message: str) -> None:
        super().__init__(f"policy query {query} failed: {engine_message}")
        self.query = query
        self.engine_message = engine_message


class UndefinedDecisionError(PolicyError):
    """The policy gave no answer for ``query`` (malformed input, or no such rule).

    Undefined never means "allowed": callers treat this exactly like a refusal. The
    decision id and bundle digest are carried so the refusal can be audited.
    """

    def __init__(self, query: str, decision_id: str, bundle_digest: str) -> None:
        super().__init__(f"policy query {query} is undefined for this input")
        self.query = query
        self.decision_id = decision_id
        self.bundle_digest = bundle_digest


class PolicyEngineUnavailableError(PolicyError):
    """The OPA server could not be reached or answered with a server error."""


class RetentionError(PolicyError):
    """A retention sweep could not proceed (no stores, or a store misbehaved)."""

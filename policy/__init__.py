"""Policy-as-code: Rego policies, their tests, and the OPA engine adapters.

Usage::

    from policy import ACCESS, engine_from_settings

    engine, load_event = engine_from_settings(settings)   # audit load_event.to_audit()
    decision = engine.evaluate(ACCESS, {"role": "officer", "action": "alert.read",
                                        "subject": "officer-1"})
    if not decision.allow: ...                            # audit decision.provenance()

Queries, their inputs and outputs are documented in ``docs/policies.md`` (generated
from the policies' METADATA by ``veilmatch policy docs``). Names are imported lazily so
``veilmatch --help`` does not load the OPA bindings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policy.bundles import PolicyBundle, default_bundle_dir
    from policy.embedded import EmbeddedEngine
    from policy.engine import (
        ACCESS,
        ALERT,
        ALERT_REVIEW,
        LEGAL_OBLIGATIONS,
        MATCH,
        RETENTION,
        RETENTION_PERIODS,
        Decision,
        LoadEvent,
        PolicyEngine,
    )
    from policy.errors import (
        BundleError,
        NoPolicyLoadedError,
        PolicyEngineUnavailableError,
        PolicyError,
        PolicyEvaluationError,
        PolicyLoadError,
        ProfileDataError,
        RetentionError,
        UndefinedDecisionError,
        UnknownProfileError,
    )
    from policy.factory import bundle_dir, engine_from_settings
    from policy.opa_http import HttpEngine

_EXPORTS = {
    "PolicyBundle": "policy.bundles",
    "default_bundle_dir": "policy.bundles",
    "EmbeddedEngine": "policy.embedded",
    "HttpEngine": "policy.opa_http",
    "ACCESS": "policy.engine",
    "ALERT": "policy.engine",
    "ALERT_REVIEW": "policy.engine",
    "LEGAL_OBLIGATIONS": "policy.engine",
    "MATCH": "policy.engine",
    "RETENTION": "policy.engine",
    "RETENTION_PERIODS": "policy.engine",
    "Decision": "policy.engine",
    "LoadEvent": "policy.engine",
    "PolicyEngine": "policy.engine",
    "BundleError": "policy.errors",
    "NoPolicyLoadedError": "policy.errors",
    "PolicyEngineUnavailableError": "policy.errors",
    "PolicyError": "policy.errors",
    "PolicyEvaluationError": "policy.errors",
    "PolicyLoadError": "policy.errors",
    "ProfileDataError": "policy.errors",
    "UnknownProfileError": "policy.errors",
    "RetentionError": "policy.errors",
    "UndefinedDecisionError": "policy.errors",
    "bundle_dir": "policy.factory",
    "engine_from_settings": "policy.factory",
}

__all__ = [
    "ACCESS",
    "ALERT",
    "ALERT_REVIEW",
    "LEGAL_OBLIGATIONS",
    "MATCH",
    "RETENTION",
    "RETENTION_PERIODS",
    "BundleError",
    "Decision",
    "EmbeddedEngine",
    "HttpEngine",
    "LoadEvent",
    "NoPolicyLoadedError",
    "PolicyBundle",
    "PolicyEngine",
    "PolicyEngineUnavailableError",
    "PolicyError",
    "PolicyEvaluationError",
    "PolicyLoadError",
    "ProfileDataError",
    "RetentionError",
    "UndefinedDecisionError",
    "UnknownProfileError",
    "bundle_dir",
    "default_bundle_dir",
    "engine_from_settings",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'policy' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

"""Build the configured policy engine from settings, with the configured bundle loaded."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from policy.bundles import PolicyBundle, default_bundle_dir
from policy.engine import LoadEvent, PolicyEngine

__all__ = ["bundle_dir", "engine_from_settings"]


def bundle_dir(settings: Settings) -> Path:
    """``settings.policy_dir`` if set, else the bundle shipped in ``policy/bundle``."""
    return Path(settings.policy_dir) if settings.policy_dir else default_bundle_dir()


def engine_from_settings(settings: Settings) -> tuple[PolicyEngine, LoadEvent]:
    """An engine per ``settings.policy_engine`` ("embedded" or "http" at ``opa_url``).

    The bundle from :func:`bundle_dir` is loaded under ``settings.policy_profile``; the
    returned ``LoadEvent`` is what the caller appends to the audit log. Raises
    ``BundleError`` (``UnknownProfileError`` for a profile the bundle lacks) /
    ``PolicyLoadError`` / ``PolicyEngineUnavailableError`` (all ``PolicyError``) when
    that is impossible.
    """
    bundle = PolicyBundle.from_dir(bundle_dir(settings), profile=settings.policy_profile)
    engine: PolicyEngine
    if settings.policy_engine == "http":
        from policy.opa_http import HttpEngine

        engine = HttpEngine(settings.opa_url)
    else:
        from policy.embedded import EmbeddedEngine

        engine = EmbeddedEngine()
    try:
        event = engine.load(bundle)
    except BaseException:
        engine.close()
        raise
    return engine, event

"""Legal pages: the rendered policy documentation, the active bundle digest and
jurisdiction profile, the legal obligations the profile computes for today's watchlist,
and the history of policy versions with rule-level diffs.

The documentation is :func:`policy.docs.render` of the bundle the service loaded (the
same generator as ``docs/policies.md``), so what lawyers read is what is enforced.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from policy.bundles import PolicyBundle, default_bundle_dir
from policy.docs import render as render_docs
from policy.errors import BundleError
from service.console import auditview
from service.console.markdown import to_html
from service.console.obligations import obligations_for
from service.console.policyhistory import ACTIVE, PolicyHistory
from service.console.session import SessionDep, allowed, require_page
from service.console.web import ConsoleRoute, render
from service.context import ServiceContext
from service.deps import CtxDep
from service.errors import NotFoundError

__all__ = ["router", "versions_for"]

router = APIRouter(route_class=ConsoleRoute)
_REV = Annotated[str, Query(pattern=r"^([0-9a-f]{40}|active)$")]
_DOCS: dict[str, Markup] = {}
_DOCS_LOCK = threading.Lock()


def _bundle_dir(ctx: ServiceContext) -> Path:
    return Path(ctx.settings.policy_dir or default_bundle_dir())


@functools.lru_cache(maxsize=8)
def _history_for(bundle_dir: Path, cache_dir: Path, profile: str) -> PolicyHistory:
    return PolicyHistory(bundle_dir, cache_dir, profile)


def versions_for(ctx: ServiceContext) -> PolicyHistory:
    """The policy versions of the bundle directory the service loaded, under its profile."""
    cache = Path(ctx.settings.data_dir) / "console" / "policy-versions"
    return _history_for(_bundle_dir(ctx), cache, ctx.settings.policy_profile)


def _docs_html(bundle: PolicyBundle) -> Markup:
    """The bundle's generated documentation as HTML (cached by digest)."""
    with _DOCS_LOCK:
        cached = _DOCS.get(bundle.digest)
        if cached is None:
            cached = to_html(render_docs(bundle))
            _DOCS[bundle.digest] = cached
        return cached


@router.get("/policies")
def policy_docs(request: Request, ctx: CtxDep, principal: SessionDep) -> Response:
    """The documentation generated from the active bundle, with its digest."""
    require_page(request, ctx, principal, "console.policies", "policy.read")
    bundle = versions_for(ctx).active()
    return render(
        request,
        "policies.html",
        {
            "docs": _docs_html(bundle),
            "digest": bundle.digest,
            "profile": bundle.profile,
            "profiles": bundle.profiles,
            "obligations": obligations_for(ctx),
            "loaded_digest": ctx.policy.bundle_digest,
            "manifest": bundle.manifest,
        },
    )


@router.get("/policies/history")
def policy_history(request: Request, ctx: CtxDep, principal: SessionDep) -> Response:
    """Versions newest first, each linked to its changes from the one before."""
    require_page(request, ctx, principal, "console.policies", "policy.read")
    history = versions_for(ctx)
    versions = history.versions()
    in_force: dict[str, list[dict[str, Any]]] = {}
    if allowed(ctx, principal, "audit.read"):
        for period in auditview.policy_timeline(ctx.audit.log):  # type: ignore[attr-defined]
            in_force.setdefault(str(period["digest"]), []).append(period)
    return render(
        request,
        "policy_history.html",
        {
            "versions": versions,
            "in_git": history.in_git,
            "in_force": in_force,
            "show_in_force": allowed(ctx, principal, "audit.read"),
            "loaded_digest": ctx.policy.bundle_digest,
            "profile": history.profile,
        },
    )


@router.get("/policies/diff")
def policy_diff(
    request: Request, ctx: CtxDep, principal: SessionDep, old: _REV, new: _REV = ACTIVE
) -> Response:
    """Rule-level differences between two versions (``policy.diff``)."""
    require_page(request, ctx, principal, "console.policies", "policy.read")
    history = versions_for(ctx)
    try:
        before, after, changes = history.diff(old, new)
    except BundleError as exc:
        raise NotFoundError(f"policy version not available: {exc}") from None
    labels = {v.rev: v for v in history.versions()}
    return render(
        request,
        "policy_diff.html",
        {
            "old": labels.get(old),
            "new": labels.get(new),
            "old_rev": old,
            "new_rev": new,
            "old_digest": before.digest,
            "new_digest": after.digest,
            "changes": changes,
        },
    )

"""Building, starting and stopping one service process.

``build_context`` wires the real components (audit log, policy engine, KEK, scoring
backend); ``start`` bootstraps the admin account, loads the policy (an audit event) and
builds the gallery; ``housekeeping`` runs on a timer (expire pending queries, forget
old nonces and lapsed sign-in counters, audit closed windows of unauthenticated
refusals, checkpoint the audit log); ``stop`` drains in-flight matches, audits the
open refusal window and flushes the audit log with a final checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from core.settings import Settings
from policy.bundles import PolicyBundle, default_bundle_dir
from policy.embedded import EmbeddedEngine
from policy.opa_http import HttpEngine
from service import denials, throttle
from service.accounts import TokenIssuer, ensure_bootstrap_admin
from service.adapters import AuditLogAdapter, PolicyEngineAdapter
from service.context import ServiceContext, system_clock
from service.gates import purge_nonces
from service.he_worker import HeAdapter
from service.keys import load_service_keys
from service.ports import ServiceEvent
from service.retention import run_sweep
from service.scoring.factory import build_backend
from service.tables import idempotency_keys, pending_queries
from service.watchlist import load_gallery_templates

__all__ = ["build_context", "housekeeping", "rebuild_gallery", "start", "stop"]

log = logging.getLogger("veilmatch.service")
_REBUILD_LOCK = threading.Lock()


def _policy_engine(settings: Settings) -> tuple[Any, Any]:
    bundle = PolicyBundle.from_dir(
        Path(settings.policy_dir or default_bundle_dir()), profile=settings.policy_profile
    )
    engine: Any = (
        HttpEngine(settings.opa_url) if settings.policy_engine == "http" else EmbeddedEngine()
    )
    return engine, engine.load(bundle)


def build_context(
    settings: Settings,
    engine: Engine,
    *,
    clock: Callable[[], dt.datetime] = system_clock,
    face_embedder: Callable[[bytes], Any] | None = None,
    create_keys: bool = True,
) -> ServiceContext:
    """Wire a context from settings: the keys from ``settings.key_provider`` (created on
    first start when ``create_keys``; see :mod:`service.keys`), the audit log, the policy
    engine and the match pool."""
    keys = load_service_keys(settings, create=create_keys)
    try:
        policy_engine, load_event = _policy_engine(settings)
    except BaseException:
        keys.close()
        raise
    ctx = ServiceContext(
        settings=settings,
        engine=engine,
        audit=AuditLogAdapter(engine, keys.log_signer, sequencer=keys.sequencer),
        policy=PolicyEngineAdapter(policy_engine),
        kek=keys.kek,
        tokens=TokenIssuer(keys.token_mac),
        pool=build_backend(settings),
        he=HeAdapter(settings.he_parameter_set),
        clock=clock,
        face_embedder=face_embedder,
    )
    ctx.pool.on_depth = ctx.metrics.queue_depth.set
    ctx.pool.on_restart = ctx.metrics.worker_restarts.inc
    audit_log: Any = ctx.audit.log  # type: ignore[attr-defined]
    audit_log.on_alarm = lambda _refusal: ctx.metrics.audit_alarms.inc()
    ctx.policy_load_event = load_event
    ctx.keys = keys
    return ctx


def rebuild_gallery(ctx: ServiceContext) -> str:
    """Re-encode the gallery from the active watchlist (blocking; serialised)."""
    with _REBUILD_LOCK:
        now = ctx.now()
        with ctx.engine.connect() as conn:
            ids, templates = load_gallery_templates(conn, ctx.kek, now)
        version = ctx.pool.rebuild(ids, templates)
        ctx.metrics.gallery_size.set(len(ids))
        log.info("gallery built", extra={"gallery_version": version, "entries": len(ids)})
        return version


def start(ctx: ServiceContext) -> None:
    """Bootstrap, record the policy load, build the gallery, then mark ready."""
    now = ctx.now()
    admin_password = ctx.settings.admin_password
    load_event = ctx.policy_load_event
    with ctx.transaction() as conn:
        if ensure_bootstrap_admin(
            conn, admin_password.get_secret_value() if admin_password else None, now
        ):
            ctx.record(
                conn,
                ServiceEvent(
                    "admin", "system", ("account:admin",), {"action": "account.bootstrap"}
                ),
            )
        if load_event is not None:
            ctx.record(
                conn,
                ServiceEvent(
                    "policy.load",
                    "system",
                    (),
                    {
                        "engine": load_event.engine,
                        "previous_digest": load_event.previous_digest,
                        "profile": load_event.profile,
                        "files": len(load_event.files),
                    },
                    bundle_digest=load_event.digest,
                ),
            )
    rebuild_gallery(ctx)
    ctx.audit.flush()
    ctx.ready = True


def housekeeping(ctx: ServiceContext) -> None:
    """One round of timed chores (blocking, quick)."""
    now = ctx.now()
    expired = ctx.pending.purge(now)
    with ctx.transaction() as conn:
        conn.execute(
            pending_queries.update()
            .where(pending_queries.c.status == "pending", pending_queries.c.expires_at <= now)
            .values(status="expired")
        )
        purge_nonces(conn, now)
        conn.execute(
            idempotency_keys.delete().where(
                idempotency_keys.c.created_at < now - dt.timedelta(hours=1)
            )
        )
        throttle.purge(conn, now, dt.timedelta(seconds=ctx.settings.login_lockout_s))
    denials.flush_due(ctx)
    if expired:
        log.info("pending queries expired", extra={"count": len(expired)})
    ctx.audit.tick()


async def housekeeping_loop(
    ctx: ServiceContext, interval_s: float = 1.0, sweep_every: int = 60, ping_every: int = 5
) -> None:
    """Run :func:`housekeeping` every ``interval_s``, a liveness check of the idle scoring
    workers every ``ping_every`` rounds and the retention sweep every ``sweep_every``
    rounds, until cancelled."""
    rounds = 0
    while True:
        await asyncio.sleep(interval_s)
        rounds += 1
        try:
            await asyncio.to_thread(housekeeping, ctx)
            if rounds % ping_every == 0:
                await asyncio.to_thread(ctx.pool.check_idle_workers)
            if rounds % sweep_every == 0:
                await asyncio.to_thread(run_sweep, ctx)
        except Exception as exc:  # keep the loop alive; the type is enough to diagnose
            log.error("housekeeping failed", extra={"error_type": type(exc).__name__})


def stop(ctx: ServiceContext) -> None:
    """Drain in-flight matches, then write a final checkpoint."""
    ctx.ready = False
    ctx.pool.close(wait=True)
    with contextlib.suppress(Exception):
        denials.flush_all(ctx)
    with contextlib.suppress(Exception):
        ctx.audit.flush()
    if ctx.keys is not None:
        ctx.keys.close()


def pending_count(ctx: ServiceContext) -> int:
    """Pending queries in the database (for readiness and tests)."""
    with ctx.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(pending_queries)
                .where(pending_queries.c.status == "pending")
            ).scalar_one()
        )

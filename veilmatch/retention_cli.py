"""`veilmatch retention …`: show the periods in force and run a retention sweep."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from sqlalchemy import Engine

from core.db import make_engine
from core.errors import ConfigurationError
from core.migrate import is_up_to_date
from core.settings import Settings, load_settings
from policy.engine import RETENTION_PERIODS
from policy.factory import engine_from_settings
from policy.retention import sweep
from service.lifecycle import build_context
from service.retention import OnBatch, batch_recorder, stores

app = typer.Typer(help="Retention: periods in force and sweeps.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Retention commands."""


@app.command("periods")
def periods() -> None:
    """Print the retention periods of the active bundle (kind, state, days, then)."""
    engine, _ = engine_from_settings(load_settings())
    try:
        decision = engine.evaluate(RETENTION_PERIODS, {})
    finally:
        engine.close()
    typer.echo(f"bundle {decision.bundle_digest}")
    for kind, states in sorted(decision.result.items()):
        for state, period in sorted(states.items()):
            typer.echo(f"{kind:<18} {state:<18} {period['days']:>5} days  then {period['action']}")


@app.command("sweep")
def sweep_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be removed; change nothing.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Records per batch.")] = 500,
) -> None:
    """Delete or redact every record the retention policy says has expired, in audited batches.

    Each batch commits with its retention.delete audit event; --dry-run changes nothing.
    """
    settings = load_settings()
    db = make_engine(settings)
    try:
        engine, _ = engine_from_settings(settings)
        try:
            with record_stores(settings, db) as (stores, on_batch):
                report = sweep(
                    engine,
                    stores,
                    now=datetime.now(UTC),
                    on_batch=on_batch,
                    batch_size=batch_size,
                    dry_run=dry_run,
                )
        finally:
            engine.close()
    finally:
        db.dispose()
    verb = "would remove" if dry_run else "removed"
    for batch in report.batches:
        typer.echo(json.dumps({k: v for k, v in batch.to_audit().items() if k != "records"}))
    typer.echo(f"{verb} {report.count()} records in {len(report.batches)} batches")
    for kind in report.unknown_kinds:
        typer.echo(f"warning: no retention period for record kind {kind!r}: not swept", err=True)


@contextmanager
def record_stores(settings: Settings, db_engine: Engine) -> Iterator[tuple[list[Any], OnBatch]]:
    """The service's stores and ``on_batch`` for a sweep outside the server
    (``veilmatch retention sweep``).

    Refuses (``ConfigurationError``) a database whose schema is not up to date, and a
    key provider without the service's audit log key or KEK: a sweep never creates
    keys. On exit, if the audit log grew meanwhile (the sweep's ``retention.delete``
    events, or a running server's entries), a checkpoint is signed over it, also after
    an error (batches applied before the error stay applied and audited); a dry run on
    a quiet log therefore writes nothing. Then the context is closed (match pool,
    policy engine).
    """
    if not is_up_to_date(db_engine):
        raise ConfigurationError(
            "VEILMATCH_DATABASE_URL", "schema is not up to date; run `veilmatch db upgrade`"
        )
    ctx = build_context(settings, db_engine, create_keys=False)
    log: Any = ctx.audit.log  # type: ignore[attr-defined]

    def checkpoint_if_grown(size: int) -> None:
        if log.tree_size() > size:
            ctx.audit.flush()

    try:
        size = log.tree_size()
        try:
            yield stores(ctx), batch_recorder(ctx)
        except BaseException:
            with contextlib.suppress(Exception):  # keep the sweep's own error
                checkpoint_if_grown(size)
            raise
        checkpoint_if_grown(size)
    finally:
        ctx.pool.close(wait=True)
        ctx.policy.engine.close()  # type: ignore[attr-defined]
        ctx.keys.close()

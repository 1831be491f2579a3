"""`veilmatch retention …`: show the periods in force and run a retention sweep."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(help="Retention: periods in force and sweeps.", no_args_is_help=True)

#: The service provides its stores here (looked up by name, so ``policy`` does not
#: import ``service``): ``record_stores(settings, db_engine)`` is a context manager
#: yielding ``(stores, on_batch)``, where ``on_batch(batch, conn)`` appends the batch's
#: audit event; on exit it checkpoints the audit log if the sweep wrote to it.
PROVIDER = "service.retention"


@app.callback()
def _group() -> None:
    """Retention commands."""


@app.command("periods")
def periods() -> None:
    """Print the retention periods of the active bundle (kind, state, days, then)."""
    from policy.engine import RETENTION_PERIODS
    from policy.factory import engine_from_settings
    from veilmatch.settings import load_settings

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
    import importlib
    from datetime import UTC, datetime

    from policy.errors import RetentionError
    from policy.factory import engine_from_settings
    from policy.retention import sweep
    from veilmatch.db import make_engine
    from veilmatch.settings import load_settings

    settings = load_settings()
    try:
        provider = importlib.import_module(PROVIDER).record_stores
    except (ImportError, AttributeError) as exc:
        raise RetentionError(
            f"no record stores: {PROVIDER}.record_stores(settings, db_engine) is not "
            f"available ({type(exc).__name__}: {exc})"
        ) from None
    db = make_engine(settings)
    try:
        engine, _ = engine_from_settings(settings)
        try:
            with provider(settings, db) as (stores, on_batch):
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

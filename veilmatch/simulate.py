"""``veilmatch simulate``: a compressed day of 640,000 crossings against a local service.

Starts a fresh local deployment (:mod:`veilmatch.localrun`), seeds a synthetic
watchlist, registers gates at Shenzhen Bay and Lo Wu, runs :class:`veilmatch.simulator.
Simulation`, stops the service, reconciles the audit log and prints one JSON summary.
Heavy imports happen inside the command so ``veilmatch --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from veilmatch.localrun import LocalStack, seed_watchlist
from veilmatch.reconcile import reconcile
from veilmatch.simulator import HeGateCrypto, Lane, SimConfig, Simulation, SyntheticPopulation

__all__ = ["simulate"]


def simulate(
    watchlist: Annotated[int, typer.Option(min=1, help="Synthetic watchlist entries.")] = 1000,
    gates: Annotated[int, typer.Option(min=2, help="Gates, split between the two sites.")] = 48,
    hit_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of travellers on the watchlist.")
    ] = 0.01,
    wall_seconds: Annotated[
        float, typer.Option(min=1.0, help="Real seconds the simulated window takes.")
    ] = 120.0,
    start_hour: Annotated[float, typer.Option(min=0, max=23.99, help="Local start hour.")] = 6.0,
    hours: Annotated[float, typer.Option(min=0.01, max=24, help="Simulated hours.")] = 18.0,
    peak_rate: Annotated[
        float, typer.Option(min=0.1, help="Real probes per second in the rush hour.")
    ] = 8.0,
    database_url: Annotated[
        str, typer.Option(help="Database URL (default: SQLite in the data directory).")
    ] = "",
    data_dir: Annotated[Path, typer.Option(help="Wiped and reused per run.")] = Path(
        "var/simulate"
    ),
    seed: Annotated[int, typer.Option(help="Random seed (arrivals, travellers).")] = 1,
    quiet: Annotated[bool, typer.Option(help="No progress line.")] = False,
) -> None:
    """Many gates send real encrypted probes over mutual TLS following the daily profile."""
    config = SimConfig(
        start_hour=start_hour,
        hours=hours,
        wall_seconds=wall_seconds,
        peak_probes_per_s=peak_rate,
        hit_rate=hit_rate,
        seed=seed,
    )
    progress = None if quiet else sys.stderr
    sites = [("shenzhen-bay", "sb"), ("lo-wu", "lw")]
    pairs = [(f"{sites[i % 2][1]}-{i // 2 + 1:02d}", sites[i % 2][0]) for i in range(gates)]

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    stack = LocalStack.create(
        data_dir, gates=[g for g, _ in pairs], wipe=True, database_url=database_url
    )
    population = SyntheticPopulation.generate(
        watchlist, rng=np.random.default_rng(seed), threshold=stack.settings.match_threshold
    )
    say(f"seeding {watchlist} synthetic watchlist entries (enrol + approve, audited)")
    seed_watchlist(stack.settings, population.watchlist, now=stack.now())
    say("starting the service")
    stack.start()
    try:
        say(f"registering {gates} gates")
        clients = stack.register_gates(pairs, lambda: HeGateCrypto.generate())
        lanes = [Lane(clients[g], site) for g, site in pairs]
        simulation = Simulation(lanes, population, config=config, progress=progress)
        summary = simulation.run()
        for client in clients.values():
            client.close()
    finally:
        exit_code = stack.stop()
    check = reconcile(
        stack.settings,
        {r.query_id for r in simulation.records if r.query_id},
        {r.query_id: r.outcome for r in simulation.records if r.query_id},
        export_dir=data_dir / "audit-export",
    )
    out = json.loads(summary.to_json())
    out["service_exit"] = exit_code
    out["reconciliation"] = check.to_dict()
    typer.echo(json.dumps(out, sort_keys=True))
    if not check.ok or summary.oracle_mismatches:
        raise typer.Exit(1)

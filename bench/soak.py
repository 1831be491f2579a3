"""Soak test: paced traffic for a long time, watching for leaks and drift.

One run = a fresh local deployment (``veilmatch.localrun``: the real service in a child
process with its scoring workers, real TLS and mutual TLS, SQLite or PostgreSQL, the
audit log), a synthetic watchlist, ``--gates`` registered gates and, for
``--duration`` seconds (15 minutes by default; shorter for a smoke run):

- one lane per gate starting a real encrypted search every ``60 / --per-gate-per-min``
  seconds (paced by start time, below the match policy's per-gate limit), each a match
  and its reveal; the probe is encrypted once per gate before the run, so the load is
  the service's, not the gates' (the machine is shared);
- an officer polling ``GET /api/v1/alerts`` every ``--poll`` seconds and an
  unauthenticated request now and then (login throttle and denial counters stay busy);
- every ``--interval`` seconds a sample of the service's process group from ``/proc``:
  resident memory (RSS, MB) of the service process and of its workers, open file
  descriptors, database connections (PostgreSQL: backends with the run's
  ``application_name``; SQLite: descriptors open on the database file, one per pooled
  connection), and the latency percentiles of the searches that finished in that
  interval.

Then the service stops gracefully, the run is reconciled (every acknowledged search is
in the verified audit log) and one JSON object is printed with the samples and a
``drift`` summary: memory growth as a least-squares slope (MB per hour, after the first
quarter of the run, which is warm-up: caches and allocator pools fill), descriptor and
connection counts first and last, and the p50/p95 latency of the last third of the run
against the first third. Linux only (``/proc``).

    python -m bench.soak --duration 900 --backend sqlite
    python -m bench.soak --duration 60 --interval 10   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.load import DEFAULT_POSTGRES_URL, _pg_schema, machine

__all__ = ["ProcessSample", "drift", "main", "sample_group"]


@dataclass(frozen=True)
class ProcessSample:
    """Resources of one process group at one moment (MB, counts)."""

    main_rss_mb: float
    workers_rss_mb: float
    main_fds: int
    workers_fds: int
    processes: int
    db_files_open: int


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[2]) == pgid:  # fields: state, ppid, pgrp, ...
            members.append(int(entry.name))
    return sorted(members)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0  # kB
    return 0.0


def _fds(pid: int, db_files: Sequence[str]) -> tuple[int, int]:
    """(open descriptors, those open on one of ``db_files``)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    names = list(fd_dir.iterdir())
    on_db = 0
    for name in names:
        try:
            if os.readlink(name) in db_files:
                on_db += 1
        except OSError:
            continue
    return len(names), on_db


def sample_group(pgid: int, db_files: Sequence[str] = ()) -> ProcessSample:
    """RSS and descriptors of the process ``pgid`` and the rest of its group."""
    main_rss = workers_rss = 0.0
    main_fds = workers_fds = db_open = 0
    members = _group_members(pgid)
    for pid in members:
        try:
            rss = _rss_mb(pid)
            fds, on_db = _fds(pid, db_files)
        except OSError:
            continue
        db_open += on_db
        if pid == pgid:
            main_rss, main_fds = rss, fds
        else:
            workers_rss += rss
            workers_fds += fds
    return ProcessSample(
        round(main_rss, 1), round(workers_rss, 1), main_fds, workers_fds, len(members), db_open
    )


def _slope_per_hour(times_s: Sequence[float], values: Sequence[float]) -> float | None:
    if len(times_s) < 3:
        return None
    slope = np.polyfit(np.asarray(times_s), np.asarray(values), 1)[0]
    return round(float(slope) * 3600.0, 2)


def drift(
    samples: Sequence[dict[str, Any]], latencies: Sequence[tuple[float, float]]
) -> dict[str, Any]:
    """Growth and drift over a run: ``samples`` as in the output, ``latencies`` as
    ``(finished at s, seconds)`` per search."""
    if not samples:
        return {}
    duration = samples[-1]["t_s"]
    settled = [s for s in samples if s["t_s"] >= duration / 4] or list(samples)
    rss = [s["rss_mb"]["total"] for s in settled]
    out: dict[str, Any] = {
        "rss_mb_first": samples[0]["rss_mb"]["total"],
        "rss_mb_last": samples[-1]["rss_mb"]["total"],
        "rss_mb_max": max(s["rss_mb"]["total"] for s in samples),
        "rss_growth_mb_per_h_after_warmup": _slope_per_hour([s["t_s"] for s in settled], rss),
        "fds_first": samples[0]["fds"]["total"],
        "fds_last": samples[-1]["fds"]["total"],
        "fds_max": max(s["fds"]["total"] for s in samples),
        "db_connections_first": samples[0]["db_connections"],
        "db_connections_last": samples[-1]["db_connections"],
        "db_connections_max": max(s["db_connections"] for s in samples),
    }
    first = [v for t, v in latencies if t < duration / 3]
    last = [v for t, v in latencies if t >= 2 * duration / 3]
    for p in (50, 95):
        if first and last:
            a, b = float(np.percentile(first, p)), float(np.percentile(last, p))
            out[f"p{p}_s_first_third"] = round(a, 4)
            out[f"p{p}_s_last_third"] = round(b, 4)
            out[f"p{p}_ratio_last_to_first"] = round(b / a, 3) if a > 0 else None
    return out


@dataclass
class _Run:
    """Shared state of the lanes, the poller and the sampler."""

    t0: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    decisions: dict[str, str] = field(default_factory=dict)
    polls: Counter[int] = field(default_factory=Counter)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def _lane(run: _Run, client: Any, probe: bytes, per_min: float, key: bytes) -> None:
    from gate.client import ServiceRefusedError, ServiceUnreachableError, pseudonymise

    interval = 60.0 / per_min
    next_start = time.monotonic() + secrets.randbelow(1000) / 1000.0 * interval
    while not run.stop.wait(max(0.0, next_start - time.monotonic())):
        next_start = time.monotonic() + interval
        doc = pseudonymise(key, f"HK-{secrets.randbelow(10**8):08d}")
        begun = time.perf_counter()
        try:
            outcome = client.send_probe(probe, doc)
        except (ServiceRefusedError, ServiceUnreachableError) as exc:
            with run.lock:
                run.errors[str(getattr(exc, "code", "unreachable"))] += 1
            continue
        with run.lock:
            run.latencies.append((run.elapsed(), time.perf_counter() - begun))
            run.decisions[outcome.query_id] = outcome.outcome


def _poller(run: _Run, stack: Any, every_s: float, password: str) -> None:
    """An officer's alert list (signing in again when the 15-minute token lapses), and
    an anonymous caller every tenth round."""
    rounds = 0
    with stack.staff() as client:
        while not run.stop.wait(every_s):
            rounds += 1
            try:
                auth = {"Authorization": f"Bearer {stack.tokens['officer']}"}
                status = client.get("/api/v1/alerts", headers=auth).status_code
                if status == 401:
                    stack.login("officer", password)
                if rounds % 10 == 0:
                    client.get("/api/v1/alerts")
            except httpx.HTTPError:
                status = 0
            with run.lock:
                run.polls[status] += 1


def _db_connections(settings: Any, app_name: str | None, admin_url: str | None) -> int:
    if app_name is None or admin_url is None:
        return -1
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"
            return int(conn.execute(text(query), {"n": app_name}).scalar_one())
    finally:
        engine.dispose()


def _sample(run: _Run, stack: Any, db: dict[str, Any], last: list[int]) -> dict[str, Any]:
    assert stack.process is not None
    proc = sample_group(stack.process.pid, db["files"])
    with run.lock:
        fresh = run.latencies[last[0] :]
        last[0] = len(run.latencies)
        errors = sum(run.errors.values())
    from veilmatch.simulator import percentiles

    connections = (
        _db_connections(stack.settings, db["app_name"], db["admin_url"])
        if db["app_name"]
        else proc.db_files_open
    )
    return {
        "t_s": round(run.elapsed(), 1),
        "rss_mb": {
            "service": proc.main_rss_mb,
            "workers": proc.workers_rss_mb,
            "total": round(proc.main_rss_mb + proc.workers_rss_mb, 1),
        },
        "fds": {
            "service": proc.main_fds,
            "workers": proc.workers_fds,
            "total": proc.main_fds + proc.workers_fds,
        },
        "processes": proc.processes,
        "db_connections": connections,
        "searches": len(fresh),
        "errors_total": errors,
        "latency_s": percentiles([v for _t, v in fresh]),
    }


def _traffic(
    args: argparse.Namespace,
    stack: Any,
    clients: dict[str, Any],
    population: Any,
    db: dict[str, Any],
    password: str,
) -> dict[str, Any]:
    """Run lanes, poller and sampler for ``args.duration`` seconds; the raw results."""
    rng = np.random.default_rng(args.seed + 1)
    probes = {
        gate: client.he.encrypt(population.traveller(False, rng).template)
        for gate, client in clients.items()
    }
    run = _Run(time.monotonic())
    key = secrets.token_bytes(32)
    threads = [
        threading.Thread(target=_lane, args=(run, c, probes[g], args.per_gate_per_min, key))
        for g, c in clients.items()
    ]
    threads.append(threading.Thread(target=_poller, args=(run, stack, args.poll, password)))
    for thread in threads:
        thread.start()
    samples, last = [], [0]
    try:
        while not run.stop.wait(args.interval):
            samples.append(_sample(run, stack, db, last))
            print(json.dumps({"sample": samples[-1]}), file=sys.stderr, flush=True)
            if run.elapsed() >= args.duration:
                break
    finally:
        run.stop.set()
        for thread in threads:
            thread.join(timeout=180)
    return {"run": run, "samples": samples}


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    """One complete soak run; returns its JSON object."""
    from veilmatch.localrun import LocalStack, seed_watchlist
    from veilmatch.reconcile import reconcile
    from veilmatch.simulator import HeGateCrypto, SyntheticPopulation

    schema = app_name = None
    database_url = ""
    if args.backend == "postgres":
        schema = f"soak_{uuid.uuid4().hex[:10]}"
        app_name = f"vm-{schema}"
        _pg_schema(args.postgres_url, schema, create=True)
        sep = "&" if "?" in args.postgres_url else "?"
        database_url = f"{args.postgres_url}{sep}application_name={app_name}"
    try:
        stack = LocalStack.create(
            Path(args.data_dir),
            gates=[f"soak-{i:02d}" for i in range(args.gates)],
            wipe=True,
            database_url=database_url,
            database_schema=schema,
            match_workers=args.workers,
        )
        population = SyntheticPopulation.generate(
            args.watchlist,
            rng=np.random.default_rng(args.seed),
            threshold=stack.settings.match_threshold,
        )
        seed_watchlist(stack.settings, population.watchlist, now=stack.now())
        db_file = str(Path(stack.settings.data_dir or ".").resolve() / "veilmatch.db")
        db = {  # each SQLite connection holds one descriptor on the database file
            "files": [db_file],
            "app_name": app_name,
            "admin_url": args.postgres_url if app_name else None,
        }
        stack.start()
        try:
            password = secrets.token_urlsafe(16)
            stack.create_accounts({"officer": ("officer", password)})
            sites = ["shenzhen-bay", "lo-wu"]
            gates = [(f"soak-{i:02d}", sites[i % 2]) for i in range(args.gates)]
            clients = stack.register_gates(gates, HeGateCrypto.generate)
            raw = _traffic(args, stack, clients, population, db, password)
            scraped = stack.scrape_metrics()
            for client in clients.values():
                client.close()
        finally:
            exit_code = stack.stop()
        run: _Run = raw["run"]
        rec = reconcile(
            stack.settings,
            set(run.decisions),
            run.decisions,
            export_dir=Path(args.data_dir) / "export",
        )
        return _report(args, raw, exit_code, rec.to_dict(), scraped)
    finally:
        if schema is not None:
            _pg_schema(args.postgres_url, schema, create=False)


def _report(
    args: argparse.Namespace,
    raw: dict[str, Any],
    exit_code: int,
    rec: dict[str, Any],
    scraped: str,
) -> dict[str, Any]:
    from veilmatch.simulator import percentiles

    run: _Run = raw["run"]
    samples = raw["samples"]
    gallery = [line for line in scraped.splitlines() if line.startswith("veilmatch_gallery")]
    return {
        "bench": "soak",
        "backend": args.backend,
        "duration_s": samples[-1]["t_s"] if samples else 0.0,
        "interval_s": args.interval,
        "gates": args.gates,
        "per_gate_per_min": args.per_gate_per_min,
        "watchlist": args.watchlist,
        "match_workers": args.workers,
        "searches": len(run.latencies),
        "searches_per_s": round(len(run.latencies) / max(1e-9, run.elapsed()), 2),
        "latency_s": percentiles([v for _t, v in run.latencies]),
        "errors": dict(run.errors),
        "alert_polls": {str(k): v for k, v in run.polls.items()},
        "drift": drift(samples, run.latencies),
        "samples": samples,
        "gallery_metric": gallery[:2],
        "service_exit": exit_code,
        "reconciliation": rec,
        "command": "python -m bench.soak " + " ".join(args.argv),
        "machine": machine(),
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=900.0, help="seconds of traffic")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--gates", type=int, default=4)
    parser.add_argument(
        "--per-gate-per-min", type=float, default=20.0, help="searches each gate starts a minute"
    )
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between alert polls")
    parser.add_argument("--watchlist", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1, help="HE scoring worker processes")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--data-dir", default="var/bench-soak")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("VEILMATCH_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument("--out", help="also write the JSON object to this file")
    args = parser.parse_args(list(argv))
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """One soak run; prints its JSON object; non-zero if it did not reconcile."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    result = run_soak(args)
    text = json.dumps(result, sort_keys=True)
    print(text, flush=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if result["reconciliation"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

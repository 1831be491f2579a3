"""Load test: sustained matches per second and end-to-end latency, policy and audit on.

One run = a fresh local deployment (``veilmatch.localrun``: the real service in a child
process, real TLS and mutual TLS, SQLite or PostgreSQL, embedded OPA, the audit log),
a synthetic watchlist of ``--watchlist`` entries seeded with its enrol/approve audit
events, ``--gates`` registered gates, then ``--concurrency`` lanes sending real
encrypted probes back to back for ``--duration`` seconds (after ``--warmup``). Every
lane waits for its decision before the next traveller (closed loop); ``--pace S`` makes
it wait S seconds more, as a gate does while the next traveller walks up, so the
offered load is about ``concurrency / S`` per second and the service has idle time. A
gate never exceeds the match policy's per-minute limit. At the end of the window the
service's ``/metrics`` are read: how many matches used a prepared query
(``prepared_used`` / ``prepared_missed``) and the workers' mean scoring time.

Latency is end to end: gate encryption + match + the gate's reveal + the decision. By
default each gate encrypts its probes before the timed window and the measured
encryption time is added to each request's latency: gates have their own CPUs, and on
this 2-core machine encrypting inline (``--inline-encrypt``) takes CPU from the service
under test. Only inline encryption commits seeds (each probe is new), so only then does
the service prepare each gate's next query (``crypto.he.prepared``); ``--no-prepare``
turns that off in the service for comparison. The synthetic templates come with a
plaintext oracle; every decision is checked against it.

After every run the service stops gracefully and the run is reconciled
(:mod:`veilmatch.reconcile`): each acknowledged query has its audit entries, the log
verifies offline, nothing was lost. One JSON object per run is printed, with the
sustained rate under ``matches_per_s``.

    python -m bench.load --watchlist 10000 --backend sqlite --concurrency 4
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Stay below the match policy's limit of 30 searches per gate per minute.
PER_GATE_PER_MIN = 28


def machine() -> dict[str, Any]:
    """Where a benchmark ran: CPU model and count, Python, OS, git commit."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "commit": commit or None,
    }


class GatePool:
    """Lanes take the gate idle longest; a gate is used by one lane at a time and at most
    ``per_min`` times in any 60 s."""

    def __init__(self, gate_ids: Sequence[str], per_min: int) -> None:
        self._idle: collections.deque[str] = collections.deque(gate_ids)
        self._uses: dict[str, collections.deque[float]] = {g: collections.deque() for g in gate_ids}
        self._cond = threading.Condition()
        self.per_min = per_min

    def take(self) -> str:
        with self._cond:
            while not self._idle:
                self._cond.wait()
            gate = self._idle.popleft()
        uses = self._uses[gate]
        now = time.monotonic()
        while uses and now - uses[0] >= 60.0:
            uses.popleft()
        if len(uses) >= self.per_min:
            time.sleep(60.0 - (now - uses[0]))
            uses.popleft()
        uses.append(time.monotonic())
        return gate

    def give(self, gate: str) -> None:
        with self._cond:
            self._idle.append(gate)
            self._cond.notify()


def scrape_metrics(text: str) -> dict[str, float | None]:
    """From the service's Prometheus text: mean worker scoring ms and how many matches
    used a prepared query (``veilmatch_match_prepared_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "veilmatch_match_prepared_total":
                values[f"prepared_{sample.labels['outcome']}"] = sample.value
            elif sample.name.startswith("veilmatch_he_score_seconds_"):
                values[sample.name.rsplit("_", 1)[1]] = sample.value
    count = values.get("count", 0.0)
    return {
        "score_ms_mean": round(values["sum"] / count * 1e3, 1) if count else None,
        "prepared_used": values.get("prepared_used", 0.0),
        "prepared_missed": values.get("prepared_missed", 0.0),
    }


def run_once(args: argparse.Namespace, watchlist: int, concurrency: int) -> dict[str, Any]:
    """One complete run; returns its JSON object."""
    from gate.client import ServiceRefusedError, ServiceUnreachableError, pseudonymise
    from veilmatch.localrun import LocalStack, seed_watchlist
    from veilmatch.reconcile import reconcile
    from veilmatch.simulator import HeGateCrypto, SyntheticPopulation, percentiles

    phases: dict[str, float] = {}
    schema = None
    database_url = ""
    if args.backend == "postgres":
        schema = f"load_{uuid.uuid4().hex[:10]}"
        database_url = args.postgres_url
        _pg_schema(database_url, schema, create=True)
    gates = [
        (f"{'sb' if i % 2 == 0 else 'lw'}-{i:03d}", "shenzhen-bay" if i % 2 == 0 else "lo-wu")
        for i in range(args.gates)
    ]
    data_dir = Path(args.data_dir) / f"{args.backend}-{watchlist}-{concurrency}"
    try:
        t = time.perf_counter()
        stack = LocalStack.create(
            data_dir,
            gates=[g for g, _ in gates],
            wipe=True,
            database_url=database_url,
            database_schema=schema,
            match_workers=args.workers,
            extra_env={
                "VEILMATCH_HE_PARAMETER_SET": args.parameter_set,
                "VEILMATCH_MATCH_PREPARE": "false" if args.no_prepare else "true",
            },
        )
        rng = np.random.default_rng(args.seed)
        population = SyntheticPopulation.generate(
            watchlist, rng=rng, threshold=stack.settings.match_threshold
        )
        seed_watchlist(stack.settings, population.watchlist, now=stack.now())
        phases["seed_s"] = time.perf_counter() - t
        t = time.perf_counter()
        phases["start_s"] = stack.start()
        try:
            t = time.perf_counter()
            clients = stack.register_gates(gates, lambda: HeGateCrypto.generate(args.parameter_set))
            phases["register_s"] = time.perf_counter() - t
            t = time.perf_counter()
            travellers = {
                g: population.traveller(bool(rng.random() < args.hit_rate), rng) for g, _ in gates
            }
            probes: dict[str, tuple[bytes, float]] = {}
            if not args.inline_encrypt:
                for g, client in clients.items():
                    e0 = time.perf_counter()
                    probes[g] = (client.he.encrypt(travellers[g].template), 0.0)
                    probes[g] = (probes[g][0], time.perf_counter() - e0)
            phases["precompute_s"] = time.perf_counter() - t
            pool = GatePool([g for g, _ in gates], PER_GATE_PER_MIN)
            key = secrets.token_bytes(32)
            lock = threading.Lock()
            results: list[tuple[float, float, float, float, str, int, str]] = []
            acknowledged: set[str] = set()
            decisions: dict[str, str] = {}
            errors: collections.Counter[str] = collections.Counter()
            stop = threading.Event()

            def lane() -> None:
                while not stop.is_set():
                    gate = pool.take()
                    try:
                        client, traveller = clients[gate], travellers[gate]
                        begun = time.monotonic()
                        e0 = time.perf_counter()
                        next_seed = None
                        if args.inline_encrypt:
                            # commits the next probe's seed (ckks-v2): the service
                            # prepares that query while this gate's lane waits
                            sealed = client.encrypt(traveller.template)
                            probe, next_seed = sealed.probe, sealed.next_seed
                            encrypt_s = time.perf_counter() - e0
                        else:
                            probe, encrypt_s = probes[gate]
                        s0 = time.perf_counter()
                        doc = pseudonymise(key, f"HK-{secrets.randbelow(10**8):08d}")
                        try:
                            outcome = client.send_probe(probe, doc, next_seed=next_seed)
                        except (ServiceRefusedError, ServiceUnreachableError) as exc:
                            code = getattr(exc, "code", "unreachable")
                            with lock:
                                errors[str(code)] += 1
                            continue
                        service_s = time.perf_counter() - s0
                        with lock:
                            acknowledged.add(outcome.query_id)
                            decisions[outcome.query_id] = outcome.outcome
                            results.append(
                                (
                                    begun,
                                    time.monotonic(),
                                    encrypt_s + service_s,
                                    service_s,
                                    outcome.outcome,
                                    outcome.hits,
                                    gate,
                                )
                            )
                    finally:
                        pool.give(gate)
                    if args.pace:  # the next traveller walks up to the gate
                        stop.wait(args.pace)

            threads = [threading.Thread(target=lane, daemon=True) for _ in range(concurrency)]
            for thread in threads:
                thread.start()
            # Warm up: the scoring workers JIT-compile their kernels on first use, so the
            # window opens only after every lane has completed two crossings.
            deadline = time.monotonic() + args.warmup + 300
            time.sleep(args.warmup)
            while len(results) < 2 * concurrency and time.monotonic() < deadline:
                time.sleep(0.2)
            phases["warmup_s"] = args.warmup + (time.monotonic() - deadline + 300)
            window_start = time.monotonic()
            time.sleep(args.duration)
            window_end = time.monotonic()
            stop.set()
            for thread in threads:
                thread.join()
            scraped = scrape_metrics(stack.scrape_metrics())
            for client in clients.values():
                client.close()
        finally:
            t = time.perf_counter()
            exit_code = stack.stop()
            phases["stop_s"] = time.perf_counter() - t
        measured = [r for r in results if r[0] >= window_start and r[1] <= window_end]
        window = max(1e-9, window_end - window_start)
        mismatches = 0
        mismatch_examples: list[dict[str, Any]] = []
        for _begun, _done, _lat, _svc, outcome, hits, gate in results:
            traveller = travellers[gate]
            if traveller.near_threshold:
                continue
            n = len(traveller.expected_rows)
            expected = "secondary" if 1 <= n <= 3 else "proceed"
            if hits != n or outcome != expected:
                mismatches += 1
                if len(mismatch_examples) < 5:
                    mismatch_examples.append(
                        {
                            "expected_hits": n,
                            "gate_hits": hits,
                            "expected": expected,
                            "outcome": outcome,
                            "watchlisted": traveller.watchlisted,
                            "expected_scores": sorted(
                                round(float(population.watchlist[r] @ traveller.template), 4)
                                for r in traveller.expected_rows
                            ),
                        }
                    )
        t = time.perf_counter()
        rec = reconcile(stack.settings, acknowledged, decisions, export_dir=data_dir / "export")
        phases["reconcile_s"] = time.perf_counter() - t
        encrypt = [p[1] for p in probes.values()] if probes else []
        out = {
            "bench": "load",
            "backend": args.backend,
            "watchlist": watchlist,
            "concurrency": concurrency,
            "gates": args.gates,
            "match_workers": args.workers,
            "gate_encryption": "inline" if args.inline_encrypt else "precomputed",
            "prepared_queries": args.inline_encrypt and not args.no_prepare,
            "duration_s": round(window, 1),
            "matches": len(measured),
            "matches_per_s": round(len(measured) / window, 2),
            "latency_s": percentiles([r[2] for r in measured]),
            "service_latency_s": percentiles([r[3] for r in measured]),
            "offered_per_s": round(concurrency / args.pace, 2) if args.pace else None,
            # whole run, warm-up included (the service's own counters)
            "worker_score_ms_mean": scraped["score_ms_mean"],
            "prepared_used": scraped["prepared_used"],
            "prepared_missed": scraped["prepared_missed"],
            "gate_encrypt_s": percentiles(encrypt) if encrypt else None,
            "outcomes": dict(collections.Counter(r[4] for r in results)),
            "errors": dict(errors),
            "oracle_mismatches": mismatches,
            "oracle_mismatch_examples": mismatch_examples,
            "service_exit": exit_code,
            "reconciliation": rec.to_dict(),
            "phases_s": {k: round(v, 1) for k, v in phases.items()},
            "command": "python -m bench.load " + " ".join(args.argv),
            "machine": machine(),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        return out
    finally:
        if schema is not None:
            _pg_schema(database_url, schema, create=False)


def _pg_schema(url: str, schema: str, *, create: bool) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if create:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            else:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument(
        "--watchlist", type=int, nargs="+", default=[10_000], help="watchlist sizes (one run each)"
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[4], help="lanes in flight (one run each)"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--gates", type=int, default=80, help="registered gates")
    parser.add_argument("--workers", type=int, default=2, help="HE scoring worker processes")
    parser.add_argument("--hit-rate", type=float, default=0.05)
    parser.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="seconds each lane waits after a crossing before its next traveller (0: back "
        "to back; a real e-channel gate takes a traveller every ~10-15 s)",
    )
    parser.add_argument(
        "--inline-encrypt",
        action="store_true",
        help="encrypt each probe in the lane (and commit the next probe's seed, so the "
        "service can prepare the gate's next query)",
    )
    parser.add_argument(
        "--no-prepare", action="store_true", help="run the service with match_prepare off"
    )
    parser.add_argument(
        "--parameter-set", default="ckks-v2", help="HE parameter set of the service and its gates"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", default="var/bench-load")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("VEILMATCH_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    args = parser.parse_args(list(argv))
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run each size × concurrency; one JSON line each; non-zero if any run failed to reconcile."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    failed = 0
    for watchlist in args.watchlist:
        for concurrency in args.concurrency:
            result = run_once(args, watchlist, concurrency)
            print(json.dumps(result, sort_keys=True), flush=True)
            if not result["reconciliation"]["ok"] or result["oracle_mismatches"]:
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Audit log benchmark: durable batched appends, proof latency, full verification.

Prints one JSON object per measurement. Targets (docs/benchmarks.md): ≥ 10,000
durable entries/s batched on SQLite, proofs < 1 ms, 1M entries verified < 60 s.
In-run baseline for appends: the same leaf rows inserted with plain executemany and no
Merkle tree, in the same database, so the tree's overhead is visible.

    python -m bench.audit_log --backend sqlite             # quick (make bench)
    python -m bench.audit_log --backend sqlite --full      # 1M-entry verification
    python -m bench.audit_log --backend postgres --postgres-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

from audit.events import AuditEvent, EventType
from audit.export import export_log
from audit.log import AuditLog
from audit.note import NoteSigner
from audit.rfc9162 import verify_consistency, verify_inclusion
from audit.sources import DirectorySource
from audit.verify import verify_log
from core.db import make_engine
from core.migrate import upgrade
from core.settings import load_settings

SIGNER = NoteSigner.from_seed("bench.veilmatch/audit", bytes(32))


def _emit(**fields: object) -> None:
    print(json.dumps({"bench": "audit_log", **fields}), flush=True)


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        EventType.MATCH_DECISION,
        f"gate:gate-{i % 40}",
        (f"traveller:t{i:08d}",),
        {"gate": f"gate-{i % 40}", "hits": i % 3, "decision": "proceed"},
        policy_digest="sha256-0f1e2d3c",
        decision_id=f"d-{i}",
    )


@contextmanager
def _database(backend: str, pg_url: str, workdir: Path, name: str) -> Iterator[Engine]:
    if backend == "sqlite":
        settings = load_settings(data_dir=workdir, database_url=f"sqlite:///{workdir / name}.db")
        engine = make_engine(settings)
        upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(load_settings(database_url=pg_url).sqlalchemy_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(load_settings(database_url=pg_url, database_schema=schema))
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _bench_appends(engine: Engine, backend: str, entries: int, batch: int) -> AuditLog:
    log = AuditLog(engine, SIGNER, checkpoint_every=10**12)
    events = [_event(i) for i in range(batch)]
    now = datetime.now(UTC)
    log.append(events[:10], now=now)  # warm-up
    t0 = time.perf_counter()
    done = 0
    while done < entries:
        log.append(events, now=now)
        done += batch
    rate = done / (time.perf_counter() - t0)
    # Baseline: identical leaf rows, plain inserts, no tree, one transaction per batch.
    leaf = b'{"actor":"gate:gate-1","payload_sha256":"' + b"0" * 64 + b'","seq":0,"v":1}'
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE bench_plain (seq BIGINT PRIMARY KEY, leaf BYTEA)"
                if backend == "postgres"
                else "CREATE TABLE bench_plain (seq BIGINT PRIMARY KEY, leaf BLOB)"
            )
        )
    t0 = time.perf_counter()
    for b in range(0, done, batch):
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO bench_plain (seq, leaf) VALUES (:seq, :leaf)"),
                [{"seq": b + j, "leaf": leaf} for j in range(batch)],
            )
    baseline = done / (time.perf_counter() - t0)
    _emit(
        measure="append",
        backend=backend,
        batch=batch,
        entries=done,
        appends_per_s=round(rate),
        baseline_plain_inserts_per_s=round(baseline),
        ratio_to_baseline=round(rate / baseline, 3),
        target_per_s=10_000 if backend == "sqlite" else None,
        durable="sqlite WAL synchronous=FULL" if backend == "sqlite" else "postgres commit",
    )
    return log


def _bench_proofs(log: AuditLog, backend: str, samples: int) -> None:
    cp = log.checkpoint()
    n, root = cp.checkpoint.size, cp.checkpoint.root
    rng = random.Random(7)
    incl: list[float] = []
    cons: list[float] = []
    for _ in range(samples):
        seq = rng.randrange(n)
        t0 = time.perf_counter()
        p = log.inclusion_proof(seq, n)
        incl.append(time.perf_counter() - t0)
        verify_inclusion(seq, n, p.leaf_hash, p.hashes, root)
    olds = [rng.randrange(1, n) for _ in range(samples)]
    for old in olds:
        t0 = time.perf_counter()
        proof = log.consistency_proof(old, n)
        cons.append(time.perf_counter() - t0)
    old = olds[-1]
    verify_consistency(old, n, log.root_at(old), root, proof)
    t0 = time.perf_counter()
    for _ in range(samples):
        verify_inclusion(seq, n, p.leaf_hash, p.hashes, root)
    verify_us = (time.perf_counter() - t0) / samples * 1e6
    held: list[float] = []
    with log.engine.connect() as conn:
        for _ in range(samples):
            seq = rng.randrange(n)
            t0 = time.perf_counter()
            log.inclusion_proof(seq, n, conn=conn)
            held.append(time.perf_counter() - t0)
    for name, xs, includes in (
        ("inclusion_proof", incl, "pool checkout (pre-ping) + 2 indexed queries"),
        ("consistency_proof", cons, "pool checkout (pre-ping) + 2 indexed queries"),
        ("inclusion_proof_held_connection", held, "2 indexed queries on a held connection"),
    ):
        xs.sort()
        _emit(
            measure=name,
            backend=backend,
            tree_size=n,
            samples=samples,
            median_ms=round(statistics.median(xs) * 1e3, 3),
            p99_ms=round(xs[int(len(xs) * 0.99) - 1] * 1e3, 3),
            target_ms=1.0,
            includes=includes,
        )
    _emit(measure="verify_inclusion_cpu", tree_size=n, median_us=round(verify_us, 1))


def _bench_verify(engine: Engine, backend: str, entries: int, workdir: Path) -> None:
    log = AuditLog(engine, SIGNER, checkpoint_every=10**12)
    now = datetime.now(UTC)
    batch = 5000
    events = [_event(i) for i in range(batch)]
    t0 = time.perf_counter()
    for _ in range(0, entries, batch):
        log.append(events, now=now)
        log.checkpoint(now=now) if log.tree_size() % 100_000 == 0 else None
    build_s = time.perf_counter() - t0
    log.checkpoint(now=now)
    out = workdir / "export"
    t0 = time.perf_counter()
    summary = export_log(log, out)
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = verify_log(DirectorySource(out), SIGNER.verifier())
    verify_s = time.perf_counter() - t0
    assert report.size == summary.size and report.payloads_present == summary.size
    _emit(
        measure="full_verification",
        backend=backend,
        entries=report.size,
        checkpoints=report.checkpoints_checked,
        verify_s=round(verify_s, 2),
        verify_entries_per_s=round(report.size / verify_s),
        build_s=round(build_s, 2),
        export_s=round(export_s, 2),
        target_s_per_million=60,
        projected_s_per_million=round(verify_s * 1_000_000 / report.size, 1),
    )


def main(argv: list[str]) -> int:
    """Run the benchmark; returns a process exit code."""
    ap = argparse.ArgumentParser(prog="bench.audit_log")
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--entries", type=int, default=50_000, help="entries appended for the rate")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--proof-samples", type=int, default=1000)
    ap.add_argument("--verify-entries", type=int, default=100_000)
    ap.add_argument("--full", action="store_true", help="1,000,000-entry verification")
    args = ap.parse_args(argv)
    verify_entries = 1_000_000 if args.full else args.verify_entries
    with tempfile.TemporaryDirectory(prefix="vm-audit-bench-") as tmp:
        workdir = Path(tmp)
        with _database(args.backend, args.postgres_url, workdir, "appends") as engine:
            log = _bench_appends(engine, args.backend, args.entries, args.batch)
            _bench_proofs(log, args.backend, args.proof_samples)
        if verify_entries:
            with _database(args.backend, args.postgres_url, workdir, "verify") as engine:
                _bench_verify(engine, args.backend, verify_entries, workdir)

    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

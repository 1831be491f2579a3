"""Policy decisions per second, embedded and HTTP engines, one JSON line per measurement.

Inputs are the Rego test tables (every rule), cycled. Each line carries an in-run
baseline: the raw ``OpaEngine.eval_document`` rate on the same inputs, i.e. OPA's own
evaluator without veilmatch's wrapper (query check, decision id, provenance). The HTTP
engine is measured against the local stand-in server (``policy.local_opa``, the same
evaluator behind Python's ``http.server``), so its number is a floor for a real
``opa run --server`` sidecar, not a measurement of it.

Usage: python -m bench.policy [--seconds 2] [--http-seconds 2]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from policy import engine as queries
from policy._opa import compile_bundle
from policy.bundles import PolicyBundle, default_bundle_dir
from policy.embedded import EmbeddedEngine
from policy.local_opa import LocalOpaServer
from policy.opa_http import HttpEngine

_TABLES = {
    ("veilmatch.access_test", "cases"): queries.ACCESS,
    ("veilmatch.match_test", "cases"): queries.MATCH,
    ("veilmatch.alert_test", "cases"): queries.ALERT,
    ("veilmatch.retention_test", "cases"): queries.RETENTION,
}


def _inputs(bundle: PolicyBundle) -> dict[str, list[dict[str, Any]]]:
    engine = compile_bundle(bundle, include_tests=True)
    out: dict[str, list[dict[str, Any]]] = {}
    for (package, rule), query in _TABLES.items():
        out.setdefault(query, []).extend(
            c["input"] for c in engine.eval_document(f"{package}.{rule}")
        )
    engine.close()
    return out


def _rate(
    call: Callable[[dict[str, Any]], Any], docs: list[dict[str, Any]], seconds: float
) -> tuple[float, float]:
    """(decisions per second, median latency in µs) over ``seconds`` of calls."""
    cycle = itertools.cycle(docs)
    for doc in docs:  # warm the prepared-query cache
        call(doc)
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call(next(cycle))
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, statistics.median(latencies) * 1e6


def _undefined_ok(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    from policy.errors import UndefinedDecisionError

    def call(doc: dict[str, Any]) -> Any:
        try:
            return fn(doc)
        except UndefinedDecisionError:
            return None

    return call


def main(argv: list[str]) -> int:
    """Print one JSON line per (engine, query)."""
    parser = argparse.ArgumentParser(prog="bench.policy")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--http-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    bundle = PolicyBundle.from_dir(default_bundle_dir())
    inputs = _inputs(bundle)
    raw = compile_bundle(bundle)
    embedded = EmbeddedEngine()
    embedded.load(bundle)
    with LocalOpaServer() as server:
        http = HttpEngine(server.url, timeout=5.0)
        http.load(bundle)
        for query, docs in inputs.items():
            raw_call = functools.partial(raw.eval_document, query)
            baseline, baseline_us = _rate(raw_call, docs, args.seconds)
            for name, engine, seconds in (
                ("embedded", embedded, args.seconds),
                ("http", http, args.http_seconds),
            ):
                rate, median_us = _rate(
                    _undefined_ok(functools.partial(engine.evaluate, query)), docs, seconds
                )
                print(
                    json.dumps(
                        {
                            "bench": "policy",
                            "engine": name,
                            "query": query,
                            "inputs": len(docs),
                            "decisions_per_s": round(rate, 1),
                            "median_us": round(median_us, 1),
                            "baseline": "raw OpaEngine.eval_document",
                            "baseline_per_s": round(baseline, 1),
                            "baseline_median_us": round(baseline_us, 1),
                            "ratio_to_baseline": round(rate / baseline, 3),
                        }
                    ),
                    flush=True,
                )
        http.close()
    raw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``make bench``: run every benchmark under ``bench/`` and print their JSON lines.

Each benchmark is a module with a ``main(argv) -> int`` and prints one JSON object per
measurement, each carrying its in-run baseline. ``docs/benchmarks.md`` records the
results with the command that produced them.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: list[tuple[str, list[str]]] = [
    ("policy", ["--seconds", "2", "--http-seconds", "2"]),
    ("gate_pipeline", ["--iterations", "200"]),
    ("gate_agent", ["--n", "100000", "--repeat", "30"]),
    ("audit_log", ["--backend", "sqlite", "--entries", "20000", "--verify-entries", "50000"]),
    ("he_match", ["--n", "10000", "100000", "--d", "128", "--repeat", "5"]),
    ("load", ["--watchlist", "1000", "10000", "100000", "--concurrency", "4", "--duration", "20"]),
    ("load", ["--watchlist", "10000", "--concurrency", "1", "2", "8", "--duration", "20"]),
    ("load", ["--watchlist", "10000", "--backend", "postgres", "--concurrency", "4"]),
]


def main() -> int:
    """Run all registered benchmarks in turn; non-zero if any failed."""
    failed = 0
    for module_name, argv in BENCHMARKS:
        print(f"# bench.{module_name} {' '.join(argv)}", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{module_name}")
        failed += 1 if module.main(argv) else 0
    if not BENCHMARKS:
        print("no benchmarks registered yet", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

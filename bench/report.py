"""Regenerate the generated parts of ``docs/benchmarks.md`` from benchmark JSON lines.

Input: the JSON lines every benchmark in :mod:`bench.run_all` prints (``make bench``
saves them to ``var/bench/results.jsonl``), plus optional extra files (e.g. recorded
``bench.load`` runs at other sizes). Output, inside ``<!-- BEGIN name -->`` /
``<!-- END name -->`` markers only, so the hand-written sections of other components
stay as their authors wrote them:

- ``latest-run``: one table per benchmark (HE core, gate pipeline, audit log, policy
  engine, load test) with the command that produced it and the machine;
- ``load``: the load-test table and two matplotlib plots under ``docs/img/``:
  latency vs watchlist size and throughput vs concurrency.

A section missing from the document is appended. Usage::

    python -m bench.report var/bench/results.jsonl [more.jsonl ...] [--doc docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["flatten", "load_records", "main", "render_tables", "replace_section"]

#: Benchmark name in the JSON lines → module in ``bench/`` (same unless listed).
MODULES = {"he_match": "he_match", "gate_pipeline": "gate_pipeline", "audit_log": "audit_log"}
TITLES = {
    "he_match": "Encrypted 1:N search (HE core)",
    "gate_pipeline": "Gate face pipeline",
    "audit_log": "Audit log",
    "policy": "Policy engine",
    "load": "Load test (end to end)",
}
MAX_COLUMNS = 12
LOAD_COLUMNS = [
    ("backend", "backend"),
    ("watchlist", "watchlist"),
    ("concurrency", "lanes"),
    ("gate_encryption", "gate encryption"),
    ("matches_per_s", "matches/s"),
    ("latency_s.p50", "p50 s"),
    ("latency_s.p95", "p95 s"),
    ("latency_s.p99", "p99 s"),
    ("service_latency_s.p50", "service p50 s"),
    ("errors_total", "errors"),
    ("oracle_mismatches", "oracle mismatches"),
    ("reconciliation.ok", "reconciled"),
]


def load_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every JSON object line of ``paths`` (other lines ignored), in order."""
    out: list[dict[str, Any]] = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "bench" in record:
                out.append(record)
    return out


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted keys; lists are kept as short text."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(map(str, value))[:40]
    return str(value).replace("|", "/")[:60]


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> list[str]:
    lines = ["| " + " | ".join(title for _, title in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |")
    return lines


def _auto_columns(rows: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Columns that vary between rows (first ``MAX_COLUMNS``) and the constant fields."""
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    constant = {
        k: rows[0].get(k)
        for k in keys
        if k not in ("bench", "command", "machine", "at")
        and not k.startswith("machine.")
        and len({json.dumps(r.get(k), sort_keys=True) for r in rows}) == 1
    }
    varying = [
        k
        for k in keys
        if k not in constant
        and k not in ("bench", "command", "at")
        and not k.startswith("machine.")
    ]
    if len(rows) == 1:
        varying, constant = list(constant)[:MAX_COLUMNS], {}
    return [(k, k) for k in varying[:MAX_COLUMNS]], constant


def _machine_line(records: Sequence[dict[str, Any]], fallback: dict[str, Any]) -> str:
    machine = next((r["machine"] for r in records if isinstance(r.get("machine"), dict)), fallback)
    return (
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, Python "
        f"{machine.get('python')}, {machine.get('os')}, commit {machine.get('commit')}."
    )


def _command(bench: str, records: Sequence[dict[str, Any]]) -> str:
    commands = sorted({str(r["command"]) for r in records if r.get("command")})
    if commands:
        return "; ".join(f"`.venv/bin/{c}`" for c in commands)
    from bench.run_all import BENCHMARKS

    module = MODULES.get(bench, bench)
    for name, argv in BENCHMARKS:
        if name == module:
            return f"`.venv/bin/python -m bench.{name} {' '.join(argv)}`".replace(" `", "`")
    return f"`.venv/bin/python -m bench.{module}`"


def render_tables(records: list[dict[str, Any]], machine: dict[str, Any]) -> list[str]:
    """The ``latest-run`` section body: one table per benchmark."""
    by_bench: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_bench[str(record["bench"])].append(record)
    lines = [
        "## Latest `make bench` run (generated by `bench/report.py`)",
        "",
        "Regenerated from the JSON lines of every benchmark; the component sections "
        "above explain the set-ups and baselines. Columns that are the same in every row "
        "are listed under the table.",
        "",
    ]
    order = [*TITLES, *sorted(b for b in by_bench if b not in TITLES)]
    for bench in order:
        rows = by_bench.get(bench)
        if not rows:
            continue
        flat = [flatten(r) for r in rows]
        lines.append(f"### {TITLES.get(bench, bench)}")
        lines.append("")
        lines.append(f"Command: {_command(bench, rows)}. {_machine_line(rows, machine)}")
        lines.append("")
        if bench == "load":
            lines.append("Table, plots and reconciliation: see the load-test section.")
        else:
            columns, constant = _auto_columns(flat)
            lines.extend(_table(flat, columns))
            if constant:
                lines.append("")
                lines.append(
                    "Same in every row: "
                    + "; ".join(f"{k} = {_cell(v)}" for k, v in list(constant.items())[:12])
                    + "."
                )
        lines.append("")
    return lines


def render_load(
    records: list[dict[str, Any]], img_dir: Path, doc: Path, machine: dict[str, Any]
) -> list[str]:
    """The ``load`` section: table, plots, how to read them."""
    rows = [r for r in records if r.get("bench") == "load"]
    lines = ["## Load test and plots (`bench/load.py`, generated by `bench/report.py`)", ""]
    if not rows:
        lines.append("No load-test results in this run.")
        return lines
    lines.append(
        "Each run: a fresh local deployment (service in its own process, real TLS and "
        "mutual TLS, embedded OPA, audit log on), a synthetic watchlist seeded with its "
        f"enrol/approve audit events, {rows[0].get('gates')} registered gates, N lanes "
        "sending real encrypted "
        "probes back to back; latency = gate encryption + match + reveal + decision. "
        "After each run the service stops and the run is reconciled: every acknowledged "
        "query has its audit entries and the exported log passes the offline verifier. "
        + _machine_line(rows, machine)
    )
    lines.append("")
    lines.append("Commands: " + _command("load", rows) + ".")
    lines.append("")
    flat = []
    for r in rows:
        errors = r.get("errors") or {}
        flat.append({**flatten(r), "errors_total": sum(int(v) for v in errors.values())})
    lines.extend(_table(flat, LOAD_COLUMNS))
    kinds = sorted({k for r in rows for k in (r.get("errors") or {})})
    if kinds:
        lines.append("")
        lines.append("Error codes seen: " + ", ".join(f"`{k}`" for k in kinds) + ".")
    lines.append("")
    plots = _plots(rows, records, img_dir)
    rel = Path("img")
    for name, caption in plots:
        lines.append(f"![{caption}]({(rel / name).as_posix()})")
        lines.append("")
    return lines


def _plots(
    rows: list[dict[str, Any]], records: list[dict[str, Any]], img_dir: Path
) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, str]] = []

    # latency vs watchlist size (per backend, the most common concurrency)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    plotted = False
    for backend in sorted({str(r["backend"]) for r in rows}):
        mine = [r for r in rows if r["backend"] == backend]
        lanes = max({int(r["concurrency"]) for r in mine}, key=lambda c: sum(
            1 for r in mine if int(r["concurrency"]) == c))  # fmt: skip
        points = sorted(
            (int(r["watchlist"]), r["latency_s"]) for r in mine if int(r["concurrency"]) == lanes
        )
        if not points:
            continue
        xs = [p[0] for p in points]
        for q, style in (("p50", "-o"), ("p95", "--s"), ("p99", ":^")):
            ax.plot(xs, [p[1].get(q, float("nan")) for p in points], style,
                    label=f"{backend} {q} ({lanes} lanes)")  # fmt: skip
        plotted = True
    he = sorted(
        (int(r["n"]), float(r["service_ms"]) / 1000)
        for r in records
        if r.get("bench") == "he_match" and r.get("d") == 128 and "service_ms" in r
    )
    if he:
        ax.plot([p[0] for p in he], [p[1] for p in he], "-x", color="grey",
                label="HE score only (bench.he_match)")  # fmt: skip
    if plotted:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("watchlist size (entries)")
        ax.set_ylabel("end-to-end latency (s)")
        ax.set_title("Latency vs watchlist size")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(img_dir / "latency_vs_watchlist.png", dpi=110)
        made.append(("latency_vs_watchlist.png", "Latency vs watchlist size"))
    plt.close(fig)

    # throughput vs concurrency (per backend and watchlist size)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    plotted = False
    for backend, size in sorted({(str(r["backend"]), int(r["watchlist"])) for r in rows}):
        points = sorted(
            (int(r["concurrency"]), float(r["matches_per_s"]))
            for r in rows
            if r["backend"] == backend and int(r["watchlist"]) == size
        )
        if len(points) < 2:
            continue
        ax.plot([p[0] for p in points], [p[1] for p in points], "-o",
                label=f"{backend}, {size:,} entries")  # fmt: skip
        plotted = True
    if plotted:
        ax.axhline(25, color="red", linestyle="--", linewidth=1, label="target 25/s")
        ax.axhline(640_000 / 86_400, color="grey", linestyle=":", linewidth=1,
                   label="640,000/day average (7.4/s)")  # fmt: skip
        ax.set_xlabel("concurrent lanes")
        ax.set_ylabel("sustained matches/s")
        ax.set_title("Throughput vs concurrency")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(img_dir / "throughput_vs_concurrency.png", dpi=110)
        made.append(("throughput_vs_concurrency.png", "Throughput vs concurrency"))
    plt.close(fig)
    return made


def replace_section(text: str, name: str, body: Sequence[str]) -> str:
    """Replace what is between the ``name`` markers (append the section if absent)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = "\n".join([begin, *body, end])
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _m: block, text, count=1)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the generated sections of the document from the given JSON-lines files."""
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("results", nargs="+", type=Path, help="JSON-lines files")
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from bench.load import machine

    records = load_records(p for p in args.results if p.exists())
    if not records:
        print("no benchmark records found", file=sys.stderr)
        return 1
    here = machine()
    doc = args.doc
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    text = replace_section(text, "load", render_load(records, doc.parent / "img", doc, here))
    text = replace_section(text, "latest-run", render_tables(records, here))
    doc.write_text(text)
    print(f"wrote {doc} ({len(records)} records)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per traveller on the gate, frame to verdict excluding the network: median vs 60 ms.

What the agent (``gate.agent``) does on the gate for one traveller, timed per stage on
real frames (``bench.gate_pipeline``'s 640×480 JPEGs of the shipped photos, those
the quality gate accepts):

``mrz`` (parse and check digits, keyed pseudonym), ``embed`` (decode, detect, align,
quality, embed: ``FacePipeline.embed_one``), ``encrypt`` (the probe under the gate's
CKKS keys, serialised: ``encrypt_probe``), ``reveal`` (decrypt the service's masked
result and read the positions: ``reveal`` on the serialised result), and ``total``
(the four together, timed on their own pass). The service's part and the two round
trips are not included.

The masked result is a real one, made locally as ``bench.he_match`` does: a gallery of
``--n`` random unit templates (the watchlist; one row is the first traveller's own
template, so the result has a hit) is scored against a probe with ``score_masked``; its
size is what a gate downloads at that watchlist size, and the reveal is timed on it.

Usage: ``python -m bench.gate_agent [--n 100000] [--repeat 40]``; one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.gate_pipeline import _frames
from crypto.he import (
    Gallery,
    GateKeyBundle,
    MaskedResult,
    Probe,
    encrypt_probe,
    get_parameter_set,
    reveal,
    score_masked,
)
from gate.client import pseudonymise
from gate.document import parse_mrz
from gate.errors import QualityError
from gate.pipeline import FacePipeline
from veilmatch.demo_gates import td3_mrz

TARGET_MS = 60.0
MRZ = td3_mrz("K0000001")
TODAY = dt.date(2026, 1, 1)


def _masked_result(keys: Any, template: np.ndarray[Any, Any], n: int, seed: int) -> bytes:
    """A real masked result (bytes) of ``template`` against ``n`` watchlist rows."""
    params = keys.params
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, template.shape[0])).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows[n // 2] = template
    gallery = Gallery.build(rows, params)
    data = encrypt_probe(keys, template.astype(np.float64)).to_bytes()
    probe = Probe.from_bytes(data, max_size=len(data))
    masked, _ = score_masked(probe, gallery, 0.36, keys.public())
    return bytes(masked.to_bytes())


def _stages(
    pipeline: FacePipeline, keys: Any, result: bytes, key: bytes
) -> dict[str, Callable[[Any], Any]]:
    """Each stage as a function of the previous stage's output."""
    return {
        "mrz": lambda _frame: pseudonymise(key, parse_mrz(MRZ, today=TODAY).number),
        "embed": lambda frame: pipeline.embed_one(frame),
        "encrypt": lambda template: encrypt_probe(keys, template.astype(np.float64)).to_bytes(),
        "reveal": lambda _probe: sorted(set(reveal(keys, MaskedResult.from_bytes(result)))),
    }


def _traveller(stages: dict[str, Callable[[Any], Any]], frame: bytes) -> list[int]:
    pseudonym = stages["mrz"](frame)
    assert pseudonym
    probe = stages["encrypt"](stages["embed"](frame))
    return list(stages["reveal"](probe))


def _accepted(pipeline: FacePipeline, frame: bytes) -> bool:
    """Whether the frame passes the quality gate (a refused traveller is never encrypted)."""
    try:
        pipeline.embed_one(frame)
    except QualityError:
        return False
    return True


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2)}


def measure(n: int, repeat: int, parameter_set: str) -> dict[str, Any]:
    """Build everything (untimed), then time ``repeat`` travellers stage by stage and
    ``repeat`` travellers whole; the JSON record."""
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = FacePipeline(Path(tmp))
        pipeline.warmup()
        frames = [f for f in _frames(pipeline) if _accepted(pipeline, f)]
        keys = GateKeyBundle.generate(get_parameter_set(parameter_set))
        t0 = time.perf_counter()
        result = _masked_result(keys, pipeline.embed_one(frames[0]), n, seed=n)
        setup_s = time.perf_counter() - t0
        stages = _stages(pipeline, keys, result, b"k" * 32)
        hits = _traveller(stages, frames[0])  # warm-up: kernels from the cache, allocations
        laps: dict[str, list[float]] = {name: [] for name in stages}
        cpu: dict[str, list[float]] = {name: [] for name in stages}
        for i in range(repeat):
            value: Any = frames[i % len(frames)]
            for name, stage in stages.items():
                t, c = time.perf_counter(), time.process_time()
                out = stage(value)
                laps[name].append((time.perf_counter() - t) * 1e3)
                cpu[name].append((time.process_time() - c) * 1e3)
                value = value if name == "mrz" else out  # the MRZ feeds no later stage
        totals, total_cpu = [], []
        for i in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            _traveller(stages, frames[i % len(frames)])
            totals.append((time.perf_counter() - t) * 1e3)
            total_cpu.append((time.process_time() - c) * 1e3)
    total = _stats(totals)
    return {
        "bench": "gate_agent",
        "watchlist": n,
        "params": parameter_set,
        "repeat": repeat,
        "frame": "640x480 jpeg",
        "result_bytes": len(result),
        "result_ciphertexts": MaskedResult.from_bytes(result).count,
        "hit_revealed": bool(hits),
        "stages": {name: _stats(samples) for name, samples in laps.items()},
        "total": total,
        "cpu_ms": {
            **{name: round(statistics.median(v), 2) for name, v in cpu.items()},
            "total": round(statistics.median(total_cpu), 2),
        },
        "target_ms": TARGET_MS,
        "meets_target": total["median_ms"] <= TARGET_MS,
        "setup_s": round(setup_s, 1),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 1),
        "python": platform.python_version(),
    }


def main(argv: list[str]) -> int:
    """Print the JSON record; non-zero if the median misses the target."""
    parser = argparse.ArgumentParser(prog="bench.gate_agent")
    parser.add_argument("--n", type=int, default=100_000, help="watchlist size")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--params", default="ckks-v2")
    args = parser.parse_args(argv)
    record = measure(args.n, args.repeat, args.params)
    print(json.dumps(record), flush=True)
    return 0 if record["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

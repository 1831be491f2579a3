"""Gate simulator: many gates sending real encrypted probes over mutual TLS.

Each simulated gate is a :class:`gate.client.GateClient` with its own certificate,
Ed25519 signing key and CKKS keys (:class:`HeGateCrypto`); every traveller's template
is encrypted under that gate's key, sent, revealed and decided by the real service.
Arrivals follow a daily profile of 640,000 crossings (:class:`DailyProfile`, rush
hours in the morning and evening, closed 00:00-06:30 as the match policy says), with
time compressed so a day fits in minutes: each probe stands for ``crossings_per_probe``
crossings.

Templates are synthetic (:class:`SyntheticPopulation`): unit vectors built so that a
traveller who is on the watchlist scores well above the threshold and everyone else
well below, and the simulator knows the plaintext answer for every probe (the
*oracle*). Real-face accuracy is the gate pipeline's calibration, not this module's.

Usage::

    population = SyntheticPopulation.generate(10_000, rng=np.random.default_rng(1), threshold=0.42)
    lanes = [Lane(client, site) for client, site in registered_clients]
    summary = Simulation(lanes, population, profile=DailyProfile(), config=SimConfig()).run()
    print(summary.to_json())
"""

from __future__ import annotations

import json
import math
import queue
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from crypto.he import GateKeyBundle, MaskedResult, encrypt_probe, get_parameter_set, reveal
from gate.client import (
    GateClient,
    MatchOutcome,
    ServiceRefusedError,
    ServiceUnreachableError,
    pseudonymise,
)

__all__ = [
    "DailyProfile",
    "HeGateCrypto",
    "Lane",
    "SimConfig",
    "Simulation",
    "SimulationSummary",
    "SyntheticPopulation",
    "Traveller",
    "percentiles",
]

Template = npt.NDArray[np.float32]

#: Crossings per day at Shenzhen Bay and Lo Wu together (the brief's figure).
DAILY_CROSSINGS = 640_000

#: Share of the day's crossings in each local hour (00-23, Hong Kong time). Closed
#: 00:00-06:30 (the match policy's opening hours); rush hours 08:00 and 18:00 reach
#: three times the all-day average (640,000/day ≈ 7.4/s, peak ≈ 22/s).
HOURLY_WEIGHTS: tuple[float, ...] = (
    0, 0, 0, 0, 0, 0, 0.5, 3, 8.5, 5, 3.5, 3, 3, 3, 3, 3.5, 4.5, 6, 8.5, 5, 3.5, 2.5, 1.5, 1,
)  # fmt: skip

#: Largest masked result a gate accepts (a 100k gallery gives about 5 MB).
MAX_RESULT_BYTES = 64 << 20


class HeGateCrypto:
    """:class:`gate.client.GateCrypto` over ``crypto.he``: the gate's own CKKS keys."""

    def __init__(self, keys: Any) -> None:
        self.keys = keys
        self._public = keys.public().to_bytes()

    @classmethod
    def generate(cls, parameter_set: str = "ckks-v2") -> HeGateCrypto:
        """Fresh keys under the named parameter set."""
        return cls(GateKeyBundle.generate(get_parameter_set(parameter_set)))

    def public_bundle(self) -> bytes:
        """The serialized public key bundle sent at registration."""
        return bytes(self._public)

    @property
    def single_ciphertext(self) -> bool:
        """Whether probes are one seeded ciphertext (ckks-v2)."""
        return bool(self.keys.params.single_ciphertext)

    def encrypt(self, template: Template, seed: bytes | None = None) -> bytes:
        """Serialized probe for a unit-norm template (under ``seed``, if given)."""
        return bytes(encrypt_probe(self.keys, template, seed=seed).to_bytes())

    def reveal(self, masked_result: bytes) -> list[int]:
        """Positive positions of a masked result (values never leave this object)."""
        parsed = MaskedResult.from_bytes(masked_result, max_size=MAX_RESULT_BYTES)
        return [int(p) for p in reveal(self.keys, parsed)]


@dataclass(frozen=True)
class DailyProfile:
    """Crossings per second over a day in Hong Kong local time.

    ``rate(local_s)`` is piecewise constant per hour: ``crossings_per_day × weight(h) /
    Σ weights / 3600``.
    """

    crossings_per_day: int = DAILY_CROSSINGS
    weights: tuple[float, ...] = HOURLY_WEIGHTS

    def __post_init__(self) -> None:
        if len(self.weights) != 24 or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError("weights must be 24 non-negative numbers with a positive sum")
        if self.crossings_per_day <= 0:
            raise ValueError("crossings_per_day must be positive")

    def rate(self, local_s: float) -> float:
        """Crossings per second at ``local_s`` seconds after local midnight."""
        hour = int(local_s // 3600) % 24
        return self.crossings_per_day * self.weights[hour] / sum(self.weights) / 3600.0

    @property
    def peak_rate(self) -> float:
        """Crossings per second in the busiest hour."""
        return self.crossings_per_day * max(self.weights) / sum(self.weights) / 3600.0

    @property
    def average_rate(self) -> float:
        """Crossings per second averaged over 24 hours."""
        return self.crossings_per_day / 86400.0

    def crossings_between(self, start_s: float, end_s: float) -> float:
        """Expected crossings between two local times (seconds after midnight)."""
        total, t = 0.0, start_s
        while t < end_s:
            step = min(end_s, (math.floor(t / 3600) + 1) * 3600) - t
            total += self.rate(t) * step
            t += step
        return total


@dataclass(frozen=True)
class Traveller:
    """One crossing: the template the gate embeds and what the plaintext oracle says."""

    index: int
    template: Template
    expected_rows: tuple[int, ...]
    near_threshold: bool
    document: str
    watchlisted: bool


class SyntheticPopulation:
    """A synthetic watchlist and travellers with a known plaintext answer.

    Watchlist templates are random unit vectors in the first ``dim - free`` coordinates.
    A watchlisted traveller is their template plus noise (cosine ≈ 0.85). Everyone else
    is mostly in the last ``free`` coordinates, so their scores stay far below the
    threshold even against 100,000 entries. The oracle is the float64 score against
    ``threshold``, which must be the service's ``match_threshold``.
    """

    def __init__(
        self,
        watchlist: Template,
        *,
        threshold: float,
        free: int = 32,
        near: float = 1e-3,
        traders: int = 50,
    ) -> None:
        if watchlist.ndim != 2 or watchlist.shape[1] <= free:
            raise ValueError("watchlist must be (n, dim) with dim > free")
        self.watchlist = np.ascontiguousarray(watchlist, dtype=np.float32)
        self.threshold = threshold
        self.free = free
        self.near = near
        self._w64 = self.watchlist.astype(np.float64)
        self._counter = 0
        self._lock = threading.Lock()
        self.trader_documents = [f"HK-T{i:05d}" for i in range(traders)]

    @classmethod
    def generate(
        cls, size: int, *, dim: int = 128, rng: np.random.Generator, **kwargs: Any
    ) -> SyntheticPopulation:
        """``size`` random watchlist templates of ``dim`` components."""
        free = int(kwargs.get("free", 32))
        w = np.zeros((size, dim), dtype=np.float64)
        w[:, : dim - free] = rng.standard_normal((size, dim - free))
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        return cls(w.astype(np.float32), **kwargs)

    @property
    def dim(self) -> int:
        return int(self.watchlist.shape[1])

    def traveller(self, watchlisted: bool, rng: np.random.Generator) -> Traveller:
        """A new traveller; ``watchlisted`` picks a random watchlist entry to be."""
        dim, free = self.dim, self.free
        if watchlisted and len(self.watchlist):
            row = int(rng.integers(len(self.watchlist)))
            noise = rng.standard_normal(dim)
            noise *= 0.6 / np.linalg.norm(noise)
            v = self._w64[row] + noise
            document = self.trader_documents[row % len(self.trader_documents)]
        else:
            a = np.zeros(dim)
            a[: dim - free] = rng.standard_normal(dim - free)
            b = np.zeros(dim)
            b[dim - free :] = rng.standard_normal(free)
            v = 0.4 * a / np.linalg.norm(a) + b / np.linalg.norm(b)
            document = f"HK-{rng.integers(10**8):08d}"
        v /= np.linalg.norm(v)
        scores = self._w64 @ v if len(self.watchlist) else np.zeros(0)
        rows = tuple(int(i) for i in np.flatnonzero(scores > self.threshold))
        near = bool(np.any(np.abs(scores - self.threshold) < self.near))
        with self._lock:
            self._counter += 1
            index = self._counter
        return Traveller(index, v.astype(np.float32), rows, near, document, watchlisted)


@dataclass
class Lane:
    """One e-channel gate: its client and checkpoint."""

    client: GateClient
    site: str


@dataclass(frozen=True)
class SimConfig:
    """How to compress a day and how many travellers are on the watchlist.

    The simulated day runs from ``start_hour`` for ``hours`` local hours in
    ``wall_seconds`` of real time; ``peak_probes_per_s`` is the real probe rate in the
    busiest hour, which fixes how many crossings each probe stands for.
    """

    start_hour: float = 6.0
    hours: float = 18.0
    wall_seconds: float = 120.0
    peak_probes_per_s: float = 8.0
    hit_rate: float = 0.01
    per_gate_per_min: int = 28
    max_hits: int = 3
    seed: int = 1
    travel_info: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.hit_rate <= 1:
            raise ValueError("hit_rate must be in [0, 1]")
        if self.wall_seconds <= 0 or self.hours <= 0 or self.peak_probes_per_s <= 0:
            raise ValueError("wall_seconds, hours and peak_probes_per_s must be positive")
        if not 0 <= self.start_hour < 24 or self.start_hour + self.hours > 24:
            raise ValueError("the simulated window must lie within one day")

    @property
    def speedup(self) -> float:
        """Simulated seconds per real second."""
        return self.hours * 3600.0 / self.wall_seconds


@dataclass
class Record:
    """What happened to one probe."""

    gate: str
    site: str
    sim_hour: float
    outcome: str
    latency_s: float
    encrypt_s: float
    hits: int
    expected_rows: int
    near_threshold: bool
    watchlisted: bool
    error: str | None = None
    query_id: str | None = None


def percentiles(
    values: Sequence[float], points: Sequence[float] = (50, 95, 99)
) -> dict[str, float]:
    """``{"p50": …}`` in the values' unit, rounded to 0.1 ms; empty input gives NaN-free {}."""
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{p:g}": round(float(np.percentile(arr, p)), 4) for p in points}


@dataclass
class SimulationSummary:
    """The JSON summary of a run (``to_json``)."""

    config: dict[str, Any]
    profile: dict[str, Any]
    gates: int
    watchlist_size: int
    wall_seconds: float
    probes_sent: int
    crossings_represented: int
    outcomes: dict[str, int]
    errors: dict[str, int]
    watchlisted_travellers: int
    alerts_expected: int
    oracle_mismatches: int
    near_threshold_skipped: int
    matches_per_s: float
    latency_s: dict[str, float]
    encrypt_s: dict[str, float]
    per_site: dict[str, int]
    by_hour: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """One JSON object."""
        return json.dumps(asdict(self), sort_keys=True)


class Simulation:
    """Arrivals by the daily profile, served by lanes, recorded and checked against the oracle."""

    def __init__(
        self,
        lanes: Sequence[Lane],
        population: SyntheticPopulation,
        *,
        profile: DailyProfile | None = None,
        config: SimConfig | None = None,
        pseudonym_key: bytes | None = None,
        progress: TextIO | None = sys.stderr,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lanes:
            raise ValueError("at least one lane is needed")
        self.lanes = list(lanes)
        self.population = population
        self.profile = profile or DailyProfile()
        self.config = config or SimConfig()
        self.pseudonym_key = pseudonym_key or secrets.token_bytes(32)
        self.progress = progress
        self.clock = clock
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[tuple[float, Traveller] | None]] = {
            site: queue.Queue() for site in {lane.site for lane in self.lanes}
        }
        sim_peak = max(
            self.profile.rate((self.config.start_hour + h) * 3600.0)
            for h in range(math.ceil(self.config.hours))
        )
        #: Crossings each real probe stands for.
        self.crossings_per_probe = sim_peak * self.config.speedup / self.config.peak_probes_per_s

    # --- arrivals -----------------------------------------------------------------

    def arrivals(self) -> list[tuple[float, float]]:
        """(wall offset s, simulated local hour) of every probe: a thinned Poisson process."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        start_s = cfg.start_hour * 3600.0
        bound = cfg.peak_probes_per_s
        out: list[tuple[float, float]] = []
        t = 0.0
        while True:
            t += float(rng.exponential(1.0 / bound))
            if t >= cfg.wall_seconds:
                return out
            local_s = start_s + t * cfg.speedup
            wall_rate = self.profile.rate(local_s) * cfg.speedup / self.crossings_per_probe
            if rng.random() < wall_rate / bound:
                out.append((t, local_s / 3600.0))

    # --- lanes --------------------------------------------------------------------

    def _serve(self, lane: Lane) -> None:
        cfg = self.config
        work = self._queues[lane.site]
        window: list[float] = []
        while True:
            item = work.get()
            if item is None:
                return
            sim_hour, traveller = item
            # Stay under the match policy's per-gate rate limit (a real lane takes ~10 s).
            now = self.clock()
            window = [t for t in window if now - t < 60.0]
            if len(window) >= cfg.per_gate_per_min:
                time.sleep(max(0.0, 60.0 - (now - window[0])))
            window.append(self.clock())
            doc = pseudonymise(self.pseudonym_key, traveller.document) if cfg.travel_info else None
            started = time.perf_counter()
            encrypt_s = 0.0
            try:
                sealed = lane.client.encrypt(traveller.template)
                encrypt_s = time.perf_counter() - started
                outcome: MatchOutcome = lane.client.send_probe(
                    sealed.probe, doc, next_seed=sealed.next_seed
                )
                record = Record(
                    lane.client.gate_id,
                    lane.site,
                    sim_hour,
                    outcome.outcome,
                    time.perf_counter() - started,
                    encrypt_s,
                    outcome.hits,
                    len(traveller.expected_rows),
                    traveller.near_threshold,
                    traveller.watchlisted,
                    query_id=outcome.query_id,
                )
            except (ServiceRefusedError, ServiceUnreachableError) as exc:
                code = exc.code if isinstance(exc, ServiceRefusedError) else "unreachable"
                record = Record(
                    lane.client.gate_id,
                    lane.site,
                    sim_hour,
                    "error",
                    time.perf_counter() - started,
                    encrypt_s,
                    -1,
                    len(traveller.expected_rows),
                    traveller.near_threshold,
                    traveller.watchlisted,
                    error=code,
                )
            with self._lock:
                self.records.append(record)

    # --- the run ------------------------------------------------------------------

    def run(self) -> SimulationSummary:
        """Dispatch every arrival at its wall time, wait for all lanes, summarise."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed + 1)
        plan = self.arrivals()
        sites = sorted(self._queues)
        site_weights = np.array(
            [sum(1 for lane in self.lanes if lane.site == s) for s in sites], dtype=float
        )
        site_weights /= site_weights.sum()
        threads = [
            threading.Thread(target=self._serve, args=(lane,), daemon=True) for lane in self.lanes
        ]
        for thread in threads:
            thread.start()
        started = self.clock()
        last_report = started
        for offset, sim_hour in plan:
            traveller = self.population.traveller(bool(rng.random() < cfg.hit_rate), rng)
            site = sites[int(rng.choice(len(sites), p=site_weights))]
            delay = started + offset - self.clock()
            if delay > 0:
                time.sleep(delay)
            self._queues[site].put((sim_hour, traveller))
            if self.progress is not None and self.clock() - last_report >= 1.0:
                last_report = self.clock()
                self._report(sim_hour, started)
        for site in sites:
            for _ in range(sum(1 for lane in self.lanes if lane.site == site)):
                self._queues[site].put(None)
        for thread in threads:
            thread.join()
        elapsed = self.clock() - started
        if self.progress is not None:
            self._report(cfg.start_hour + cfg.hours, started, final=True)
        return self.summary(elapsed)

    def _report(self, sim_hour: float, started: float, final: bool = False) -> None:
        assert self.progress is not None
        with self._lock:
            records = list(self.records)
        outcomes = Counter(r.outcome for r in records)
        lat = percentiles([r.latency_s for r in records if r.outcome != "error"], (95,))
        elapsed = max(1e-9, self.clock() - started)
        h = int(sim_hour)
        line = (
            f"\r  sim {h:02d}:{int((sim_hour - h) * 60):02d} HKT | done {len(records):5d} | "
            f"proceed {outcomes['proceed']:5d} | secondary {outcomes['secondary']:3d} | "
            f"errors {outcomes['error']:3d} | p95 {lat.get('p95', 0):.2f} s | "
            f"{len(records) / elapsed:5.1f}/s"
        )
        self.progress.write(line + ("\n" if final else ""))
        self.progress.flush()

    def summary(self, elapsed: float) -> SimulationSummary:
        """Counts, oracle agreement and latencies of the records so far."""
        cfg = self.config
        with self._lock:
            records = list(self.records)
        ok = [r for r in records if r.outcome in ("proceed", "secondary")]
        mismatches = skipped = 0
        for r in ok:
            if r.near_threshold:
                skipped += 1
                continue
            expected = "secondary" if 1 <= r.expected_rows <= cfg.max_hits else "proceed"
            if r.hits != r.expected_rows or r.outcome != expected:
                mismatches += 1
        by_hour = Counter(f"{int(r.sim_hour):02d}" for r in records)
        return SimulationSummary(
            config=asdict(cfg),
            profile={
                "crossings_per_day": self.profile.crossings_per_day,
                "average_per_s": round(self.profile.average_rate, 2),
                "peak_per_s": round(self.profile.peak_rate, 2),
                "speedup": round(cfg.speedup, 1),
                "crossings_per_probe": round(self.crossings_per_probe, 2),
            },
            gates=len(self.lanes),
            watchlist_size=len(self.population.watchlist),
            wall_seconds=round(elapsed, 2),
            probes_sent=len(records),
            crossings_represented=round(len(records) * self.crossings_per_probe),
            outcomes=dict(Counter(r.outcome for r in records)),
            errors=dict(Counter(r.error for r in records if r.error)),
            watchlisted_travellers=sum(r.watchlisted for r in records),
            alerts_expected=sum(
                1 for r in records if 1 <= r.expected_rows <= cfg.max_hits and not r.near_threshold
            ),
            oracle_mismatches=mismatches,
            near_threshold_skipped=skipped,
            matches_per_s=round(len(ok) / elapsed, 2) if elapsed > 0 else 0.0,
            latency_s=percentiles([r.latency_s for r in ok]),
            encrypt_s=percentiles([r.encrypt_s for r in ok]),
            per_site=dict(Counter(r.site for r in records)),
            by_hour=dict(sorted(by_hour.items())),
        )

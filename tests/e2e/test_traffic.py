"""The fault tests' traffic generator stays under the gate rate limit on any machine.

Regression: ``test_database_briefly_unavailable[postgres]`` failed on a quiet, fast
machine with ``{429, 503} == {503}``: its lanes paused a fixed 20 ms between searches,
so a fast service pushed a gate past the match policy's 30 per minute. Here the
"service" answers instantly (the fastest possible machine) and no 60 s window may hold
more searches per gate than the policy allows.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from gate.client import MatchOutcome
from tests.e2e.conftest import Traffic, gate_rate_limit


@dataclass
class InstantGate:
    """A gate client whose searches complete at once; remembers when each started."""

    starts: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, template: Any) -> MatchOutcome:
        with self.lock:
            self.starts.append(time.monotonic())
        return MatchOutcome(uuid.uuid4().hex, "proceed", 0)


class Population:
    def traveller(self, hit: bool, rng: np.random.Generator) -> Any:
        return SimpleNamespace(template=np.zeros(4))


def test_lanes_never_exceed_the_gate_rate_limit_however_fast_the_service() -> None:
    gates = {f"g{i}": InstantGate() for i in range(3)}
    traffic = Traffic(SimpleNamespace(clients=gates, population=Population())).start()
    time.sleep(6.0)
    traffic.stop()
    limit = gate_rate_limit()
    for gate in gates.values():
        assert gate.starts, "the lane never ran"
        # searches this lane would put in the service's 60 s window, scaled to 6 s
        assert len(gate.starts) <= 1 + 6.0 * traffic.per_minute / 60.0
        gaps = np.diff(gate.starts)
        assert (gaps >= 60.0 / limit).all()  # so no 60 s window can hold more than the limit

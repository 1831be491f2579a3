"""The soak benchmark's measurements: a process group's memory, descriptors and open
database files from ``/proc``, and the drift summary over samples."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from typing import Any

from bench.soak import drift, sample_group


def test_sample_group_sees_the_group_and_its_open_database(tmp_path):
    db = tmp_path / "x.db"
    child = subprocess.Popen(  # a group leader holding a database open, with one child
        [
            sys.executable,
            "-c",
            "import sqlite3, subprocess, sys, time; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('create table t(x)'); c.commit(); "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
            "time.sleep(30)",
            str(db),
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            sample = sample_group(child.pid, [str(db)])
            if sample.processes == 2 and sample.db_files_open == 1:
                break
            assert time.monotonic() < deadline, sample
            time.sleep(0.2)
        assert sample.main_rss_mb > 1 and sample.workers_rss_mb > 1
        assert sample.main_fds >= 4 and sample.workers_fds >= 3
        assert sqlite3.connect(db).execute("select count(*) from t").fetchone() == (0,)
    finally:
        os.killpg(child.pid, 9)
        child.wait()


def _sample(t: float, rss: float, fds: int = 40, conns: int = 2) -> dict[str, Any]:
    return {
        "t_s": t,
        "rss_mb": {"total": rss},
        "fds": {"total": fds},
        "db_connections": conns,
    }


def test_drift_reports_growth_after_warmup_and_latency_ratio():
    # warm-up jump in the first quarter, then a steady leak of 1 MB per 100 s = 36 MB/h
    samples = [_sample(0, 100.0), _sample(100, 180.0)] + [
        _sample(t, 200.0 + (t - 300) / 100.0) for t in range(300, 1300, 100)
    ]
    latencies = [(t, 0.1) for t in range(0, 400, 10)] + [(t, 0.15) for t in range(900, 1300, 10)]
    out = drift(samples, latencies)
    assert out["rss_growth_mb_per_h_after_warmup"] == 36.0
    assert out["rss_mb_first"] == 100.0 and out["rss_mb_max"] == 209.0
    assert out["p50_ratio_last_to_first"] == 1.5
    assert out["db_connections_max"] == 2 and out["fds_last"] == 40
    assert drift([], []) == {}

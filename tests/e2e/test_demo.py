"""``make demo`` smoke test: the whole story runs from an empty directory and says what
happened (two gate agents as processes, a holder mismatch, an offline period that
drains, one alert confirmed by two officers, a retention sweep, a verified log)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_from_scratch_and_tells_the_story(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILMATCH_")}
    result = subprocess.run(
        [sys.executable, "-m", "veilmatch.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # two agents and the service on a shared machine
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-2000:]
    assert "every outcome as expected" in out
    assert out.count("-> SECONDARY") == 2 and out.count("-> PROCEED") == 5
    assert "-> SECONDARY holder-mismatch" in out and "nothing sent" in out
    assert "probe queued on disk (encrypted): True" in out
    assert "late outcome SECONDARY" in out
    assert "officer.lee confirms -> status actionable" in out
    assert "crossing records: 6 before, 0 after" in out
    assert "veilmatch audit verify: OK" in out
    assert (tmp_path / "var" / "demo" / "keys" / "ca.crt").is_file()
    assert "UNEXPECTED" not in out

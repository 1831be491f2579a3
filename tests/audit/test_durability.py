"""Crash safety (SIGKILL mid-append) and concurrent writers: acknowledged entries are
never lost, the sequence stays gap-free, and the tree still verifies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from audit.export import export_log
from audit.sources import DirectorySource
from audit.verify import verify_log
from tests.audit.conftest import T0, event, log_signer, make_log

REPO = Path(__file__).resolve().parents[2]


def _dense(engine) -> int:
    with engine.connect() as conn:
        seqs = conn.execute(text("SELECT seq FROM audit_entries ORDER BY seq")).scalars().all()
        size = conn.execute(text("SELECT tree_size FROM audit_head")).scalar_one()
    assert seqs == list(range(len(seqs))), "sequence has gaps or duplicates"
    assert size == len(seqs)
    return len(seqs)


def _acked(path: Path) -> int:
    lines = path.read_text().split("\n") if path.exists() else []
    return max((int(x) for x in lines if x.strip()), default=-1)


def test_sigkill_while_appending_loses_no_acknowledged_entry(engine, db_settings, tmp_path):
    env = dict(os.environ)
    env["VEILMATCH_DATABASE_URL"] = db_settings.database_url
    env["VEILMATCH_DATA_DIR"] = str(tmp_path)
    if db_settings.database_schema:
        env["VEILMATCH_DATABASE_SCHEMA"] = db_settings.database_schema
    env["PYTHONPATH"] = str(REPO)
    ack = tmp_path / "acks"
    rng = random.Random(4)
    for round_no in range(3):
        before = _acked(ack)
        child = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests/audit/appender_child.py"),
                str(ack),
                str(round_no * 10**6),
            ],
            env=env,
            cwd=REPO,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while _acked(ack) < before + 200 and time.monotonic() < deadline:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.05))  # land somewhere inside a transaction
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        size = _dense(engine)
        acked = _acked(ack)
        assert acked > before
        assert acked < size, f"acknowledged seq {acked} missing after SIGKILL (size {size})"
    log = make_log(engine)
    log.checkpoint(now=T0)
    export_log(log, tmp_path / "export")
    report = verify_log(DirectorySource(tmp_path / "export"), log_signer().verifier())
    assert report.size == _dense(engine) and report.checkpoints_checked >= 3


def test_concurrent_writers_produce_one_gap_free_sequence(engine, tmp_path):
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE svc_record (id INTEGER PRIMARY KEY, seq BIGINT)"))
    log = make_log(engine)
    errors: list[BaseException] = []
    committed_in = []
    lock = threading.Lock()

    def plain_writer(w: int) -> None:
        try:
            for b in range(15):
                log.append([event(w * 1000 + b * 10 + j) for j in range(5)], now=T0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def service_writer(w: int) -> None:
        try:
            for b in range(15):
                rid = w * 1000 + b
                try:
                    with engine.begin() as conn:
                        [r] = log.append_in(conn, [event(rid)], now=T0)
                        conn.execute(
                            text("INSERT INTO svc_record (id, seq) VALUES (:i, :s)"),
                            {"i": rid, "s": r.seq},
                        )
                        if b % 4 == 3:
                            raise RuntimeError("rolled back on purpose")
                    with lock:
                        committed_in.append(r.seq)
                except RuntimeError:
                    pass
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=plain_writer, args=(w,)) for w in range(3)]
    threads += [threading.Thread(target=service_writer, args=(w,)) for w in range(3, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    size = _dense(engine)
    rolled_back = 3 * len([b for b in range(15) if b % 4 == 3])
    assert size == 3 * 15 * 5 + 3 * 15 - rolled_back
    # Each committed service record points at its own leaf, and that leaf is its event.
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, seq FROM svc_record")).all()
    assert sorted(s for _, s in rows) == sorted(committed_in)
    for rid, seq in rows:
        payload = log.entries(seq, seq + 1)[0].payload
        assert payload is not None and payload["n"] == rid
    log.checkpoint(now=T0)
    export_log(log, tmp_path / "export")
    assert verify_log(DirectorySource(tmp_path / "export"), log_signer().verifier()).size == size


@pytest.mark.parametrize("n", [1, 2, 3])
def test_concurrent_checkpoints_for_the_same_size_are_idempotent(engine, n):
    log = make_log(engine)
    with engine.begin() as conn:  # append_in never checkpoints on its own
        log.append_in(conn, [event(i) for i in range(n)], now=T0)
    assert log.checkpoint_sizes() == []
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(log.checkpoint(now=T0))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.to_bytes() for r in results}) == 1
    assert log.checkpoint_sizes() == [n]

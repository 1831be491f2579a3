"""The gate agent as an operator runs it: separate processes (``veilmatch gate register``,
``veilmatch gate run``) against a real service over mutual TLS.

One story per backend: init a state directory, have its CSR signed by the CA, register
and get approved; then travellers through the agent: the watchlisted one → secondary
and an alert; an unlisted one → proceed; a bad MRZ → refused locally, nothing sent; a
holder mismatch → secondary, no 1:N query; the service killed → the traveller proceeds
and the probe is queued on disk; the agent restarted with the queue full of it →
nothing lost; the service back → the queue drains and the queued watchlisted probe
raises its alert.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from crypto.devcerts import load_ca, sign_gate_csr
from gate.document import check_digit
from gate.pipeline import FacePipeline
from gate.samples import sample_photos
from gate.state import GateConfig, init_state
from tests.conftest import BACKENDS, POSTGRES_URL
from veilmatch.localrun import LocalStack, seed_watchlist

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def td3(number: str, expiry: str = "300101") -> str:
    """A TD3 MRZ with correct check digits (Doc 9303 part 4 layout)."""
    n, birth = number.ljust(9, "<"), "740812"
    line2 = f"{n}{check_digit(n)}UTO{birth}{check_digit(birth)}F{expiry}{check_digit(expiry)}"
    line2 += "<" * 15
    line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:43])
    return "P<UTOTRAVELLER<<TEST".ljust(44, "<") + "\n" + line2 + "\n"


class Gate:
    """Runs ``veilmatch gate …`` in child processes against ``stack``."""

    def __init__(self, stack: LocalStack, state: Path, frames: Path, models: Path) -> None:
        self.stack, self.state, self.frames = stack, state, frames
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), VEILMATCH_MODEL_DIR=str(models))
        self.env["VEILMATCH_DATA_DIR"] = str(state.parent / "gate-data")
        self.env.pop("VEILMATCH_CONFIG", None)

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "veilmatch", "gate", *args]
        command += ["--dir", str(self.state), "--clock-offset-s", repr(self.stack.clock_offset_s)]
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def run(self, *options: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One agent run over the waiting travellers: (verdicts by traveller, log events)."""
        args = ("--frames", str(self.frames), "--once", "--heartbeat-s", "1", *options)
        done = self.cli("run", *args)
        assert done.returncode == 0, done.stderr[-2000:]
        verdicts = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        events = [json.loads(x) for x in done.stderr.splitlines() if x.startswith('{"event"')]
        return {v["traveller"]: v for v in verdicts}, events

    def traveller(self, name: str, photo: Path, mrz: str, portrait: Path | None = None) -> None:
        shutil.copy(photo, self.frames / f"{name}{photo.suffix}")
        if portrait is not None:
            shutil.copy(portrait, self.frames / f"{name}.portrait{portrait.suffix}")
        (self.frames / f"{name}.mrz").write_text(mrz)


def _count(stack: LocalStack, table: str) -> int:
    engine = stack.engine()
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def _database(backend: str) -> dict[str, Any]:
    """LocalStack arguments: SQLite in the data directory, or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        return {}
    schema = f"agent_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return {"database_url": POSTGRES_URL, "database_schema": schema}


@pytest.mark.parametrize("backend", BACKENDS)
def test_agent_against_a_real_service(backend: str, tmp_path: Path):
    photos = {p.key: p.path for p in sample_photos()}
    models = tmp_path / "models"
    pipeline = FacePipeline(models)
    listed = pipeline.embed_one(photos["grace_hopper"].read_bytes())
    database = _database(backend)
    stack = LocalStack.create(tmp_path / "stack", match_workers=1, **database)
    seed_watchlist(stack.settings, np.asarray([listed]), now=stack.now())
    stack.start()
    try:
        state = tmp_path / "gate"
        init_state(
            state,
            GateConfig.new("lw-agent-1", "lo-wu", stack.gate_url),
            pseudonym_key=b"d" * 32,
            ca_cert=stack.pki.ca_cert.read_bytes(),
        )
        ca_cert, ca_key = load_ca(stack.pki.ca_cert.parent)
        csr = (state / "tls.csr").read_bytes()
        (state / "tls.crt").write_bytes(sign_gate_csr(csr, ca_cert, ca_key, gate_id="lw-agent-1"))
        frames = tmp_path / "frames"
        frames.mkdir()
        gate = Gate(stack, state, frames, models)
        registered = gate.cli("register")
        assert registered.returncode == 0, registered.stderr[-2000:]
        pending = json.loads(gate.cli("status", "--json").stdout)
        assert pending["service"]["registration"] == "pending"
        stack.login("admin", stack.admin_password)
        with stack.staff("admin") as admin:
            assert admin.post("/api/v1/gates/lw-agent-1/approve").status_code == 200

        gate.traveller("001", photos["grace_hopper"], td3("E1000001"))
        gate.traveller("002", photos["astronaut"], td3("E1000002"))
        gate.traveller("003", photos["astronaut"], td3("E1000003").replace("E1000003", "E1000004"))
        gate.traveller("004", photos["astronaut"], td3("E1000005"), portrait=photos["grace_hopper"])
        verdicts, _ = gate.run()
        assert (verdicts["001"]["verdict"], verdicts["001"]["reason"]) == ("secondary", "watchlist")
        assert verdicts["002"]["verdict"] == "proceed" and verdicts["002"]["query_id"]
        assert (verdicts["003"]["verdict"], verdicts["003"]["reason"]) == ("secondary", "document")
        assert verdicts["004"]["reason"] == "holder-mismatch"
        assert _count(stack, "svc_pending_queries") == 2  # 003 and 004 sent nothing
        assert _count(stack, "svc_alerts") == 1
        assert not list(frames.glob("*.mrz"))  # all moved to done/

        stack.kill()
        gate.traveller("005", photos["grace_hopper"], td3("E1000006"))
        verdicts, _ = gate.run()
        assert verdicts["005"] | {"time": 0, "elapsed_ms": 0} == verdicts["005"] | {
            "verdict": "proceed",
            "queued": True,
            "time": 0,
            "elapsed_ms": 0,
        }
        again, _ = gate.run()  # the agent restarted, the service still down: kept
        assert again == {}
        offline = json.loads(gate.cli("status", "--json").stdout)
        assert offline["offline_queue"]["items"] == 1
        assert offline["service"]["reachable"] is False

        stack.start()
        _, events = gate.run()
        late = [e for e in events if e["event"] == "late-outcome"]
        assert [e["outcome"] for e in late] == ["secondary"]
        assert _count(stack, "svc_alerts") == 2
        status = json.loads(gate.cli("status", "--json").stdout)
        assert status["offline_queue"]["items"] == 0
        assert status["service"]["registration"] == "approved"
        assert status["agent"]["last_heartbeat"]

        # Rotation: with less than the margin left on the key (here a margin longer than
        # the key's whole lifetime, so every heartbeat rotates), the agent's first
        # heartbeat replaces both keys; the service then accepts only the new ones.
        old_key, old_he = status["service"]["key_id"], status["he_key"]["created_at"]
        gate.traveller("006", photos["grace_hopper"], td3("E1000007"))
        verdicts, events = gate.run("--rotate-before-s", str(400 * 86400))
        rotations = [e["event"] for e in events if "rotat" in e["event"]]
        assert rotations and set(rotations) == {"keys-rotated"}
        rotated = json.loads(gate.cli("status", "--json").stdout)
        assert rotated["service"]["registration"] == "approved"  # signed with the new key
        assert rotated["service"]["key_id"] not in (None, old_key)
        assert rotated["he_key"]["created_at"] != old_he
        # the traveller after the rotation was encrypted under the new HE key and matched
        assert (verdicts["006"]["verdict"], verdicts["006"]["reason"]) == ("secondary", "watchlist")
        assert _count(stack, "svc_alerts") == 3
    finally:
        stack.stop()
        if "database_schema" in database:
            engine, schema = sa.create_engine(POSTGRES_URL), database["database_schema"]
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()

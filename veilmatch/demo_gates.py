"""The demo's gates: real ``veilmatch gate`` agents in child processes (``make demo``).

Each :class:`AgentProcess` is one gate as an operator stands it up: ``veilmatch gate
init`` (state directory, keys 0600, CSR), the CSR signed by the development CA (the
step the deployment CA's holder does with ``veilmatch dev sign-csr``), ``veilmatch gate
register``, approval by the admin through the staff API, then ``veilmatch gate run
--frames DIR`` as a long-running agent. The demo plays the document reader and the
camera: it writes each traveller's frame, optional chip portrait and MRZ into the
frames directory (the MRZ last, by rename, as ``gate.travellers`` requires) and reads
the verdict the agent prints on stdout (one JSON line per traveller); the agent's log
events (JSON lines on stderr) are collected for the offline chapter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

import cv2

from crypto.devcerts import load_ca, sign_gate_csr
from gate.document import check_digit
from veilmatch.localrun import LocalStack, StackError, terminate

__all__ = ["AgentProcess", "run_together", "td3_mrz"]

AGENT_STOP_TIMEOUT_S = 60.0
#: Short enough that the offline backlog drains within seconds of the service's return.
DEMO_HEARTBEAT_S = 1.0


def td3_mrz(number: str, surname: str = "TRAVELLER", expiry: str = "300101") -> str:
    """A passport (TD3) MRZ with correct check digits (ICAO Doc 9303 part 4 layout);
    ``number`` is at most 9 characters of ``A-Z0-9``, ``expiry`` is YYMMDD."""
    n, birth = number.ljust(9, "<"), "740812"
    line2 = f"{n}{check_digit(n)}HKG{birth}{check_digit(birth)}F{expiry}{check_digit(expiry)}"
    line2 += "<" * 15
    line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:43])
    return f"P<HKG{surname}<<DEMO".ljust(44, "<") + "\n" + line2 + "\n"


def run_together(agents: list[AgentProcess], commands: list[list[str]]) -> None:
    """Run one CLI command per gate, all at once (each is mostly Python start-up and
    key generation); ``StackError`` with the first failure's stderr tail."""
    running = [
        subprocess.Popen(  # noqa: S603 - our own CLI
            command, env=agent.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for agent, command in zip(agents, commands, strict=True)
    ]
    failed = []
    for agent, process in zip(agents, running, strict=True):
        _, err = process.communicate(timeout=600)
        if process.returncode != 0:
            failed.append(f"gate {agent.gate_id}: {err.decode(errors='replace')[-500:]}")
    if failed:
        raise StackError("; ".join(failed))


def _gate_env(model_dir: Path, data_dir: Path) -> dict[str, str]:
    """The agents' environment: none of the service's settings, our models and data."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILMATCH_")}
    env.update(
        VEILMATCH_MODEL_DIR=str(model_dir.resolve()),
        VEILMATCH_DATA_DIR=str(data_dir.resolve()),
        PYTHONUNBUFFERED="1",
    )
    return env


class AgentProcess:
    """One gate: its state directory, frames directory and (once started) its agent."""

    def __init__(self, stack: LocalStack, gate_id: str, site: str, root: Path, models: Path):
        self.stack, self.gate_id, self.site = stack, gate_id, site
        self.state, self.frames = root / gate_id / "state", root / gate_id / "frames"
        self.env = _gate_env(models, root / gate_id / "data")
        self.process: subprocess.Popen[str] | None = None
        self.verdicts: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.log_tail: deque[str] = deque(maxlen=20)
        self._changed = threading.Condition()

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "veilmatch", "gate", *args, "--dir", str(self.state)]

    def _cli(self, *args: str, timeout_s: float = 300.0) -> str:
        done = subprocess.run(  # noqa: S603 - our own CLI
            self._command(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"gate {self.gate_id}: {args[0]} failed: {done.stderr[-500:]}")
        return done.stdout

    # -- standing the gate up -----------------------------------------------------

    def init_command(self, pseudonym_key: Path) -> list[str]:
        """``veilmatch gate init`` (kernels compile when the agent starts)."""
        return [
            *self._command("init"),
            *("--gate-id", self.gate_id, "--site", self.site),
            *("--service", self.stack.gate_url, "--pseudonym-key", str(pseudonym_key)),
            *("--ca", str(self.stack.pki.ca_cert), "--no-compile"),
        ]

    def sign_csr(self) -> None:
        """What the CA holder does (``veilmatch dev sign-csr``): certify the gate's key."""
        ca_cert, ca_key = load_ca(self.stack.pki.ca_cert.parent)
        csr = (self.state / "tls.csr").read_bytes()
        pem = sign_gate_csr(csr, ca_cert, ca_key, gate_id=self.gate_id)
        (self.state / "tls.crt").write_bytes(pem)

    def register_command(self) -> list[str]:
        """``veilmatch gate register`` (pending until the admin approves)."""
        return self._command("register", "--clock-offset-s", repr(self.stack.clock_offset_s))

    def status(self) -> dict[str, Any]:
        """``veilmatch gate status --json``."""
        out = self._cli("status", "--json", "--clock-offset-s", repr(self.stack.clock_offset_s))
        return dict(json.loads(out))

    # -- the agent ----------------------------------------------------------------

    def start(self) -> None:
        """``veilmatch gate run --frames DIR`` in the background."""
        self.frames.mkdir(parents=True, exist_ok=True)
        command = self._command("run", "--frames", str(self.frames))
        command += ["--heartbeat-s", repr(DEMO_HEARTBEAT_S)]
        command += ["--clock-offset-s", repr(self.stack.clock_offset_s)]
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI
            command,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        for stream, target in ((self.process.stdout, True), (self.process.stderr, False)):
            threading.Thread(target=self._read, args=(stream, target), daemon=True).start()

    def _read(self, stream: IO[str], verdicts: bool) -> None:
        for line in stream:
            line = line.strip()
            record = _json(line) if line.startswith("{") else None
            with self._changed:
                if record is None:
                    self.log_tail.append(line)
                elif verdicts and "traveller" in record:
                    self.verdicts[str(record["traveller"])] = record
                elif "event" in record:
                    self.events.append(record)
                self._changed.notify_all()

    def submit(self, name: str, frame: Any, mrz: str, portrait: Any = None) -> None:
        """Be the camera and the document reader: frame, portrait, then the MRZ."""
        if not cv2.imwrite(str(self.frames / f"{name}.png"), frame):
            raise StackError("could not write a frame")
        if portrait is not None and not cv2.imwrite(
            str(self.frames / f"{name}.portrait.png"), portrait
        ):
            raise StackError("could not write a portrait")
        partial = self.frames / f".{name}.partial"
        partial.write_text(mrz, encoding="ascii")
        partial.rename(self.frames / f"{name}.mrz")  # the traveller is complete

    def wait_for(self, what: str, found: Any, timeout_s: float) -> Any:
        """Wait until ``found()`` returns something (under the lock), else ``StackError``."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while (result := found()) is None:
                left = deadline - time.monotonic()
                if left <= 0 or (self.process is not None and self.process.poll() is not None):
                    tail = " | ".join(self.log_tail)
                    raise StackError(f"gate {self.gate_id}: no {what} ({tail[-600:]})")
                self._changed.wait(min(left, 1.0))
        return result

    def verdict(self, name: str, timeout_s: float = 300.0) -> dict[str, Any]:
        """The agent's verdict for traveller ``name`` (waits for it)."""
        found = self.wait_for(f"verdict for {name}", lambda: self.verdicts.get(name), timeout_s)
        return dict(found)

    def event(self, kind: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """The first log event of ``kind`` (waits for it)."""

        def first() -> dict[str, Any] | None:
            return next((e for e in self.events if e.get("event") == kind), None)

        return dict(self.wait_for(f"{kind} event", first, timeout_s))

    def stop(self) -> int:
        """SIGTERM: the agent finishes its traveller and exits; its exit status."""
        process = self.process
        if process is None:
            return 0
        code = terminate(process, AGENT_STOP_TIMEOUT_S)
        self.process = None
        return code


def _json(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None

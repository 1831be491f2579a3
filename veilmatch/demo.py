"""``make demo``: one day at two border checkpoints, end to end, on embedded defaults.

What it does (every step is real: HTTPS and mutual TLS, CKKS ciphertexts, the embedded
OPA evaluator, SQLite, the Merkle audit log, ONNX face models on real photos):

1. wipes ``var/demo`` and makes a development CA and the server's certificate and keys;
2. starts the service (``python -m veilmatch.localrun serve``) with its clock pinned to
   12:00 Hong Kong time today, because the match policy only searches while the
   checkpoints are open (06:30-24:00); gates use the same clock;
3. creates staff accounts; stands up a gate at Shenzhen Bay and one at Lo Wu as an
   operator does (``veilmatch gate init``, the CSR signed by the CA, ``veilmatch gate
   register``, the admin approves) and starts each gate's agent as its own process
   (``veilmatch gate run --frames DIR``, ``veilmatch.demo_gates``);
4. an officer proposes three watchlist entries from real photos shipped in installed
   packages (the service embeds them with the gate pipeline) and a supervisor approves
   them (four-eyes);
5. the demo plays camera and document reader: it writes each traveller's frame (made
   from the shipped photos), MRZ and, for some, chip portrait into a gate's frames
   directory and reads the agent's verdict line: a watchlisted person, seen rotated
   and darker, is sent to secondary inspection and raises an alert; others proceed; a
   traveller whose chip portrait shows someone else is sent to secondary (holder
   mismatch) and no query leaves the gate;
6. the service stops; a watchlisted traveller at Lo Wu proceeds on the document check
   while the encrypted probe waits in the gate's offline queue; the service restarts,
   the queue drains at the next heartbeat and the late hit raises its alert;
7. two different officers confirm the first alert (the same officer cannot confirm
   twice); oversight sees counts only (the holder mismatch sent no query);
8. the service stops; the nightly retention sweep runs with the clock advanced two
   days (demo only) and deletes the travel records the policy keeps for one day;
9. the audit log is exported and verified offline with ``veilmatch audit verify``.

Exit status 0 only if every outcome matched what the story expects.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import sqlalchemy as sa

from core.db import make_engine
from core.settings import load_settings
from gate.augment import brightness, rotate
from gate.pipeline import FacePipeline
from gate.samples import face_crops
from service.lifecycle import build_context
from service.retention import run_sweep
from service.tables import crossings
from veilmatch.demo_gates import AgentProcess, run_together, td3_mrz
from veilmatch.localrun import LocalStack, StackError, free_port

__all__ = ["DEMO_DIR", "free_port", "main"]

DEMO_DIR = Path("var/demo")
MODEL_DIR = Path("var/models")  # converted face models are cached across runs
RETENTION_ADVANCE = dt.timedelta(days=2)
STAFF_PASSWORD_BYTES = 18

GATES = [("shenzhen-bay-1", "shenzhen-bay"), ("lo-wu-1", "lo-wu")]
#: Who is on the watchlist (sample-photo person keys, see ``gate.samples``).
WATCHLIST = {"t1#2": "PT-2025-0117", "grace_hopper": "PT-2025-0342", "t1#5": "PT-2025-0409"}
STAFF = {
    "officer.chan": "officer",
    "officer.lee": "officer",
    "supervisor.wong": "supervisor",
    "oversight.ombudsman": "oversight",
}
#: Travellers: (gate, person, chip portrait's person or None, expected (verdict, reason,
#: query sent)). A watchlisted person is photographed rotated and darker.
TRAVELLERS = [
    ("shenzhen-bay-1", "t1#3", None, ("proceed", None, True)),
    ("shenzhen-bay-1", "astronaut", None, ("proceed", None, True)),
    ("shenzhen-bay-1", "t1#2", None, ("secondary", "watchlist", True)),
    ("lo-wu-1", "t1#0", "t1#0", ("proceed", None, True)),
    ("lo-wu-1", "tom_hanks", None, ("proceed", None, True)),
    ("lo-wu-1", "t1#3", "tom_hanks", ("secondary", "holder-mismatch", False)),
]
#: Crosses at the second gate while the service is down (on the watchlist).
OFFLINE_TRAVELLER = "t1#5"


@dataclass
class Story:
    """Numbered, timed lines of the demo's story."""

    started: float
    step: int = 0
    failures: int = 0

    @contextmanager
    def chapter(self, title: str) -> Iterator[list[str]]:
        """Print ``title`` with its duration, then the lines collected inside."""
        self.step += 1
        lines: list[str] = []
        began = time.perf_counter()
        yield lines
        took = time.perf_counter() - began
        print(f"{self.step:>2}. {title}  [{took:.1f} s]")
        for line in lines:
            print(f"      {line}")
        sys.stdout.flush()

    def expect(self, lines: list[str], ok: bool, what: str) -> None:
        """Record a check; a failed one makes the demo exit non-zero."""
        if not ok:
            self.failures += 1
            lines.append(f"UNEXPECTED: {what}")


def _png(image: Any) -> str:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise StackError("could not encode a photo")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _pipeline(stack: LocalStack) -> Any:
    return FacePipeline.from_settings(
        load_settings(data_dir=stack.settings.data_dir, model_dir=MODEL_DIR)
    )


def _check(response: Any, status: int, what: str) -> Any:
    """The JSON body of a response with the expected status, else ``StackError``."""
    if response.status_code != status:
        raise StackError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def run(story: Story) -> None:
    """The whole story; raises on infrastructure errors, counts unexpected outcomes."""
    with story.chapter("bootstrap: fresh data directory, development PKI and keys") as out:
        stack = LocalStack.create(
            DEMO_DIR,
            wipe=True,
            extra_env={"VEILMATCH_MODEL_DIR": str(MODEL_DIR.resolve())},
        )
        hk = stack.now() + dt.timedelta(hours=8)
        out.append(f"data in {DEMO_DIR}/ (wiped); development CA and server certificate")
        out.append(
            f"service clock pinned to {hk:%H:%M} Hong Kong time (real clock "
            f"{stack.clock_offset_s / 3600:+.1f} h): checkpoints are open 06:30-24:00"
        )

    with story.chapter("start the service: staff API (TLS) and gate API (mutual TLS)") as out:
        seconds = stack.start()
        out.append(f"ready in {seconds:.1f} s at {stack.staff_url} and {stack.gate_url}")
        out.append("embedded OPA policy bundle loaded; SQLite database; audit log open")
    try:
        _day(story, stack)
    finally:
        with story.chapter("stop the service (graceful: drain matches, final checkpoint)") as out:
            code = stack.stop()
            out.append(f"exit status {code}")
            story.expect(out, code in (0, -15), "service did not stop cleanly")
    _after_hours(story, stack)


def _day(story: Story, stack: LocalStack) -> None:
    """Opening hours: accounts and gates, enrolment, travellers, an offline period, alert
    review, statistics."""
    passwords = _staff_accounts(story, stack)
    gates = _gates(story, stack)
    try:
        crops = {c.person: c for c in face_crops(_pipeline(stack))}
        _enrol(story, stack, crops)
        _travellers(story, gates, crops)
        _offline_period(story, stack, gates[GATES[1][0]], crops, passwords)
    finally:
        with story.chapter("stop the gate agents (SIGTERM: finish the traveller, exit)") as out:
            for gate_id, agent in gates.items():
                code = agent.stop()
                out.append(f"{gate_id}: exit status {code}")
                story.expect(out, code == 0, f"agent {gate_id} did not stop cleanly")
    _alert_review(story, stack)
    _oversight_statistics(story, stack)


def _staff_accounts(story: Story, stack: LocalStack) -> dict[str, str]:
    """The admin creates the staff accounts; returns their passwords (for re-login)."""
    with story.chapter("staff accounts") as out:
        passwords = {u: secrets.token_urlsafe(STAFF_PASSWORD_BYTES) for u in STAFF}
        stack.create_accounts({u: (role, passwords[u]) for u, role in STAFF.items()})
        out.append("admin created: " + ", ".join(f"{u} ({r})" for u, r in STAFF.items()))
    return passwords


def _gates(story: Story, stack: LocalStack) -> dict[str, AgentProcess]:
    """Each gate as an operator stands it up, then its agent as a separate process."""
    with story.chapter("gates: init, certificate from the CA, register, approve, run") as out:
        root = DEMO_DIR / "gates"
        root.mkdir(parents=True, exist_ok=True)
        key = root / "pseudonym.key"  # the deployment's, shared by its gates, never sent
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        gates = {g: AgentProcess(stack, g, site, root, MODEL_DIR) for g, site in GATES}
        agents = list(gates.values())
        run_together(agents, [a.init_command(key) for a in agents])
        for agent in agents:
            agent.sign_csr()
        run_together(agents, [a.register_command() for a in agents])
        out.append(
            "veilmatch gate init: signing, CKKS and TLS keys (0600) and a CSR per gate; "
            "the development CA signed each CSR (veilmatch dev sign-csr)"
        )
        out.append("veilmatch gate register: both pending until the admin approves")
        stack.login("admin", stack.admin_password)
        with stack.staff("admin") as admin:
            for gate_id, site in GATES:
                _check(admin.post(f"/api/v1/gates/{gate_id}/approve"), 200, f"approve {gate_id}")
                out.append(f"gate {gate_id} at {site}: approved by the admin")
        for agent in gates.values():
            agent.start()
        out.append(
            "veilmatch gate run --frames DIR: two agents started (they load the face "
            "models and the kernels while the watchlist is enrolled)"
        )
    return gates


def _enrol(story: Story, stack: LocalStack, crops: dict[str, Any]) -> None:
    """An officer proposes the watchlist entries from photos; a supervisor approves them."""
    with story.chapter("watchlist: enrol from real photos, four-eyes approval") as out:
        expires = (stack.now() + dt.timedelta(days=90)).isoformat()
        entries: dict[str, str] = {}
        with stack.staff("officer.chan") as officer, stack.staff("supervisor.wong") as sup:
            for person, ref in WATCHLIST.items():
                entry = _check(
                    officer.post(
                        "/api/v1/watchlist/photos",
                        json={
                            "subject_ref": ref,
                            "photos": [_png(crops[person].image)],
                            "legal_basis": "hk-cap60",
                            "category": "parallel_trading",
                            "expires_at": expires,
                        },
                    ),
                    201,
                    f"enrol {ref}",
                )
                refused = officer.post(f"/api/v1/watchlist/{entry['id']}/approve")
                story.expect(out, refused.status_code == 403, "an officer approved an entry")
                _check(sup.post(f"/api/v1/watchlist/{entry['id']}/approve"), 200, "approve")
                entries[entry["id"]] = person
        out.append(
            f"officer.chan proposed {len(entries)} entries ({', '.join(WATCHLIST.values())}) "
            "from photos in installed packages; the service embedded and sealed them"
        )
        out.append("officer.chan could not approve (policy); supervisor.wong approved each")
        out.append("the gallery was re-encoded for matching after each approval")


def _frame(crops: dict[str, Any], person: str, transform: str | None) -> tuple[Any, str]:
    """A traveller's camera frame from the shipped photos, and how it was taken."""
    image = crops[person].image
    if transform == "rot":
        return brightness(rotate(image, -8.0), 0.65), "rotated 8° and 35 % darker"
    if transform == "dim":
        return brightness(image, 0.8), "20 % darker"
    return image, "as photographed"


def _travellers(story: Story, gates: dict[str, AgentProcess], crops: dict[str, Any]) -> None:
    """The demo writes each traveller's frame, chip portrait and MRZ into the gate's
    frames directory; the gate's agent answers with a verdict line."""
    with story.chapter("travellers at the gates: the agents' verdicts") as out:
        for n, (gate_id, person, chip, _) in enumerate(TRAVELLERS, start=1):
            portrait = None if chip is None else _frame(crops, chip, "dim")[0]
            frame, _ = _frame(crops, person, "rot" if person in WATCHLIST else None)
            gates[gate_id].submit(f"{n:04d}", frame, td3_mrz(f"K{n:07d}"), portrait)
        for n, (gate_id, person, chip, expected) in enumerate(TRAVELLERS, start=1):
            verdict = gates[gate_id].verdict(f"{n:04d}")
            how = _frame(crops, person, "rot" if person in WATCHLIST else None)[1]
            listed = "on the watchlist" if person in WATCHLIST else "not listed"
            holder = ""
            if chip is not None:
                whose = "the holder" if chip == person else "someone else"
                holder = f", chip portrait of {whose}"
            out.append(
                f"{gate_id}: traveller {n} ({listed}, {how}{holder}) -> "
                f"{verdict['verdict'].upper()} {verdict['reason'] or ''} "
                f"[frame to verdict {verdict['elapsed_ms']:.0f} ms"
                f"{', query sent' if verdict['query_id'] else ', nothing sent'}]"
            )
            got = (verdict["verdict"], verdict["reason"], bool(verdict["query_id"]))
            story.expect(out, got == expected, f"traveller {n}: expected {expected}, got {got}")
        out.append("the service saw only ciphertexts; each gate learnt only its hit count")
        out.append("the 1:1 holder check ran on the gate; only counters leave it")


def _offline_period(
    story: Story,
    stack: LocalStack,
    agent: AgentProcess,
    crops: dict[str, Any],
    passwords: dict[str, str],
) -> None:
    """The service goes away; a traveller proceeds and the probe waits in the gate's
    encrypted queue; the service returns and the queue drains, raising its alert."""
    with story.chapter("offline: the service stops, a gate queues, the link returns") as out:
        code = stack.stop()
        out.append(f"service stopped (exit status {code}); the agents keep serving")
        frame, how = _frame(crops, OFFLINE_TRAVELLER, "rot")
        agent.submit("0100", frame, td3_mrz("K0000100"))
        verdict = agent.verdict("0100")
        out.append(
            f"{agent.gate_id}: traveller {len(TRAVELLERS) + 1} (on the watchlist, {how}) -> "
            f"{verdict['verdict'].upper()} on the document check, probe queued on disk "
            f"(encrypted): {verdict['queued']}"
        )
        story.expect(
            out,
            (verdict["verdict"], verdict["queued"]) == ("proceed", True),
            "the offline traveller was not queued",
        )
        status = agent.status()
        out.append(
            f"veilmatch gate status: offline queue {status['offline_queue']['items']} "
            f"item(s), service reachable: {status['service']['reachable']}"
        )
        story.expect(out, status["offline_queue"]["items"] == 1, "the queue does not hold it")
        seconds = stack.start()
        for username, password in passwords.items():
            stack.login(username, password)
        out.append(f"service back in {seconds:.1f} s")
        late = agent.event("late-outcome")
        out.append(
            f"{agent.gate_id}: the queue drained at the next heartbeat; late outcome "
            f"{late['outcome'].upper()} (the service raised the alert)"
        )
        story.expect(out, late["outcome"] == "secondary", "the queued probe did not hit")


def _alert_review(story: Story, stack: LocalStack) -> None:
    """Two different officers must confirm the alert; the same one cannot confirm twice."""
    with (
        story.chapter("alert review: two different officers must confirm") as out,
        stack.staff("officer.chan") as chan,
        stack.staff("officer.lee") as lee,
    ):
        alerts = _check(chan.get("/api/v1/alerts"), 200, "list alerts")
        story.expect(out, len(alerts) == 2, f"expected two alerts, got {len(alerts)}")
        live = [a for a in alerts if a.get("gate_id") == GATES[0][0]]
        if not live:
            return
        alert = live[0]
        out.append(
            f"alert {alert['id'][:8]}… at {alert.get('gate_id')}: "
            f"severity {alert.get('severity')}, status {alert.get('status')}"
        )
        path = f"/api/v1/alerts/{alert['id']}/reviews"
        first = _check(
            chan.post(path, json={"verdict": "confirm", "reason": "face matches photo"}),
            200,
            "first review",
        )
        out.append(f"officer.chan confirms -> status {first.get('status')}")
        again = chan.post(path, json={"verdict": "confirm", "reason": "again"})
        story.expect(out, again.status_code in (403, 409), "one officer confirmed twice")
        out.append(f"officer.chan confirms again -> refused (HTTP {again.status_code})")
        second = _check(
            lee.post(path, json={"verdict": "confirm", "reason": "documents checked"}),
            200,
            "second review",
        )
        out.append(f"officer.lee confirms -> status {second.get('status')}")
        story.expect(out, second.get("status") == "actionable", "alert not actionable")
        out.append(f"{len(alerts) - 1} more alert(s) (from the offline queue) await review")


def _oversight_statistics(story: Story, stack: LocalStack) -> None:
    """Oversight sees counts only."""
    with story.chapter("oversight: statistics (counts only)") as out:
        with stack.staff("oversight.ombudsman") as oversight:
            stats = _check(oversight.get("/api/v1/statistics"), 200, "statistics")
        per_gate = {g: sum(d.values()) for g, d in stats["queries_per_gate_per_day"].items()}
        out.append(f"queries per gate: {json.dumps(per_gate, sort_keys=True)}")
        sent = sum(1 for *_, (_v, _r, query) in TRAVELLERS if query) + 1  # + the queued one
        story.expect(out, sum(per_gate.values()) == sent, f"expected {sent} queries")
        out.append(
            f"secondary outcomes {stats['secondary_outcomes']}, alerts {stats['alerts']}, "
            f"confirmations {stats['confirmations']}"
        )
        out.append(f"policy in force {stats['policy_in_force'][:23]}…")


def _after_hours(story: Story, stack: LocalStack) -> None:
    with story.chapter("retention sweep (clock advanced two days, demo only)") as out:
        engine = make_engine(stack.settings)
        try:
            later = stack.now() + RETENTION_ADVANCE
            ctx = build_context(stack.settings, engine, clock=lambda: later)

            def count() -> int:
                with engine.connect() as conn:
                    return int(
                        conn.execute(sa.select(sa.func.count()).select_from(crossings)).scalar_one()
                    )

            before = count()
            removed = run_sweep(ctx, now=later)
            ctx.audit.flush()
            after = count()
        finally:
            engine.dispose()
        out.append(
            f"crossing records: {before} before, {after} after ({removed} records removed "
            "by policy veilmatch.retention; each batch audited as retention.delete)"
        )
        story.expect(out, after == 0 and before > 0, "crossing records not swept")

    with story.chapter("oversight verifies the audit log offline") as out:
        export = DEMO_DIR / "audit-export"
        env = dict(os.environ, **stack.env)
        env.pop("VEILMATCH_CONFIG", None)
        cli = [sys.executable, "-m", "veilmatch"]
        subprocess.run(  # noqa: S603 - our own CLI
            [*cli, "audit", "export", str(export)], env=env, check=True, capture_output=True
        )
        assert stack.settings.key_dir is not None
        verify = subprocess.run(  # noqa: S603 - our own CLI
            [
                *cli,
                "audit",
                "verify",
                str(export),
                "--log-key",
                str(Path(stack.settings.key_dir) / "audit-log.pub"),
                "--state",
                str(DEMO_DIR / "oversight-state.json"),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        story.expect(out, verify.returncode == 0, "audit verification failed")
        if verify.returncode == 0:
            report = json.loads(verify.stdout.strip().splitlines()[-1])
            out.append(
                f"veilmatch audit verify: OK, {report['entries_checked']} entries, "
                f"{report['checkpoints_checked']} signed checkpoints, root "
                f"{report['root'][:16]}…"
            )
        else:
            out.extend(verify.stderr.strip().splitlines()[-5:])


def main() -> int:
    """Run the demo; returns the process exit status."""
    story = Story(time.perf_counter())
    print("veilmatch demo: a day at Shenzhen Bay and Lo Wu (SQLite, embedded OPA)")
    try:
        run(story)
    except StackError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - story.started
    verdict = "every outcome as expected" if not story.failures else f"{story.failures} failed"
    print(f"demo finished in {total:.1f} s: {verdict}")
    return 0 if not story.failures else 1


if __name__ == "__main__":
    sys.exit(main())

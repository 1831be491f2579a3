"""``make demo``: one day at two border checkpoints, end to end, on embedded defaults.

What it does (every step is real: HTTPS and mutual TLS, CKKS ciphertexts, the embedded
OPA evaluator, SQLite, the Merkle audit log, ONNX face models on real photos):

1. wipes ``var/demo`` and makes a development CA, server and gate certificates and keys;
2. starts the service (``python -m veilmatch.localrun serve``) with its clock pinned to
   12:00 Hong Kong time today, because the match policy only searches while the
   checkpoints are open (06:30-24:00); gates use the same clock;
3. creates staff accounts, registers a gate at Shenzhen Bay and one at Lo Wu (each
   with its own signing and CKKS keys) and has the admin approve them;
4. an officer proposes three watchlist entries from real photos shipped in installed
   packages (the service embeds them with the gate pipeline) and a supervisor approves
   them (four-eyes);
5. the gates embed travellers' faces locally, encrypt the templates under their own
   keys and ask the service: a watchlisted person, seen rotated and under different
   lighting, is sent to secondary inspection and raises an alert; others proceed;
6. two different officers confirm the alert (the same officer cannot confirm twice);
7. the service stops; the nightly retention sweep runs with the clock advanced two
   days (demo only) and deletes the travel records the policy keeps for one day;
8. the audit log is exported and verified offline with ``veilmatch audit verify``.

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
import numpy as np
import sqlalchemy as sa

from core.db import make_engine
from core.settings import load_settings
from crypto.he import get_parameter_set
from gate.augment import brightness, rotate
from gate.client import ServiceRefusedError, pseudonymise
from gate.pipeline import FacePipeline
from gate.samples import face_crops
from service.lifecycle import build_context
from service.retention import run_sweep
from service.tables import crossings
from veilmatch.localrun import LocalStack, StackError, free_port
from veilmatch.simulator import HeGateCrypto

__all__ = ["DEMO_DIR", "free_port", "main"]

DEMO_DIR = Path("var/demo")
MODEL_DIR = Path("var/models")  # converted face models are cached across runs
RETENTION_ADVANCE = dt.timedelta(days=2)
STAFF_PASSWORD_BYTES = 18

GATES = [("shenzhen-bay-1", "shenzhen-bay"), ("lo-wu-1", "lo-wu")]
#: Who is on the watchlist (sample-photo person keys, see ``gate.samples``).
WATCHLIST = {"t1#2": "PT-2025-0117", "grace_hopper": "PT-2025-0342", "t1#5": "PT-2025-0409"}
#: Travellers: (gate, person, transform, expected outcome).
TRAVELLERS = [
    ("shenzhen-bay-1", "t1#3", None, "proceed"),
    ("shenzhen-bay-1", "astronaut", None, "proceed"),
    ("shenzhen-bay-1", "t1#2", "rot", "secondary"),
    ("lo-wu-1", "t1#0", None, "proceed"),
    ("lo-wu-1", "tom_hanks", None, "proceed"),
]


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


def _transformed(image: Any) -> tuple[str, Any]:
    """The first rotated and re-lit variant (deterministic) of a face crop."""
    return "rotated 8° and 35 % darker", brightness(rotate(image, -8.0), 0.65)


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
            gates=[g for g, _ in GATES],
            wipe=True,
            extra_env={"VEILMATCH_MODEL_DIR": str(MODEL_DIR.resolve())},
        )
        hk = stack.now() + dt.timedelta(hours=8)
        out.append(f"data in {DEMO_DIR}/ (wiped); CA, server and 2 gate certificates")
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
    except ServiceRefusedError as exc:
        raise StackError(str(exc)) from None
    finally:
        with story.chapter("stop the service (graceful: drain matches, final checkpoint)") as out:
            code = stack.stop()
            out.append(f"exit status {code}")
            story.expect(out, code in (0, -15), "service did not stop cleanly")
    _after_hours(story, stack)


def _day(story: Story, stack: LocalStack) -> None:
    """Opening hours: accounts and gates, enrolment, travellers, alert review, statistics."""
    clients = _staff_and_gates(story, stack)
    pipeline = _pipeline(stack)
    crops = {c.person: c for c in face_crops(pipeline)}
    _enrol(story, stack, crops)
    try:
        _travellers(story, clients, pipeline, crops)
    finally:
        for client in clients.values():
            client.close()  # idle keep-alive connections would delay the graceful stop
    _alert_review(story, stack)
    _oversight_statistics(story, stack)


def _staff_and_gates(story: Story, stack: LocalStack) -> dict[str, Any]:
    """Staff accounts, then each gate registers its keys and the admin approves it."""
    staff = {
        "officer.chan": "officer",
        "officer.lee": "officer",
        "supervisor.wong": "supervisor",
        "oversight.ombudsman": "oversight",
    }
    with story.chapter("staff accounts and gates") as out:
        stack.create_accounts(
            {u: (role, secrets.token_urlsafe(STAFF_PASSWORD_BYTES)) for u, role in staff.items()}
        )
        out.append("admin created: " + ", ".join(f"{u} ({r})" for u, r in staff.items()))
        params = get_parameter_set(stack.settings.he_parameter_set)
        clients = stack.register_gates(GATES, lambda: HeGateCrypto.generate(params.name))
        for gate_id, site in GATES:
            out.append(
                f"gate {gate_id} at {site}: registered its Ed25519 and CKKS public keys, "
                "approved by the admin"
            )
    return clients


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


def _travellers(
    story: Story, clients: dict[str, Any], pipeline: Any, crops: dict[str, Any]
) -> None:
    """Each traveller's face is embedded and encrypted at the gate, then matched."""
    with story.chapter("travellers at the gates: local face pipeline, encrypted probes") as out:
        shared_key = secrets.token_bytes(32)
        query_of: dict[str, str] = {}
        for n, (gate_id, person, transform, expected) in enumerate(TRAVELLERS, start=1):
            image, how = crops[person].image, "as photographed"
            if transform == "rot":
                how, image = _transformed(image)
            t0 = time.perf_counter()
            template = pipeline.embed_one(image)
            t1 = time.perf_counter()
            outcome = clients[gate_id].check(
                np.asarray(template, dtype=np.float32),
                doc_pseudonym=pseudonymise(shared_key, f"K{n:07d}"),
            )
            t2 = time.perf_counter()
            listed = "on the watchlist" if person in WATCHLIST else "not listed"
            out.append(
                f"{gate_id}: traveller {n} ({listed}, {how}) -> {outcome.outcome.upper()} "
                f"[face {1000 * (t1 - t0):.0f} ms, encrypt+match+reveal "
                f"{1000 * (t2 - t1):.0f} ms, {outcome.hits} hit(s) seen by the gate]"
            )
            story.expect(out, outcome.outcome == expected, f"traveller {n}: expected {expected}")
            query_of[outcome.query_id] = person
        out.append("the service saw only ciphertexts; each gate learnt only its hit count")


def _alert_review(story: Story, stack: LocalStack) -> None:
    """Two different officers must confirm the alert; the same one cannot confirm twice."""
    with (
        story.chapter("alert review: two different officers must confirm") as out,
        stack.staff("officer.chan") as chan,
        stack.staff("officer.lee") as lee,
    ):
        alerts = _check(chan.get("/api/v1/alerts"), 200, "list alerts")
        story.expect(out, len(alerts) == 1, f"expected one alert, got {len(alerts)}")
        if not alerts:
            return
        alert = alerts[0]
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


def _oversight_statistics(story: Story, stack: LocalStack) -> None:
    """Oversight sees counts only."""
    with story.chapter("oversight: statistics (counts only)") as out:
        with stack.staff("oversight.ombudsman") as oversight:
            stats = _check(oversight.get("/api/v1/statistics"), 200, "statistics")
        per_gate = {g: sum(d.values()) for g, d in stats["queries_per_gate_per_day"].items()}
        out.append(f"queries per gate: {json.dumps(per_gate, sort_keys=True)}")
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

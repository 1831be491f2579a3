"""Audit test helpers: a deterministic log key, events, and a way to tamper like an
attacker with DDL rights (drop or disable the append-only triggers first)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from audit.events import AuditEvent, EventType
from audit.log import AuditLog
from audit.note import COSIGNATURE_V1, NoteSigner

ORIGIN = "veilmatch.test/audit"
T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def log_signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, bytes(range(32)))


def witness_signer(n: int = 1) -> NoteSigner:
    return NoteSigner.from_seed(f"witness{n}.test/w", bytes([n]) * 32, COSIGNATURE_V1)


def event(i: int, kind: EventType = EventType.MATCH_QUERY) -> AuditEvent:
    return AuditEvent(
        kind,
        f"gate:gate-{i % 3}",
        (f"traveller:t{i:06d}",),
        {"n": i, "gate": f"gate-{i % 3}", "decision": "proceed" if i % 2 else "secondary"},
        policy_digest="sha256-abc123",
        decision_id=f"d-{i}",
    )


def counter_rng():
    state = {"n": 0}

    def rng(k: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(k, "big")

    return rng


def make_log(engine: Engine, **kw) -> AuditLog:
    kw.setdefault("rng", counter_rng())
    kw.setdefault("checkpoint_every", 10**9)
    kw.setdefault("checkpoint_interval", timedelta(days=3650))
    return AuditLog(engine, log_signer(), **kw)


def fill(log: AuditLog, count: int, batch: int = 100, start: int = 0) -> None:
    for i in range(start, start + count, batch):
        n = min(batch, start + count - i)
        log.append([event(j) for j in range(i, i + n)], now=T0 + timedelta(seconds=i))


def disable_guards(engine: Engine) -> None:
    """What an attacker with DDL rights does first: switch off the append-only triggers."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for table in (
                "audit_entries",
                "audit_nodes",
                "audit_ranges",
                "audit_payloads",
                "audit_checkpoints",
                "audit_cosignatures",
            ):
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            names = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type='trigger' AND name LIKE 'audit_%'")
            ).scalars()
            for name in list(names):
                conn.execute(text(f"DROP TRIGGER {name}"))


@pytest.fixture
def audit_log(engine: Engine) -> AuditLog:
    return make_log(engine)

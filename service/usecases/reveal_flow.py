"""Reveal, the second half of a traveller's search: turn the positions the gate found
positive into watchlist entries, ask ``veilmatch.alert``, and answer ``proceed`` or
``secondary``.

The pending mapping is taken (removed) before the policy is asked, so a reveal refused
for its positions still consumes the query: the mapping cannot be probed (see
``docs/api.md``). One transaction then commits the nonce, the revealed query, the alert
and its kept probe when one is raised, the ``match.decision`` (and ``alert.raised``)
audit leaves and the idempotency record.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection

from service import queries, watchlist
from service.alerts import create_alert
from service.audit_events import alert_raised, match_decided
from service.context import ServiceContext
from service.decisions import AlertDecision, ask_alert, keeps
from service.gate_auth import GateRequest
from service.ports import ServiceEvent
from service.schemas import RevealRequest, RevealResponse
from service.scoring.pending import PendingQuery
from service.usecases.common import Reply, body_digest, parse_body, replay

__all__ = ["RaisedAlert", "RevealOutcome", "reveal"]

_CROSSING_WINDOW = dt.timedelta(hours=24)


@dataclass(frozen=True)
class RaisedAlert:
    """What the alert stream announces about a new alert (ids and levels only)."""

    id: str
    severity: str
    gate_id: str

    def announcement(self) -> dict[str, Any]:
        """The alert bus message."""
        return {
            "id": self.id,
            "status": "open",
            "kind": "raised",
            "severity": self.severity,
            "gate_id": self.gate_id,
        }


@dataclass(frozen=True)
class RevealOutcome:
    """A committed reveal: the reply, the outcome counted in metrics (None for a stored
    reply to a retry) and the alert it raised, if any."""

    reply: Reply
    outcome: str | None = None
    alert: RaisedAlert | None = None


@dataclass(frozen=True)
class _Decided:
    """A reveal decided but not yet committed."""

    request: RevealRequest
    digest: str
    pending: PendingQuery
    hits: list[str]
    alert: AlertDecision
    keep_probe: bool


def _ask_alert(
    ctx: ServiceContext, conn: Connection, hits: list[str], doc: str | None, now: dt.datetime
) -> AlertDecision:
    travel: dict[str, Any] = {}
    if doc:
        travel["crossings_24h"] = queries.count_crossings(conn, doc, now - _CROSSING_WINDOW)
    facts = watchlist.hit_facts(conn, hits, now)
    return ask_alert(ctx.policy, {"now": now.isoformat(), "hits": facts, "travel": travel})


def _decide(ctx: ServiceContext, gate: GateRequest) -> _Decided | Reply:
    """Parse, answer a retry from its stored reply, else take the mapping and decide."""
    identity, now = gate.identity, gate.now
    digest = body_digest(gate.body)
    with ctx.reader() as conn:
        req = parse_body(RevealRequest, gate.body)
        cached = replay(ctx, conn, identity.gate_id, req.request_id, "reveal", digest)
        if cached is not None:
            return cached
        pending = ctx.pending.take(req.query_id, identity.gate_id, now)
        rows = ctx.he.resolve(req.positions, pending.mapping)
        hits = sorted({pending.entry_ids[i] for i in rows if 0 <= i < len(pending.entry_ids)})
        alert = _ask_alert(ctx, conn, hits, pending.doc_pseudonym, now)
    keep_probe = alert.alert and keeps(ctx.policy, "probe_ciphertext", "alert_open")
    return _Decided(req, digest, pending, hits, alert, keep_probe)


def _raise_alert(
    conn: Connection, gate: GateRequest, decided: _Decided
) -> tuple[RaisedAlert, ServiceEvent]:
    """Create the alert (and keep its probe when retention says so)."""
    req, pending, alert = decided.request, decided.pending, decided.alert
    entries = alert.alert_entries(decided.hits)
    alert_id = create_alert(
        conn,
        gate_id=gate.identity.gate_id,
        query_id=req.query_id,
        entry_ids=entries,
        reason=alert.reason if alert.reason is not None else "watchlist match",
        severity=alert.severity if alert.severity is not None else "medium",
        decision_id=alert.policy.decision_id,
        bundle_digest=alert.policy.bundle_digest,
        gallery_version=pending.gallery_version,
        now=gate.now,
    )
    if decided.keep_probe:
        queries.keep_probe(conn, req.query_id, alert_id, pending.probe, gate.now)
    event = alert_raised(
        gate.identity.gate_id, alert_id, req.query_id, entries, alert, pending.gallery_version
    )
    return RaisedAlert(alert_id, alert.severity or "", gate.identity.gate_id), event


def _commit(ctx: ServiceContext, gate: GateRequest, decided: _Decided) -> RevealOutcome:
    """Everything the reveal changes, in one (group) commit."""
    req, alert, gate_id = decided.request, decided.alert, gate.identity.gate_id
    outcome = alert.outcome
    payload = RevealResponse(query_id=req.query_id, outcome=outcome).model_dump_json().encode()
    decision_event = match_decided(
        gate_id, req.query_id, decided.hits, alert, decided.pending.gallery_version
    )

    def work(conn: Connection) -> RaisedAlert | None:
        gate.spend_in(conn)
        queries.mark_revealed(conn, req.query_id, outcome, alert.policy.decision_id)
        raised, events = None, [decision_event]
        if alert.alert:
            raised, raised_event = _raise_alert(conn, gate, decided)
            events.append(raised_event)
        ctx.record(conn, *events)
        queries.store_reply(
            conn, gate_id, req.request_id, "reveal", decided.digest, payload, gate.now
        )
        return raised

    raised = ctx.write(work)
    return RevealOutcome(Reply(payload), outcome, raised)


async def reveal(ctx: ServiceContext, gate: GateRequest) -> RevealOutcome:
    """Decide and commit a reveal (or return the stored reply of a retried request id)."""

    def run() -> RevealOutcome:
        decided = _decide(ctx, gate)
        if isinstance(decided, Reply):
            return RevealOutcome(decided)
        return _commit(ctx, gate, decided)

    return await run_in_threadpool(run)

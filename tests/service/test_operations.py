"""Operational behaviour: the SSE alert feed, 503 + Retry-After when the scoring queue
is full, pending queries whose mapping expired (410), per-gate rate limits from policy."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from gate.client import ServiceRefusedError
from service.alerts import create_alert
from service.tables import pending_queries


@pytest.fixture(scope="module")
def gate(service):
    client = service.approved_gate("gate-c", site="lo-wu")
    yield client
    client.close()


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(128)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_alert_feed_streams_review_events(service):
    with service.ctx.transaction() as conn:
        alert_id = create_alert(
            conn,
            gate_id="gate-x",
            query_id="q-feed",
            entry_ids=["e-1"],
            reason="test",
            severity="medium",
            decision_id="d-feed",
            bundle_digest="b-feed",
            gallery_version="g",
            now=service.ctx.now(),
        )
    with (
        service.staff("officer1") as reader,
        service.staff("officer2") as reviewer,
        reader.stream("GET", "/api/v1/alerts/stream") as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: ready"
        resp = reviewer.post(
            f"/api/v1/alerts/{alert_id}/reviews",
            json={"verdict": "dismiss", "reason": "not the person"},
        )
        assert resp.status_code == 200
        for line in lines:
            if line.startswith("data:") and alert_id in line:
                event = json.loads(line.removeprefix("data:").strip())
                assert event == {"id": alert_id, "status": "dismissed", "kind": "review"}
                break
    with service.staff("oversight1") as oversight:  # oversight may not read the feed
        assert oversight.get("/api/v1/alerts/stream").status_code == 403


def test_full_queue_is_503_with_retry_after(service, gate):
    limit = service.ctx.pool.queue_limit
    service.ctx.pool.queue_limit = 0
    try:
        with pytest.raises(ServiceRefusedError) as refused:
            gate.check(_unit(1))
    finally:
        service.ctx.pool.queue_limit = limit
    assert refused.value.status == 503 and refused.value.code == "overloaded"
    probe = gate.he.encrypt(_unit(2))
    body = json.dumps(
        {"request_id": "overload-check-01", "probe": base64.b64encode(probe).decode()}
    ).encode()
    service.ctx.pool.queue_limit = 0
    try:
        headers = gate.signer.sign("POST", "/gate/v1/match", body, now=service.gate_time())
        with service.gate_http("gate-c") as http:
            resp = http.post("/gate/v1/match", content=body, headers=headers)
    finally:
        service.ctx.pool.queue_limit = limit
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert gate.check(_unit(3)).outcome == "proceed"  # and it recovers


def test_reveal_after_the_mapping_expired_is_410(service, gate):
    probe = gate.he.encrypt(_unit(4))
    matched = gate._post(
        "/gate/v1/match",
        {"request_id": "expiry-check-001", "probe": base64.b64encode(probe).decode()},
    )
    dropped = service.ctx.pending.purge(service.ctx.now() + service.ctx.pending_ttl_margin())
    assert matched["query_id"] in dropped
    with pytest.raises(ServiceRefusedError) as gone:
        gate._post(
            "/gate/v1/reveal",
            {"request_id": "expiry-check-001r", "query_id": matched["query_id"], "positions": []},
        )
    assert gone.value.status == 410 and gone.value.code == "query-expired"


def test_forged_positions_are_refused(service, gate):
    probe = gate.he.encrypt(_unit(5))
    matched = gate._post(
        "/gate/v1/match",
        {"request_id": "forged-positions-1", "probe": base64.b64encode(probe).decode()},
    )
    with pytest.raises(ServiceRefusedError) as refused:
        gate._post(
            "/gate/v1/reveal",
            {
                "request_id": "forged-positions-1r",
                "query_id": matched["query_id"],
                "positions": [10**9],
            },
        )
    assert 400 <= refused.value.status < 500


def test_rate_limit_comes_from_the_match_policy(service, gate):
    limit = json.loads(
        (Path(__file__).parents[2] / "policy/bundle/params/match/data.json").read_text()
    )["rate_limit_per_minute"]
    now = service.ctx.now()
    with service.ctx.transaction() as conn:  # earlier searches by this gate, this minute
        for i in range(limit):
            conn.execute(
                pending_queries.insert().values(
                    id=f"rate-{i}",
                    gate_id="gate-c",
                    key_id="k",
                    created_at=now,
                    expires_at=now,
                    gallery_version="g",
                    status="expired",
                )
            )
    try:
        with pytest.raises(ServiceRefusedError) as refused:
            gate.check(_unit(6))
        assert refused.value.status == 429 and refused.value.code == "rate-limited"
        assert "rate-limited" in [
            e.payload["code"] for e in service.audit_entries(types=["access.denied"]) if e.payload
        ]
    finally:
        with service.ctx.transaction() as conn:
            conn.execute(pending_queries.delete().where(pending_queries.c.id.like("rate-%")))

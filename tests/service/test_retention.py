"""Retention of the service's records under the policy, with a controllable clock:
crossing records, kept probes, closed alerts (with their reviews), open alerts nobody
reviewed and audit payloads are deleted or redacted when their period is over, each
batch audited; younger records and partly reviewed alerts stay, and the exported log
still verifies offline."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from audit.events import AuditEvent, EventType
from audit.export import export_log
from audit.sources import DirectorySource
from audit.verify import verify_log
from policy.retention import RetentionBatch
from service.alerts import create_alert
from service.retention import AlertStore, run_sweep
from service.tables import alert_reviews, alerts, crossings, probe_records
from tests.service.conftest import raise_test_alert


def test_sweep_deletes_expired_crossings_and_probes(service, tmp_path):
    ctx = service.ctx
    now = ctx.now()
    with ctx.transaction() as conn:
        for i, age_h in enumerate((1, 30, 50)):
            conn.execute(
                crossings.insert().values(
                    id=f"crossing-{i}",
                    doc_pseudonym="ab" * 32,
                    gate_id="gate-x",
                    at=now - dt.timedelta(hours=age_h),
                )
            )
        alert_id = create_alert(
            conn,
            gate_id="gate-x",
            query_id="q-ret",
            entry_ids=["e"],
            reason="r",
            severity="medium",
            decision_id="d",
            bundle_digest="b",
            gallery_version="g",
            now=now - dt.timedelta(days=40),
        )
        conn.execute(
            alerts.update()
            .where(alerts.c.id == alert_id)
            .values(status="dismissed", closed_at=now - dt.timedelta(days=1))
        )
        conn.execute(
            probe_records.insert().values(
                id="probe-dismissed",
                query_id="q-ret",
                alert_id=alert_id,
                ciphertext=b"\x00" * 64,
                created_at=now - dt.timedelta(days=40),
            )
        )
        young = create_alert(
            conn,
            gate_id="gate-x",
            query_id="q-young",
            entry_ids=["e"],
            reason="r",
            severity="medium",
            decision_id="d",
            bundle_digest="b",
            gallery_version="g",
            now=now,
        )
        conn.execute(
            probe_records.insert().values(
                id="probe-open",
                query_id="q-young",
                alert_id=young,
                ciphertext=b"\x00" * 64,
                created_at=now,
            )
        )
    before = len(service.audit_entries(types=["retention.delete"]))
    removed = run_sweep(ctx, now=now)
    assert removed >= 3
    with ctx.engine.connect() as conn:
        left = set(conn.execute(sa.select(crossings.c.id)).scalars())
        probes = set(conn.execute(sa.select(probe_records.c.id)).scalars())
    assert "crossing-0" in left and not {"crossing-1", "crossing-2"} & left
    assert probes >= {"probe-open"} and "probe-dismissed" not in probes
    events = service.audit_entries(types=["retention.delete"])[before:]
    kinds = {e.payload["kind"] for e in events}
    assert {"crossing_record", "probe_ciphertext"} <= kinds
    assert all(e.header.policy_digest == ctx.policy.bundle_digest for e in events)

    # a sweep is itself audited, and the log still verifies offline afterwards
    log = ctx.audit.log
    ctx.audit.flush()
    export_log(log, tmp_path / "export")
    report = verify_log(DirectorySource(tmp_path / "export"), log.signer.verifier())
    verified_size = report.to_dict()["size"]
    assert isinstance(verified_size, int) and verified_size >= len(events)


def _verify_export(ctx, where):
    log = ctx.audit.log
    ctx.audit.flush()
    export_log(log, where)
    return verify_log(DirectorySource(where), log.signer.verifier()).to_dict()


def _closed_alert(conn, now, name, status, closed_days_ago, reviewers=(), open_days=1):
    alert_id = raise_test_alert(conn, name, now - dt.timedelta(days=closed_days_ago + open_days))
    if status != "open":
        conn.execute(
            alerts.update()
            .where(alerts.c.id == alert_id)
            .values(status=status, closed_at=now - dt.timedelta(days=closed_days_ago))
        )
    verdict = "confirm" if status == "actionable" else "dismiss"
    for i, reviewer in enumerate(reviewers):
        conn.execute(
            alert_reviews.insert().values(
                id=f"review-{name}-{i}",
                alert_id=alert_id,
                reviewer=reviewer,
                role="officer",
                verdict=verdict,
                reason="checked",
                at=now - dt.timedelta(days=closed_days_ago),
            )
        )
    return alert_id


def test_sweep_deletes_and_redacts_expired_closed_alerts(service, tmp_path):
    ctx = service.ctx
    now = ctx.now()
    with ctx.transaction() as conn:
        old_dismissed = _closed_alert(conn, now, "od", "dismissed", 31, ["officer-1"])
        young_dismissed = _closed_alert(conn, now, "yd", "dismissed", 10, ["officer-1"])
        old_confirmed = _closed_alert(
            conn, now, "oc", "actionable", 366, ["officer-1", "officer-2"]
        )
        young_confirmed = _closed_alert(
            conn, now, "yc", "actionable", 200, ["officer-1", "officer-2"]
        )
        open_alert = _closed_alert(conn, now, "op", "open", 20, ["officer-1"])
        conn.execute(
            probe_records.insert().values(
                id="probe-old-confirmed",
                query_id="q-oc",
                alert_id=old_confirmed,
                ciphertext=b"\x00" * 64,
                created_at=now - dt.timedelta(days=400),
            )
        )
    before = len(service.audit_entries(types=["retention.delete"]))
    run_sweep(ctx, now=now)

    with ctx.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(alerts))}
        reviewed = set(conn.execute(sa.select(alert_reviews.c.alert_id)).scalars())
        probes = set(conn.execute(sa.select(probe_records.c.id)).scalars())
    # dismissed 31 days ago: gone with its review; dismissed 10 days ago: kept
    assert old_dismissed not in rows and old_dismissed not in reviewed
    assert rows[young_dismissed].status == "dismissed" and young_dismissed in reviewed
    # confirmed over a year ago: redacted (a count without links), reviews gone
    redacted = rows[old_confirmed]
    assert redacted.status == "redacted" and redacted.entry_ids == "[]"
    assert redacted.query_id == "" and old_confirmed not in reviewed
    assert rows[young_confirmed].status == "actionable" and young_confirmed in reviewed
    assert rows[young_confirmed].entry_ids == '["wl-1"]'
    # a partly reviewed open alert is not swept, and neither are its reviews
    assert rows[open_alert].status == "open" and open_alert in reviewed
    assert "probe-old-confirmed" not in probes

    events = service.audit_entries(types=["retention.delete"])[before:]
    by_action = {e.payload["action"]: e.payload for e in events if e.payload.get("kind") == "alert"}
    assert by_action["delete"]["state"] == "dismissed" and by_action["delete"]["count"] == 1
    assert by_action["redact"]["state"] == "confirmed" and by_action["redact"]["count"] == 1
    assert all(e.header.policy_digest == ctx.policy.bundle_digest for e in events)

    # a second sweep finds nothing more to do with alerts
    again = len(service.audit_entries(types=["retention.delete"]))
    run_sweep(ctx, now=now)
    later = service.audit_entries(types=["retention.delete"])[again:]
    assert not [e for e in later if e.payload.get("kind") == "alert"]
    assert _verify_export(ctx, tmp_path / "export")["payloads_deleted"] == 0


def test_sweep_deletes_old_audit_payloads_once_and_log_still_verifies(service, tmp_path):
    ctx = service.ctx
    log = ctx.audit.log
    now = ctx.now()

    def append(event, days_ago):
        with ctx.transaction() as conn:
            [receipt] = log.append_in(conn, [event], now=now - dt.timedelta(days=days_ago))
        return receipt.seq

    old = [
        append(AuditEvent(EventType.ADMIN, "system", payload={"note": f"old-{i}"}), 200)
        for i in range(3)
    ]
    young = append(AuditEvent(EventType.ADMIN, "system", payload={"note": "young"}), 150)
    old_retention = append(
        AuditEvent(EventType.RETENTION_DELETE, "system", payload={"deleted": [], "reason": "x"}),
        300,
    )
    before = len(service.audit_entries(types=["retention.delete"]))
    run_sweep(ctx, now=now)

    entries = {e.seq: e for e in service.audit_entries()}
    assert all(entries[s].payload is None for s in old)
    assert entries[young].payload == {"note": "young"}
    assert entries[old_retention].payload == {"deleted": [], "reason": "x"}
    # the audit log's own event records the deletion; nobody writes a second one
    events = service.audit_entries(types=["retention.delete"])[before:]
    covering = [e for e in events if any(a <= old[0] < b for a, b in e.payload["deleted"])]
    assert len(covering) == 1
    assert covering[0].payload["deleted"] == [[old[0], old[-1] + 1]]
    assert covering[0].header.policy_digest == ctx.policy.bundle_digest
    assert not [e for e in events if e.payload.get("kind") == "audit_payload"]

    report = _verify_export(ctx, tmp_path / "export")
    assert report["payloads_deleted"] == len(old)
    assert report["size"] == log.tree_size()

    # the next sweep leaves the remaining payloads alone
    run_sweep(ctx, now=now)
    assert entries[young].seq in {e.seq for e in service.audit_entries() if e.payload}


def _open_alert(conn, now, name, age_days, reviewers=(), probe_age_days=None):
    """An open alert raised ``age_days`` ago with ``reviewers`` having confirmed it, and
    its kept probe (stored with the alert, as the gate API does, unless told)."""
    raised = now - dt.timedelta(days=age_days)
    alert_id = raise_test_alert(conn, name, raised)
    for i, reviewer in enumerate(reviewers):
        conn.execute(
            alert_reviews.insert().values(
                id=f"review-{name}-{i}",
                alert_id=alert_id,
                reviewer=reviewer,
                role="officer",
                verdict="confirm",
                reason="looks like a match",
                at=raised + dt.timedelta(days=1),
            )
        )
    probe_at = raised if probe_age_days is None else now - dt.timedelta(days=probe_age_days)
    conn.execute(
        probe_records.insert().values(
            id=f"probe-{name}",
            query_id=f"q-{name}",
            alert_id=alert_id,
            ciphertext=b"\x00" * 64,
            created_at=probe_at,
        )
    )
    return alert_id


def _state(ctx):
    with ctx.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(alerts))}
        reviewed = set(conn.execute(sa.select(alert_reviews.c.alert_id)).scalars())
        probes = set(conn.execute(sa.select(probe_records.c.id)).scalars())
    return rows, reviewed, probes


def _events_since(service, before, kind, state):
    events = service.audit_entries(types=["retention.delete"])[before:]
    return [e for e in events if e.payload.get("kind") == kind and e.payload["state"] == state]


def test_sweep_deletes_never_reviewed_open_alert_with_its_probe(service, tmp_path):
    ctx = service.ctx
    now = ctx.now()
    # counted before the records exist, so a background sweep cannot hide the event
    before = len(service.audit_entries(types=["retention.delete"]))
    with ctx.transaction() as conn:
        old = _open_alert(conn, now, "never-old", 30.5)  # period (30 days) over
        young = _open_alert(conn, now, "never-young", 29.5)  # one day younger
    run_sweep(ctx, now=now)

    rows, _, probes = _state(ctx)
    assert old not in rows and "probe-never-old" not in probes
    assert rows[young].status == "open" and "probe-never-young" in probes

    [event] = _events_since(service, before, "alert", "open")
    assert event.payload["action"] == "delete" and event.payload["count"] == 1
    assert event.payload["retention_days"] == 30 and event.payload["first_decision_id"]
    assert event.payload["deleted"] == []
    assert event.header.policy_digest == ctx.policy.bundle_digest
    # the probe went in its own audited batch, under the policy's probe period
    assert _events_since(service, before, "probe_ciphertext", "alert_open")

    report = _verify_export(ctx, tmp_path / "export")
    assert report["size"] == ctx.audit.log.tree_size()


def test_sweep_keeps_partly_reviewed_open_alert(service):
    ctx = service.ctx
    now = ctx.now()
    before = len(service.audit_entries(types=["retention.delete"]))
    with ctx.transaction() as conn:
        # one officer confirmed, the second has not reviewed yet
        partly = _open_alert(conn, now, "partly", 30.5, reviewers=["officer-1"])
        never = _open_alert(conn, now, "never-same-age", 30.5)
    run_sweep(ctx, now=now)

    rows, reviewed, _ = _state(ctx)
    assert rows[partly].status == "open" and partly in reviewed
    assert never not in rows
    [event] = _events_since(service, before, "alert", "open")
    assert event.payload["count"] == 1


def test_never_reviewed_rule_leaves_closed_alerts_alone(service):
    ctx = service.ctx
    now = ctx.now()
    before = len(service.audit_entries(types=["retention.delete"]))
    with ctx.transaction() as conn:
        # raised long ago, each still within its closed state's period
        dismissed = _closed_alert(conn, now, "cl-d", "dismissed", 5, ["officer-1"], open_days=40)
        confirmed = _closed_alert(
            conn, now, "cl-c", "actionable", 200, ["officer-1", "officer-2"], open_days=40
        )
        # redacted by an earlier sweep: no reviews left, no period
        redacted = _closed_alert(conn, now, "cl-r", "redacted", 400)
        conn.execute(
            alerts.update().where(alerts.c.id == redacted).values(query_id="", entry_ids="[]")
        )
    run_sweep(ctx, now=now)

    rows, reviewed, _ = _state(ctx)
    assert rows[dismissed].status == "dismissed" and dismissed in reviewed
    assert rows[confirmed].status == "actionable" and confirmed in reviewed
    assert rows[redacted].status == "redacted" and redacted not in reviewed
    assert not _events_since(service, before, "alert", "open")


def test_probe_of_a_deleted_alert_goes_in_the_same_sweep(service):
    ctx = service.ctx
    now = ctx.now()
    before = len(service.audit_entries(types=["retention.delete"]))
    with ctx.transaction() as conn:
        # a probe younger than its alert (as if the probe and alert periods no longer
        # lined up): the probe pass keeps it, the alert pass deletes its alert
        alert_id = _open_alert(conn, now, "drift", 30.5, probe_age_days=29.5)
    run_sweep(ctx, now=now)

    rows, _, probes = _state(ctx)
    assert alert_id not in rows
    assert "probe-drift" not in probes  # not left pointing at a deleted alert
    [unused] = _events_since(service, before, "probe_ciphertext", "unused")
    assert unused.payload["action"] == "delete" and unused.payload["count"] == 1


def test_alert_reviewed_after_the_sweep_listed_it_stays(service):
    ctx = service.ctx
    now = ctx.now()
    with ctx.transaction() as conn:
        alert_id = _open_alert(conn, now, "late-review", 30.5)
    store = AlertStore(ctx)
    listed = [c.record_id for c in store.candidates("open", now - dt.timedelta(days=30), None, 100)]
    assert alert_id in listed
    with ctx.transaction() as conn:  # an officer reviews before the batch is applied
        conn.execute(
            alert_reviews.insert().values(
                id="review-late",
                alert_id=alert_id,
                reviewer="officer-1",
                role="officer",
                verdict="confirm",
                reason="looks like a match",
                at=now,
            )
        )
    batch = RetentionBatch(
        kind="alert",
        state="open",
        action="delete",
        record_ids=(alert_id,),
        decisions=((alert_id, "decision"),),
        bundle_digest=ctx.policy.bundle_digest,
        retention_days=30,
        swept_at=now,
    )
    assert store.apply(batch, lambda batch, conn: None) == 0

    rows, reviewed, _ = _state(ctx)
    assert rows[alert_id].status == "open" and alert_id in reviewed

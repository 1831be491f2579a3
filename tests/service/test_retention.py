"""Retention of the service's records under the policy, with a controllable clock:
crossing records, kept probes, closed alerts (with their reviews) and audit payloads
are deleted or redacted when their period is over, each batch audited; younger
records stay, and the exported log still verifies offline."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from audit.events import AuditEvent, EventType
from audit.export import export_log
from audit.sources import DirectorySource
from audit.verify import verify_log
from service.alerts import create_alert
from service.retention import run_sweep
from service.tables import alert_reviews, alerts, crossings, probe_records


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


def _closed_alert(conn, now, name, status, closed_days_ago, reviewers=()):
    alert_id = create_alert(
        conn,
        gate_id="gate-x",
        query_id=f"q-{name}",
        entry_ids=["wl-1"],
        reason="r",
        severity="medium",
        decision_id="d",
        bundle_digest="b",
        gallery_version="g",
        now=now - dt.timedelta(days=closed_days_ago + 1),
    )
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
    # an open alert is not swept, and neither are its reviews
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

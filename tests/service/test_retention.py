"""Retention of the service's records under the policy, with a controllable clock:
crossing records and kept probes are deleted when their period is over, each batch
audited; younger records stay."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from audit.export import export_log
from audit.sources import DirectorySource
from audit.verify import verify_log
from service.alerts import create_alert
from service.retention import run_sweep
from service.tables import alerts, crossings, probe_records


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

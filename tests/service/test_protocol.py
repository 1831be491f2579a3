"""The whole match protocol through real HTTPS (mutual TLS for the gate) with real
certificates, real SEAL ciphertexts, real face photos, real OPA and the real audit
log, on each database backend.

A watchlisted face under augmentation → ``secondary``, an alert, and audit entries for
query, decision and alert carrying the same decision id and policy digest; another
face → ``proceed`` and no alert; the audit log then verifies offline.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json

import cv2
import numpy as np
import pytest

from audit.export import export_log
from audit.sources import DirectorySource
from audit.verify import verify_log
from gate.augment import variants
from gate.client import (
    GateClient,
    MatchOutcome,
    ServiceRefusedError,
    ServiceUnreachableError,
    pseudonymise,
)
from gate.errors import GateError
from gate.offline_queue import OfflineQueue
from gate.pipeline import FacePipeline
from gate.samples import face_crops

PSEUDONYM_KEY = b"k" * 32  # the gates' shared key (test value)


@pytest.fixture(scope="module")
def faces(service):
    """Embeddings of real people: enrolment photo, an augmented probe and strangers."""
    pipeline = FacePipeline.from_settings(service.settings)

    def embed_or_none(image):
        try:
            return pipeline.embed_one(image)
        except GateError:  # a quality refusal (pose, blur...): not usable here
            return None

    crops = list(face_crops(pipeline))
    embed = {c.person: e for c in crops if (e := embed_or_none(c.image)) is not None}
    probe = None
    for watched in crops:
        if watched.person not in embed:
            continue
        for variant in variants(watched.image, count=4)[1:]:
            probe = embed_or_none(variant.image)
            if probe is not None:
                break
        if probe is not None:
            break
    assert probe is not None
    threshold = service.settings.match_threshold
    assert float(probe @ embed[watched.person]) > threshold + 0.1
    strangers = [
        p
        for p, e in embed.items()
        if p != watched.person and float(e @ embed[watched.person]) < threshold - 0.1
    ]
    assert strangers, "need a clearly different face"
    ok, jpeg = cv2.imencode(".jpg", watched.image)
    assert ok
    return {"photo": jpeg.tobytes(), "probe": probe, "stranger": embed[strangers[0]]}


@pytest.fixture(scope="module")
def gate(service):
    client = service.approved_gate("gate-b", site="shenzhen-bay")
    yield client
    client.close()


def _enrol_from_photo(service, photo: bytes) -> str:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=90)).isoformat()
    with service.staff("officer1") as officer:
        created = officer.post(
            "/api/v1/watchlist/photos",
            json={
                "subject_ref": "subject-0001",
                "photos": [base64.b64encode(photo).decode()],
                "legal_basis": "hk-cap60",
                "category": "parallel_trading",
                "expires_at": expires,
            },
        )
        assert created.status_code == 201, created.text
    entry_id = str(created.json()["id"])
    with service.staff("supervisor1") as sup:
        approved = sup.post(f"/api/v1/watchlist/{entry_id}/approve")
        assert approved.status_code == 200, approved.text
    return entry_id


def test_full_protocol_match_and_non_match(service, faces, gate, tmp_path):
    entry_id = _enrol_from_photo(service, faces["photo"])
    with service.staff("officer1") as officer:
        alerts_before = officer.get("/api/v1/alerts").json()

    doc = pseudonymise(PSEUDONYM_KEY, "K12345678")
    hit = gate.check(faces["probe"], doc_pseudonym=doc)
    assert hit.outcome == "secondary" and hit.hits == 1

    with service.staff("officer1") as officer:
        alerts = officer.get("/api/v1/alerts").json()
    assert len(alerts) == len(alerts_before) + 1
    alert = next(a for a in alerts if a["query_id"] == hit.query_id)
    assert alert["entry_ids"] == [entry_id] and alert["status"] == "open"
    digest = service.ctx.policy.bundle_digest
    assert alert["bundle_digest"] == digest

    entries = service.audit_entries()

    def about(kind):
        return [
            e
            for e in entries
            if e.header.type == kind and f"query:{hit.query_id}" in e.header.subjects
        ]

    query, decision, raised = about("match.query"), about("match.decision"), about("alert.raised")
    assert len(query) == len(decision) == len(raised) == 1
    assert decision[0].header.decision_id == raised[0].header.decision_id == alert["decision_id"]
    assert decision[0].header.policy_digest == raised[0].header.policy_digest == digest
    assert query[0].header.policy_digest == digest and query[0].header.decision_id
    assert decision[0].payload["outcome"] == "secondary"
    assert decision[0].payload["gallery_version"] == alert["gallery_version"]

    miss = gate.check(faces["stranger"], doc_pseudonym=pseudonymise(PSEUDONYM_KEY, "E9"))
    assert miss.outcome == "proceed" and miss.hits == 0
    with service.staff("officer1") as officer:
        assert len(officer.get("/api/v1/alerts").json()) == len(alerts)

    # the audit log verifies offline, from an export, with only the log's public key
    log = service.ctx.audit.log
    service.ctx.audit.flush()
    export_log(log, tmp_path / "export")
    report = verify_log(DirectorySource(tmp_path / "export"), log.signer.verifier())
    verified_size = report.to_dict()["size"]
    assert isinstance(verified_size, int) and verified_size >= len(entries)


def test_retry_is_idempotent_while_pending(service, faces, gate):
    probe = base64.b64encode(gate.he.encrypt(faces["stranger"])).decode()
    body = {"request_id": "retry-request-0001", "probe": probe}
    first = gate._post("/gate/v1/match", body)
    again = gate._post("/gate/v1/match", body)  # a retry: same response, same query
    assert again == first
    with pytest.raises(ServiceRefusedError) as reused:  # same id, another body
        gate._post("/gate/v1/match", {**body, "doc_pseudonym": "0" * 64})
    assert reused.value.code == "request-id-reused"
    positions = gate.he.reveal(base64.b64decode(first["result"]))
    reveal = {
        "request_id": "retry-request-0001r",
        "query_id": first["query_id"],
        "positions": positions,
    }
    outcome = gate._post("/gate/v1/reveal", reveal)
    assert gate._post("/gate/v1/reveal", reveal) == outcome  # reveal retries too
    with pytest.raises(ServiceRefusedError) as gone:  # the mapping is gone after reveal
        gate._post("/gate/v1/match", body)
    assert gone.value.code == "query-expired"


def test_offline_queue_drains_when_the_link_returns(service, faces, gate, tmp_path):
    from crypto.atrest import FileKek

    queue = OfflineQueue(tmp_path / "q.sqlite3", FileKek.generate(tmp_path / "q.kek"))
    offline = GateClient(
        "https://127.0.0.1:9",
        gate_id="gate-b",
        cert=service.pki.gate_certs["gate-b"][0],
        key=service.pki.gate_certs["gate-b"][1],
        ca=service.pki.ca_cert,
        signing_key=gate.signing_key,
        he=gate.he,
        clock=service.gate_time,
    )
    assert offline.check_or_queue(faces["stranger"], queue) is None
    assert len(queue) == 1
    with pytest.raises(ServiceUnreachableError):
        offline.check(faces["stranger"])
    outcomes: list[MatchOutcome] = []
    report = gate.drain(queue, outcomes.append)
    assert report.sent == 1 and len(queue) == 0
    assert [o.outcome for o in outcomes] == ["proceed"]


def test_nothing_biometric_or_identifying_in_logs_audit_or_errors(service, faces, gate):
    """Scan the service's logs, every audit payload and an error body for templates,
    ciphertexts, pseudonyms, photos and secrets."""
    doc = pseudonymise(PSEUDONYM_KEY, "K12345678")
    gate.check(faces["stranger"], doc_pseudonym=doc)
    logs = service.log_stream.getvalue()
    audit_text = json.dumps(
        [{"header": e.header.to_dict(), "payload": e.payload} for e in service.audit_entries()]
    )
    probe = gate.he.encrypt(faces["stranger"])
    forbidden = [
        doc,
        "K12345678",
        base64.b64encode(probe[:48]).decode(),
        base64.b64encode(faces["photo"][:48]).decode(),
        "admin-password-for-tests",
        "staff-password-for-tests",
        f"{float(faces['probe'][0]):.6f}",
        hashlib.sha256(faces["photo"]).hexdigest(),
        *service.tokens.values(),
    ]
    for text, where in ((logs, "logs"), (audit_text, "audit")):
        for needle in forbidden:
            assert needle not in text, f"{where} leak"
    # numbers like a template: no run of >16 floats in any audit payload
    for e in service.audit_entries():
        nums = [v for v in (e.payload or {}).values() if isinstance(v, float)]
        assert len(nums) <= 16
    template = [round(float(x), 6) for x in faces["probe"]]
    with service.staff("officer1") as officer:
        bad = officer.post(
            "/api/v1/watchlist",
            content=json.dumps(
                {
                    "subject_ref": "bad ref!",
                    "template": template,
                    "legal_basis": "hk-cap60",
                    "category": "parallel_trading",
                    "expires_at": "2030-01-01T00:00:00Z",
                }
            ),
            headers={"Content-Type": "application/json"},
        )
        huge = officer.post(
            "/api/v1/watchlist",
            content=b'{"template": [1e309]}',
            headers={"Content-Type": "application/json"},
        )
    assert bad.status_code == 422 and huge.status_code == 422
    for body in (bad.text, huge.text):
        assert str(template[0]) not in body and "1e309" not in body
    assert io  # keep import (StringIO used by the harness)
    assert np

"""A log a database writer extended around the sequencer stops every state change.

After a direct forgery (entries and head written with the project's own leaf code but
no sequencer tag), the appender refuses to build on the forged head, so a staff request
that must record its decision gets 503 ``audit-unavailable`` (not a 4xx blaming the
client, not a 500), and the change it asked for did not happen.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.events import AuditEvent, EventType
from core.db import make_engine
from tests.audit.test_forgery import forge
from tests.conftest import BACKENDS
from tests.service.conftest import STAFF_PASSWORD, problem, run_service


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_forged_head_makes_state_changes_unavailable(backend: str, tmp_path: Path) -> None:
    for service in run_service(backend, tmp_path):
        engine = make_engine(service.settings)
        try:
            fake = AuditEvent(EventType.ALERT_REVIEW, "officer:officer1", payload={"x": 1})
            forge(engine, [fake])
        finally:
            engine.dispose()
        with service.staff("admin") as admin:
            response = admin.post(
                "/api/v1/accounts",
                json={"username": "late.officer", "password": STAFF_PASSWORD, "role": "officer"},
            )
            assert response.status_code == 503, response.text
            assert problem(response)["code"] == "audit-unavailable"
            accounts = admin.get("/api/v1/accounts")
            if accounts.status_code == 200:
                assert "late.officer" not in accounts.text

"""Fuzz the staff API's OpenAPI schema with schemathesis: no input may cause a 5xx.

Runs in process (ASGI) against an app bound to the module's running service context,
so the database, policy engine and audit log are the real ones. Few examples per
operation keep it quick; the point is malformed input at every route, not volume.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app

EXCLUDED = ("/api/v1/alerts/stream",)  # an endless SSE stream: covered in test_alert_feed


def test_no_5xx_on_any_staff_route(service):
    app = create_app(service.settings, service.ctx.engine, service.ctx)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tokens = {user: service.token(user) for user in ("admin", "supervisor1")}
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 20
    fuzzed = 0
    for operation in operations:
        if operation.path in EXCLUDED:
            continue
        admin_route = operation.path.startswith(("/api/v1/accounts", "/api/v1/gates"))
        token = tokens["admin" if admin_route else "supervisor1"]

        @given(case=operation.as_strategy(), headers=st.just({"Authorization": f"Bearer {token}"}))
        @settings(
            max_examples=8,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def check(case, headers):
            response = case.call(headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            if response.status_code >= 400:
                ctype = (response.headers.get("content-type") or [""])[0]
                assert ctype.startswith("application/problem+json"), (case.path, ctype)

        check()
        fuzzed += 1
    assert fuzzed == len(operations) - len(EXCLUDED)

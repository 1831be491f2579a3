"""The holes a penetration tester found (issue 18), reproduced against a live service:
unthrottled password guessing, ``/metrics`` readable by anyone, the audit log grown by
unauthenticated requests, a tile 404 echoing its path, API docs pages without a CSP.
Each test fails on the code before the fix."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.settings import load_settings
from service.app import create_app
from service.denials import AGGREGATE_CODE, flush_all
from service.tables import login_throttle
from tests.service.conftest import STAFF_PASSWORD, problem

PASSWORD = "throttle-test-password"


@pytest.fixture
def fresh_throttle(service) -> Iterator[None]:
    """Forget sign-in counters before and after (every test client is 127.0.0.1, and a
    locked address would refuse the rest of the module's logins)."""

    def clear() -> None:
        with service.ctx.transaction() as conn:
            conn.execute(login_throttle.delete())

    clear()
    yield
    clear()


def _account(service, username: str) -> None:
    with service.staff("admin") as admin:
        made = admin.post(
            "/api/v1/accounts",
            json={"username": username, "password": PASSWORD, "role": "officer"},
        )
    assert made.status_code == 201, made.text


def _login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


def _lockouts(service) -> list[Any]:
    return [
        e
        for e in service.audit_entries(types=["access.denied"])
        if e.payload and e.payload["code"] == "login-locked"
    ]


def test_forty_wrong_passwords_then_the_right_one_is_refused(service, fresh_throttle):
    _account(service, "guessed1")
    before = len(_lockouts(service))
    with service.staff() as client:
        statuses = [_login(client, "guessed1", f"wrong-{i}").status_code for i in range(40)]
        right = _login(client, "guessed1", PASSWORD)
    limit = service.settings.login_account_failures
    assert statuses[: limit - 1] == [401] * (limit - 1)
    assert set(statuses[limit - 1 :]) == {429}
    assert right.status_code == 429 and problem(right)["code"] == "login-locked"
    assert 0 < int(right.headers["retry-after"]) <= service.settings.login_lockout_s
    locks = _lockouts(service)[before:]
    assert len(locks) == 1  # one entry per lock-out, not per attempt
    assert locks[0].payload["scope"] == "account"
    assert locks[0].header.subjects[0].startswith("account:")
    assert "guessed1" not in str(locks[0].payload)


def test_parallel_guesses_get_429(service, fresh_throttle):
    _account(service, "guessed2")
    before = len(_lockouts(service))
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(32)

    def guess(i: int) -> None:
        with service.staff() as client:
            start.wait()
            status = _login(client, "guessed2", f"guess-{i}").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(statuses) == 32 and set(statuses) <= {401, 429}
    assert statuses.count(401) <= service.settings.login_account_failures  # passwords checked
    assert statuses.count(429) >= 32 - service.settings.login_account_failures
    scopes = sorted(e.payload["scope"] for e in _lockouts(service)[before:])
    assert scopes.count("account") == 1


def test_the_lock_expires(service, fresh_throttle):
    _account(service, "guessed3")
    with service.staff() as client:
        for i in range(service.settings.login_account_failures):
            _login(client, "guessed3", f"wrong-{i}")
        assert _login(client, "guessed3", PASSWORD).status_code == 429
        real = service.ctx.clock
        lapse = dt.timedelta(seconds=service.settings.login_lockout_s)
        try:
            service.ctx.clock = lambda: real() + lapse - dt.timedelta(seconds=5)
            assert _login(client, "guessed3", PASSWORD).status_code == 429
            service.ctx.clock = lambda: real() + lapse + dt.timedelta(seconds=1)
            assert _login(client, "guessed3", PASSWORD).status_code == 200
        finally:
            service.ctx.clock = real


def test_metrics_need_the_scrape_token(service):
    sensitive = ("veilmatch_gallery_entries", "veilmatch_match_decisions_total")
    with service.staff() as anonymous:
        refused = [
            anonymous.get("/metrics"),
            anonymous.get("/metrics", headers={"Authorization": "Bearer " + "x" * 43}),
            anonymous.get(
                "/metrics", headers={"Authorization": f"Bearer {service.token('admin')}"}
            ),
        ]
    for response in refused:
        assert response.status_code == 401 and problem(response)["code"] == "scrape-unauthorized"
        assert not any(name in response.text for name in sensitive)
    scraped = service.metrics()
    assert scraped.status_code == 200
    assert all(name in scraped.text for name in sensitive)


def test_unauthenticated_denials_are_counted_not_logged_one_by_one(service):
    flush_all(service.ctx)
    start = len(service.audit_entries())
    with service.staff() as anonymous:
        for _ in range(200):
            assert anonymous.get("/api/v1/alerts").status_code == 401
    assert len(service.audit_entries()) - start <= 3  # only closed windows, if one closed
    flush_all(service.ctx)
    new = service.audit_entries()[start:]
    denied = [e for e in new if e.header.type == "access.denied"]
    assert 1 <= len(denied) <= 3
    assert all(e.payload["code"] == AGGREGATE_CODE for e in denied)
    assert sum(e.payload["count"] for e in denied) == 200
    lines = [line for e in denied for line in e.payload["denials"]]
    assert {(x["route"], x["code"]) for x in lines} == {("GET /api/v1/alerts", "token-missing")}
    assert {e.payload["source"] for e in denied} == {"127.0.0.1"}


def test_tile_404_does_not_echo_the_path(service):
    canary = "canary-7f3a9c"
    with service.staff("oversight1") as client:
        for path in (f"tile/0/{canary}", f"tile/entries/x{canary}", "tile/0/x987/654"):
            response = client.get(f"/api/v1/audit/tiles/{path}")
            assert response.status_code == 404, path
            body = problem(response)
            assert body["detail"] == "no such tile"
            assert canary not in response.text and "987" not in body["detail"]


def test_api_docs_pages_are_off_by_default(service):
    with service.staff() as client:
        for path in ("/docs", "/redoc"):
            assert client.get(path).status_code == 404, path
        schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert schema.headers["content-security-policy"].startswith("default-src 'none'")


def test_api_docs_pages_when_enabled_carry_a_csp(tmp_path):
    settings = load_settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'd.db'}", api_docs=True
    )
    app = create_app(settings)

    async def get(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            return await client.get(path)

    for path in ("/docs", "/redoc"):
        page = asyncio.run(get(path))
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        assert "'unsafe-inline'" not in directives["script-src"]
        for script in re.findall(rb"<script>(.*?)</script>", page.content, re.DOTALL):
            digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
            assert f"'sha256-{digest}'" in directives["script-src"]


def test_staff_accounts_still_sign_in(service, fresh_throttle):
    with service.staff() as client:
        assert _login(client, "officer2", STAFF_PASSWORD).status_code == 200
    with service.ctx.reader() as conn:
        rows = conn.execute(sa.select(login_throttle.c.key, login_throttle.c.failures)).all()
    assert all(r.failures == 0 for r in rows)

"""A live service for console tests, reusing the service tests' harness (real TLS,
real database per backend, real OPA, real audit log).

The service loads its policy from a throw-away git repository holding two versions of
the shipped bundle, so the legal pages have a real history with a rule-level diff:
version 2 adds a rule to ``veilmatch.access`` and rewords one role's description.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from policy.bundles import default_bundle_dir
from service.console.session import COOKIE, CSRF_COOKIE
from tests.conftest import BACKENDS
from tests.service.conftest import STAFF_PASSWORD, RunningService, run_service

ADDED_RULE = "console_review_note"
_GIT = ["git", "-c", "user.name=Legal Team", "-c", "user.email=legal@veilmatch.invalid"]


@dataclass(frozen=True)
class PolicyRepo:
    bundle_dir: Path
    v1: str
    v2: str


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run([*_GIT, "-C", str(repo), *args], check=True, capture_output=True)
    return out.stdout.decode().strip()


def make_policy_repo(root: Path) -> PolicyRepo:
    """A git repo with ``policies/bundle`` at two versions (v2 is checked out)."""
    bundle = root / "policies" / "bundle"
    shutil.copytree(default_bundle_dir(), bundle)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "Initial policies")
    v1 = _git(root, "rev-parse", "HEAD")
    access = bundle / "veilmatch" / "access" / "access.rego"
    access.write_text(
        access.read_text() + f'\n# A note the console shows.\n{ADDED_RULE} := "two people"\n'
    )
    data = bundle / "params" / "access" / "data.json"
    data.write_text(
        data.read_text().replace(
            '"legal": "The legal team: reads policies',
            '"legal": "The legal team (DPO office): reads policies',
        )
    )
    _git(root, "commit", "-q", "-am", "Note on reviews; legal role wording")
    return PolicyRepo(bundle, v1, _git(root, "rev-parse", "HEAD"))


@pytest.fixture(scope="module", params=BACKENDS)
def console_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningService, PolicyRepo]]:
    """A running service whose policy comes from a two-version git repository."""
    tmp = tmp_path_factory.mktemp(f"console-{request.param}")
    repo = make_policy_repo(tmp / "repo")
    for running in run_service(request.param, tmp / "svc", policy_dir=repo.bundle_dir):
        yield running, repo


def browser_client(service: RunningService) -> httpx.Client:
    """An HTTPS client that keeps cookies and does not follow redirects."""
    return httpx.Client(
        base_url=service.staff_url, verify=service.ca_context, timeout=60, follow_redirects=False
    )


def login_token(client: httpx.Client) -> str:
    """Open the sign-in page as a browser does; the CSRF value its form carries."""
    page = client.get("/console/login")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found and client.cookies.get(CSRF_COOKIE) == found.group(1)
    return found.group(1)


def post_login(client: httpx.Client, **fields: str) -> httpx.Response:
    """Submit the sign-in form (opened first, so it carries its CSRF value)."""
    return client.post("/console/login", data={"csrf": login_token(client), **fields})


def sign_in(service: RunningService, username: str) -> httpx.Client:
    """A client holding a console session for ``username``."""
    client = browser_client(service)
    response = post_login(client, username=username, password=STAFF_PASSWORD, next="/console/")
    assert response.status_code == 303, response.text
    assert client.cookies.get(COOKIE) and client.cookies.get(CSRF_COOKIE)
    return client


def csrf(client: httpx.Client) -> str:
    """The CSRF form value for this client's session."""
    value = client.cookies.get(CSRF_COOKIE)
    assert value
    return value

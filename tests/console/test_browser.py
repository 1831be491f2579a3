"""The console in a real browser: Debian's Chromium driven by Playwright, against a
live service over real TLS (the dev PKI's server certificate, trusted by its key
pin), with a real gate raising a real alert (SEAL ciphertexts, real face photos).

- two officers and two supervisors: enrol from a template file, approve (another
  person), watch the alert arrive live (SSE), confirm twice by different people;
- oversight: audit entries proven in the browser (WebCrypto) against the signed
  checkpoint, and a proof altered in transit is caught by the browser check alone;
- legal: rendered policy documentation, digest, history and a rule-level diff;
- an officer cannot open oversight or legal pages (403, audited).

Screenshots of every page go to ``test-artifacts/console/``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

from tests.console.conftest import ADDED_RULE
from tests.service.conftest import STAFF_PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Generous on purpose: an approval rebuilds the gallery in freshly spawned scoring
#: processes before the page navigates, which on a busy two-core CI machine (kernels
#: loading from numba's cache, other suites running) took more than 20 s.
TIMEOUT_MS = 60_000
expect.set_options(timeout=TIMEOUT_MS)


def _spki_pin(cert_path: Path) -> str:
    """base64 SHA-256 of the server certificate's public key (Chromium's pin format)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def service(console_service):
    return console_service[0]


@pytest.fixture(scope="module")
def repo(console_service):
    return console_service[1]


@pytest.fixture(scope="module")
def browser(service) -> Iterator[Browser]:
    """System Chromium trusting exactly the service's certificate key (no downloads)."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make browser-deps`"
    pin = _spki_pin(service.settings.tls_cert)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"],
        )
        yield browser
        browser.close()


def _context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    return context


def _sign_in(browser: Browser, service, username: str) -> Page:
    page = _context(browser).new_page()
    page.goto(service.staff_url + "/console/")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=f"Welcome, {username}")).to_be_visible()
    return page


def _nav(page: Page, section: str) -> None:
    """Follow a link in the section navigation."""
    nav = page.get_by_role("navigation", name="Sections")
    nav.get_by_role("link", name=section, exact=True).click()


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@pytest.fixture(scope="module")
def faces(service) -> dict[str, Any]:
    """A watched person's template (from the gate pipeline) and another photo of them."""
    from gate.augment import variants
    from gate.errors import GateError
    from gate.pipeline import FacePipeline
    from gate.samples import face_crops

    pipeline = FacePipeline.from_settings(service.settings)
    threshold = service.settings.match_threshold
    for crop in face_crops(pipeline):
        try:
            enrolled = pipeline.embed_one(crop.image)
        except GateError:
            continue
        for variant in variants(crop.image, count=4)[1:]:
            try:
                probe = pipeline.embed_one(variant.image)
            except GateError:
                continue
            if float(probe @ enrolled) > threshold + 0.1:
                return {"template": [float(x) for x in enrolled], "probe": probe}
    raise AssertionError("no usable face in the sample photos")


@pytest.fixture(scope="module")
def gate(service):
    """A registered, approved gate with its own SEAL keys."""
    client = service.approved_gate("gate-c", site="lo-wu")
    yield client
    client.close()


def test_login_page_and_refused_sign_in(browser, service):
    page = _context(browser).new_page()
    page.goto(service.staff_url + "/console/login")
    _shot(page, "login")
    page.get_by_label("Username").fill("officer1")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Invalid username or password.")
    page.context.close()


def test_officers_enrol_approve_and_confirm_a_live_alert(browser, service, faces, gate, tmp_path):
    subject = "case-2024-0117"
    template_file = tmp_path / "template.json"
    template_file.write_text(json.dumps({"template": faces["template"]}))

    # officer 1 proposes a watchlist entry from a template file
    officer1 = _sign_in(browser, service, "officer1")
    _nav(officer1, "Watchlist")
    officer1.get_by_label("Enrolled photo reference").fill(subject)
    officer1.get_by_label("Legal basis", exact=True).fill("hk-cap60")
    officer1.get_by_label("Template file").set_input_files(str(template_file))
    officer1.get_by_role("button", name="Propose entry").click()
    expect(officer1.get_by_role("status").first).to_contain_text("stays pending")
    row = officer1.locator(f'tr[data-entry="{subject}"]')
    expect(row).to_contain_text("pending")

    # a supervisor (not the enroller) approves it; the gallery is rebuilt
    supervisor = _sign_in(browser, service, "supervisor1")
    supervisor.goto(service.staff_url + "/console/watchlist")
    supervisor.get_by_role("button", name=f"Approve {subject}").click()
    expect(supervisor.get_by_role("status").first).to_contain_text("approved")
    expect(supervisor.locator(f'tr[data-entry="{subject}"]')).to_contain_text("active")
    _shot(supervisor, "watchlist")

    # officer 1 watches the queue; the gate's match raises an alert that arrives live
    officer1.goto(service.staff_url + "/console/alerts")
    expect(officer1.locator("#live-status")).to_contain_text("Live")
    before = officer1.locator("tr.alert-row").count()
    outcome = gate.check(faces["probe"])
    assert outcome.outcome == "secondary" and outcome.hits == 1
    expect(officer1.locator("tr.alert-row")).to_have_count(before + 1)
    expect(officer1.locator("#live-status")).to_contain_text("New alert from gate-c")
    _shot(officer1, "alert-queue")

    # first confirmation: the page says the second must come from someone else
    officer1.locator("tr.alert-row").first.get_by_role("link").click()
    expect(officer1.get_by_role("cell", name=subject)).to_be_visible()
    expect(officer1.locator("#two-person")).to_contain_text("No reviews yet")
    officer1.get_by_label("Confirm").check()
    officer1.get_by_label("Reason").fill("Face and photo reference agree")
    officer1.get_by_role("button", name="Record review").click()
    expect(officer1.locator("#alert-status")).to_have_text("open")
    expect(officer1.locator("#two-person")).to_contain_text(
        "The second confirmation must come from a different person"
    )
    expect(officer1.get_by_role("button", name="Record review")).to_have_count(0)
    alert_url = officer1.url.split("?")[0]

    # officer 2 sees one confirmation and gives the second: actionable
    officer2 = _sign_in(browser, service, "officer2")
    officer2.goto(alert_url)
    expect(officer2.locator("#two-person")).to_contain_text(
        "1 of 2 confirmations recorded (by officer1)"
    )
    officer2.get_by_label("Confirm").check()
    officer2.get_by_label("Reason").fill("Agree with officer1")
    officer2.get_by_role("button", name="Record review").click()
    expect(officer2.locator("#alert-status")).to_have_text("actionable")
    expect(officer2.locator(".trail li.review")).to_have_count(2)
    _shot(officer2, "alert")

    alert_id = alert_url.rsplit("/", 1)[1]
    reviews = [
        e
        for e in service.audit_entries(types=["alert.review"])
        if f"alert:{alert_id}" in e.header.subjects
    ]
    assert [e.header.actor for e in reviews] == ["officer:officer1", "officer:officer2"]
    for page in (officer1, officer2, supervisor):
        page.context.close()


def _tamper_first_proof(service):
    """A route handler: fetch the page itself (TLS verified against the dev CA), then
    flip one hex digit of the first entry's proof before the browser sees it."""

    def handler(route: Route) -> None:
        cookie = route.request.all_headers().get("cookie", "")
        with httpx.Client(verify=service.ca_context, timeout=60) as client:
            response = client.get(route.request.url, headers={"cookie": cookie})
        html = response.text
        match = re.search(r'data-proof="([0-9a-f])', html)
        assert match is not None
        flipped = "1" if match.group(1) == "0" else "0"
        html = html[: match.start(1)] + flipped + html[match.end(1) :]
        route.fulfill(
            status=response.status_code,
            headers={k: v for k, v in response.headers.items() if k != "content-length"},
            body=html,
        )

    return handler


def test_oversight_verifies_audit_entries_in_the_browser(browser, service):
    service.ctx.audit.flush()  # a checkpoint covering every entry so far
    page = _sign_in(browser, service, "oversight1")
    _nav(page, "Audit log")
    expect(page.locator("#cp-browser")).to_have_text("signature verified")
    page.get_by_label("Type").select_option("alert.review")
    page.get_by_role("button", name="Filter").click()
    entries = page.locator("tr.entry")
    expect(entries.first).to_be_visible()
    assert entries.count() >= 2
    for i in range(entries.count()):
        expect(entries.nth(i).locator(".browser-check")).to_have_text("verified in your browser")
        expect(entries.nth(i)).to_contain_text("included in checkpoint")
        expect(entries.nth(i)).to_contain_text("alert.review")
    _shot(page, "audit")

    # the browser's own check catches a proof altered between server and browser
    page.route(re.compile(r".*/console/audit\?.*"), _tamper_first_proof(service))
    page.reload()
    expect(page.locator("tr.entry").first.locator(".browser-check")).to_contain_text(
        "ROOT MISMATCH"
    )
    expect(page.locator("tr.entry").nth(1).locator(".browser-check")).to_have_text(
        "verified in your browser"
    )
    page.unroute(re.compile(r".*/console/audit\?.*"))

    _nav(page, "Checkpoints")
    expect(page.locator("tr.checkpoint-row").first).to_contain_text("log signature")
    expect(page.locator("tr.checkpoint-row").first.locator(".ok").first).to_have_text("verified")
    _shot(page, "checkpoints")

    _nav(page, "Statistics")
    expect(page.locator("#chart-queries svg")).to_be_visible()
    for name in ("queries", "hits", "alerts", "confirmations", "dismissals", "deletions"):
        expect(page.locator(f"#chart-{name}")).to_be_visible()
    _shot(page, "statistics")

    _nav(page, "Policies in force")
    expect(page.get_by_role("cell", name=re.compile("(current)")).first).to_be_visible()
    page.context.close()


def test_legal_reads_documentation_and_a_policy_diff(browser, service, repo):
    page = _sign_in(browser, service, "legal1")
    _nav(page, "Policy documentation")
    expect(page.locator("#bundle-digest")).to_have_text(service.ctx.policy.bundle_digest)
    expect(page.get_by_role("heading", name="Access control")).to_be_visible()
    _shot(page, "policy-docs")

    _nav(page, "Policy history")
    expect(page.locator("tr.version")).to_have_count(2)
    page.get_by_role("link", name=f"Changes from {repo.v1[:7]}").click()
    added = page.locator("tr.change-added")
    expect(added).to_have_count(1)
    expect(added).to_contain_text(f"veilmatch.access.{ADDED_RULE}")
    expect(page.locator("tr.change-changed")).to_contain_text("data.params.access.roles.legal")
    _shot(page, "policy-diff")
    page.context.close()


def test_officer_cannot_open_oversight_or_legal_pages(browser, service):
    page = _sign_in(browser, service, "officer2")
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Alerts")).to_be_visible()
    expect(nav.get_by_role("link", name="Audit log")).to_have_count(0)
    for path in (
        "/console/audit",
        "/console/audit/checkpoints",
        "/console/stats",
        "/console/policies",
    ):
        response = page.goto(service.staff_url + path)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("Your role (officer) may not do this")
    _shot(page, "forbidden")
    denied = [
        e
        for e in service.audit_entries(types=["access.denied"])
        if e.header.actor == "officer:officer2"
    ]
    assert {e.payload["action"] for e in denied} >= {
        "console.audit",
        "console.stats",
        "console.policies",
    }
    page.context.close()

"""Pure helpers: policy history from git, SVG charts, Markdown, template uploads and
the two-person review guidance."""

from __future__ import annotations

import json
import shutil

import pytest

from policy.bundles import PolicyBundle, default_bundle_dir
from policy.errors import BundleError
from service.console.charts import bar_chart
from service.console.markdown import to_html
from service.console.officer import parse_template_upload, review_guidance
from service.console.policyhistory import ACTIVE, PolicyHistory
from service.errors import MalformedRequestError
from tests.console.conftest import ADDED_RULE, make_policy_repo


def test_policy_history_from_git(tmp_path):
    repo = make_policy_repo(tmp_path / "repo")
    history = PolicyHistory(repo.bundle_dir, tmp_path / "cache")
    assert history.in_git
    versions = history.versions()
    assert [v.rev for v in versions] == [repo.v2, repo.v1]  # disk equals HEAD: no "active"
    assert versions[0].digest == PolicyBundle.from_dir(repo.bundle_dir).digest
    assert versions[1].digest == PolicyBundle.from_dir(default_bundle_dir()).digest
    assert versions[0].author == "Legal Team" and versions[1].subject == "Initial policies"
    _, _, changes = history.diff(repo.v1, repo.v2)
    lines = [c.line() for c in changes]
    assert f"+ rule     veilmatch.access.{ADDED_RULE}: added" in lines
    assert any(c.scope == "data" and c.name == "data.params.access.roles.legal" for c in changes)
    assert (tmp_path / "cache" / repo.v1).is_dir()  # exported once, reused

    # an uncommitted edit on disk is listed first as the active version
    data = repo.bundle_dir / "params" / "alert" / "data.json"
    data.write_text(data.read_text().replace('"max_hits": 3', '"max_hits": 4'))
    versions = history.versions()
    assert versions[0].rev == ACTIVE and versions[1].rev == repo.v2
    _, _, changes = history.diff(repo.v2, ACTIVE)
    assert [c.line() for c in changes] == ["~ data     data.params.alert.max_hits: 3 → 4"]

    with pytest.raises(BundleError):
        history.bundle("0" * 40)
    with pytest.raises(BundleError):
        history.bundle("../../etc")


def test_policy_history_without_git(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle_dir(), bundle)
    history = PolicyHistory(bundle, tmp_path / "cache")
    if history.in_git:  # tmp inside a work tree on some machines
        pytest.skip("temporary directory is inside a git work tree")
    versions = history.versions()
    assert [v.rev for v in versions] == [ACTIVE]
    with pytest.raises(BundleError):
        history.bundle("a" * 40)


def test_bar_chart_is_escaped_and_checked():
    svg = str(bar_chart("Alerts <raised>", ["2025-03-01", "2025-03-02"], [0, 7]))
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "Alerts &lt;raised&gt;: 7 in total" in svg and "<raised>" not in svg
    assert svg.count('class="bar"') == 2
    assert ">10<" in svg  # axis top rounded up to 1, 2 or 5 × 10^k
    with pytest.raises(ValueError):
        bar_chart("x", ["a"], [1, 2])
    with pytest.raises(ValueError):
        bar_chart("x", ["a"], [-1])


def test_markdown_escapes_html_and_anchors_headings():
    html = str(
        to_html(
            "## Access control\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
        )
    )
    assert '<h2 id="access-control">' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<table>" in html


def test_template_upload_formats():
    values = [0.5] * 128
    assert parse_template_upload(json.dumps(values).encode()) == values
    assert parse_template_upload(json.dumps({"template": values}).encode()) == values
    record = {"image": "a.jpg", "faces": [{"template": None}, {"template": values}]}
    assert parse_template_upload(json.dumps(record).encode()) == values
    for bad in (b"\xff", b"{}", b'["a"]', b"[true]", json.dumps({"faces": []}).encode()):
        with pytest.raises(MalformedRequestError):
            parse_template_upload(bad)


def _alert(status: str, *reviews: tuple[str, str]) -> dict[str, object]:
    return {"status": status, "reviews": [{"reviewer": r, "verdict": v} for r, v in reviews]}


def test_review_guidance_names_the_two_person_rule():
    fresh = review_guidance(_alert("open"), "o1")
    assert fresh["can_review"] and "No reviews yet" in fresh["message"]
    one = review_guidance(_alert("open", ("o1", "confirm")), "o2")
    assert one["can_review"] and one["confirmations"] == 1
    assert "second confirmation must come from a different person" in one["message"]
    mine = review_guidance(_alert("open", ("o1", "confirm")), "o1")
    assert not mine["can_review"] and "different person" in mine["message"]
    done = review_guidance(_alert("actionable", ("o1", "confirm"), ("o2", "confirm")), "o3")
    assert not done["can_review"] and "actionable" in done["message"]
    closed = review_guidance(_alert("dismissed", ("o1", "dismiss")), "o2")
    assert not closed["can_review"] and "dismissed" in closed["message"]


def test_policy_history_reads_every_version_under_the_service_profile(tmp_path):
    repo = make_policy_repo(tmp_path / "repo")
    history = PolicyHistory(repo.bundle_dir, tmp_path / "cache", "cn-mainland")
    versions = history.versions()
    assert history.active().profile == "cn-mainland"
    expected = PolicyBundle.from_dir(repo.bundle_dir, profile="cn-mainland").digest
    assert versions[0].digest == expected != PolicyBundle.from_dir(repo.bundle_dir).digest
    assert history.bundle(repo.v1).profile == "cn-mainland"

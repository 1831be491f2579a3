"""Generated documentation is current and complete; diffs list rule-level changes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from policy.bundles import PolicyBundle
from policy.diff import bundle_from_spec, diff_bundles, format_changes
from policy.docs import render
from policy.errors import BundleError
from policy.metadata import bundle_annotations, module_annotations
from tests.policy.conftest import replace_in

REPO = Path(__file__).resolve().parents[2]


def test_committed_policies_md_is_up_to_date(bundle: PolicyBundle) -> None:
    committed = (REPO / "docs" / "policies.md").read_text(encoding="utf-8")
    assert committed == render(bundle), "docs/policies.md is stale: run `veilmatch policy docs`"
    assert "**Jurisdiction profile:** `eu`" in committed


def test_docs_cover_every_annotated_rule_period_and_case(bundle: PolicyBundle) -> None:
    text = render(bundle)
    for note in bundle_annotations(bundle):
        assert note.title and note.description, (
            f"{note.path}:{note.line} needs title and description"
        )
        assert note.title in text
    for query in (
        "veilmatch.access.decision",
        "veilmatch.match.decision",
        "veilmatch.alert.decision",
        "veilmatch.alert.review",
        "veilmatch.retention.decision",
        "veilmatch.retention.periods",
        "veilmatch.legal.obligations",
    ):
        assert f"query `{query}`" in text
    assert "| `audit_payload` | `recorded` | Audit log payload | 183 days | redact |" in text
    assert "the 31st search within a minute is refused" in text
    assert bundle.digest in text


def test_every_decision_rule_documents_its_input_and_output(bundle: PolicyBundle) -> None:
    decisions = [a for a in bundle_annotations(bundle) if "query" in a.custom]
    assert {a.custom["query"] for a in decisions} == {
        "veilmatch.access.decision",
        "veilmatch.match.decision",
        "veilmatch.alert.decision",
        "veilmatch.alert.review",
        "veilmatch.retention.decision",
        "veilmatch.retention.periods",
        "veilmatch.legal.obligations",
    }
    for note in decisions:
        # periods takes no input: it is the table itself
        assert note.custom["output"] and (note.custom.get("input") or note.target == "periods")
        assert note.query == note.custom["query"]


def test_retention_periods_come_from_the_reviewed_profile_data(bundle: PolicyBundle) -> None:
    edited = replace_in(
        bundle,
        "profiles/eu/data.json",
        '"confirmed": {"days": 365,',
        '"confirmed": {"days": 400,',
    )
    assert "| 400 days | redact |" in render(edited)


def test_malformed_metadata_is_refused() -> None:
    with pytest.raises(BundleError, match="METADATA"):
        module_annotations("a.rego", "package a\n# METADATA\n# title: [unclosed\nx := 1\n")
    with pytest.raises(BundleError, match="annotates nothing"):
        module_annotations("a.rego", "package a\n# METADATA\n# title: x\n")


def test_identical_bundles_have_no_changes(bundle: PolicyBundle) -> None:
    assert diff_bundles(bundle, bundle) == []
    assert "no rule, metadata, data or test changes" in format_changes(bundle, bundle, [])


def test_diff_lists_rule_metadata_data_and_test_changes(bundle: PolicyBundle) -> None:
    new = replace_in(bundle, "veilmatch/match/match.rego", "< limit", "<= limit")
    new = replace_in(
        new,
        "profiles/eu/data.json",
        '"recorded": {"days": 183,',
        '"recorded": {"days": 200,',
    )
    data = json.loads(new.files["params/alert/data.json"])
    data["max_hits"] = 5
    data["new_flag"] = True
    new = new.with_file("params/alert/data.json", json.dumps(data).encode())
    new = replace_in(
        new,
        "veilmatch/access/access.rego",
        "# METADATA\n# title: Refusal reasons",
        'reasons contains "extra" if input.extra\n\n# METADATA\n# title: Refusal reasons',
    )
    new = replace_in(
        new,
        "veilmatch/access/access_test.rego",
        "test_default_is_deny if",
        "test_default_denies if",
    )
    lines = [c.line() for c in diff_bundles(bundle, new)]
    assert lines == [
        "~ rule     veilmatch.access.reasons: definitions 4 → 5",
        "~ rule     veilmatch.match._within_rate: definition changed",
        "~ data     data.params.alert.max_hits: 3 → 5",
        "+ data     data.params.alert.new_flag: true",
        "~ data     data.profile.retention.audit_payload.recorded.days: 183 → 200",
        "+ test     veilmatch.access_test.test_default_denies: added",
        "- test     veilmatch.access_test.test_default_is_deny: removed",
    ]


def test_reformatting_and_plain_comments_are_not_rule_changes(bundle: PolicyBundle) -> None:
    new = replace_in(
        bundle,
        "veilmatch/match/match.rego",
        "_registered(req) if req.gate.registered == true",
        "# a comment\n_registered(req) if {\n\treq.gate.registered == true\n}",
    )
    assert new.digest != bundle.digest
    assert diff_bundles(bundle, new) == []


def test_bundle_from_git_revision_matches_the_committed_tree(bundle: PolicyBundle) -> None:
    head = bundle_from_spec("HEAD:policy/bundle")
    committed = (
        subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "policy/bundle"], cwd=REPO, check=False
        ).returncode
        == 0
    )
    if committed:
        assert head.digest == bundle.digest
    assert head.modules.keys() == bundle.modules.keys() or not committed
    with pytest.raises(BundleError):
        bundle_from_spec("no-such-revision-xyz:policy/bundle")
    with pytest.raises(BundleError, match="neither a directory"):
        bundle_from_spec("no/such/dir")

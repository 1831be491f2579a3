"""Jurisdiction profiles: selection, load-time consistency checks, computed obligations,
per-profile tests and documentation, and diffs between profiles (both engines)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import load_settings
from policy import engine as queries
from policy.bundles import PolicyBundle
from policy.diff import bundle_from_spec, diff_bundles
from policy.embedded import EmbeddedEngine
from policy.engine import PolicyEngine
from policy.errors import PolicyLoadError, ProfileDataError, UnknownProfileError
from policy.factory import engine_from_settings
from policy.local_opa import LocalOpaServer
from policy.opa_http import HttpEngine
from policy.rego_tests import run_all_profiles, run_tests

REPO = Path(__file__).resolve().parents[2]
PROFILES = ("cn-mainland", "eu", "hk")


@pytest.fixture(params=["embedded", "http"])
def engine_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


def _engine(kind: str, bundle: PolicyBundle, stack: list[Any]) -> PolicyEngine:
    if kind == "embedded":
        engine: PolicyEngine = EmbeddedEngine()
    else:
        server = LocalOpaServer().start()
        stack.append(server)
        engine = HttpEngine(server.url)
    engine.load(bundle)
    return engine


@pytest.fixture
def engines() -> Iterator[list[Any]]:
    stack: list[Any] = []
    yield stack
    for server in stack:
        server.stop()


def _edit_profile(bundle: PolicyBundle, profile: str, edit: Any) -> PolicyBundle:
    path = f"profiles/{profile}/data.json"
    data = json.loads(bundle.files[path])
    edit(data)
    return bundle.with_file(path, json.dumps(data).encode())


def test_every_profile_passes_its_tests_with_full_coverage(bundle: PolicyBundle) -> None:
    reports = run_all_profiles(bundle)
    assert [r.profile for r in reports] == list(PROFILES)
    for report in reports:
        assert report.failures == [], "\n".join(report.lines())
        assert report.coverage.percent == 100.0, "\n".join(report.lines())
    names = {r.profile: {f"{t.package}.{t.name}" for t in r.results} for r in reports}
    # Each profile runs the shared tests and only its own profile tests.
    mine = "veilmatch.profiles.cn_mainland_test.test_a_face_only_checkpoint_is_refused"
    assert mine in names["cn-mainland"] and mine not in names["eu"] | names["hk"]
    assert "veilmatch.profiles.eu_test.test_all_cases_pass" not in names["hk"]
    shared = "veilmatch.profile_test.test_shipped_profiles_have_no_problems"
    assert all(shared in n for n in names.values())


def test_a_wrong_value_in_one_profile_fails_that_profiles_tests_only(
    bundle: PolicyBundle,
) -> None:
    def shorten(data: dict[str, Any]) -> None:
        data["retention"]["audit_payload"]["recorded"]["days"] = 365

    edited = _edit_profile(bundle, "cn-mainland", shorten)
    cn = run_tests(edited.with_profile("cn-mainland"))
    assert {(f.package, f.name) for f in cn.failures} == {
        ("veilmatch.profiles.cn_mainland_test", "test_all_cases_pass")
    }
    assert "an audit payload is kept through its third year" in cn.failures[0].failed_cases
    assert run_tests(edited.with_profile("eu")).ok()


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda d: d["rule_bases"].pop("veilmatch.alert"),
            "profile hk: veilmatch.alert names no legal basis",
        ),
        (
            lambda d: d["legal_bases"].pop("hk-cap486-dpp4"),
            "profile hk: veilmatch.access cites hk-cap486-dpp4, which its legal-basis "
            "catalogue lacks",  # also reported for every other place citing it
        ),
        (
            lambda d: d["retention"]["alert"].pop("confirmed"),
            "profile hk: no valid retention period for alert/confirmed",
        ),
        (
            lambda d: d["obligations"]["pia"].pop("bases"),
            "profile hk: obligation pia names no legal basis",
        ),
    ],
    ids=["rule-without-basis", "basis-not-in-catalogue", "missing-period", "obligation"],
)
def test_profile_data_missing_a_legal_basis_is_refused_at_load(
    bundle: PolicyBundle, engine_kind: str, engines: list[Any], edit: Any, problem: str
) -> None:
    engine = _engine(engine_kind, bundle, engines)
    broken = _edit_profile(bundle, "hk", edit)  # an inactive profile: still refused
    with pytest.raises(ProfileDataError) as caught:
        engine.load(broken)
    assert problem in caught.value.problems
    assert problem in str(caught.value) and caught.value.digest == broken.digest
    assert isinstance(caught.value, PolicyLoadError)
    assert engine.bundle_digest == bundle.digest  # the previous bundle stays in force
    legal = {"role": "legal", "action": "policy.read", "subject": "legal-1"}
    assert engine.evaluate(queries.ACCESS, legal).allow


def test_a_bundle_with_profiles_but_no_consistency_rule_is_refused(bundle: PolicyBundle) -> None:
    files = {p: c for p, c in bundle.files.items() if not p.startswith("veilmatch/profile/")}
    files["veilmatch/profile/profile.rego"] = (
        b"package veilmatch.profile\n\nid := data.active_profile.id\n\n"
        b'active := data.profiles[id]\n\ncite(ids) := concat("; ", ids)\n\n'
        b"to_confirm(ids) if false\n"
    )
    with pytest.raises(ProfileDataError, match=r"no veilmatch\.profile\.problems rule"):
        EmbeddedEngine().load(PolicyBundle(files))


@pytest.mark.parametrize(
    ("size", "applies", "remaining"), [(0, False, 100_000), (99_999, False, 1), (100_000, True, 0)]
)
def test_the_filing_threshold_is_a_policy_decision(
    bundle: PolicyBundle,
    engine_kind: str,
    engines: list[Any],
    size: int,
    applies: bool,
    remaining: int,
) -> None:
    engine = _engine(engine_kind, bundle.with_profile("cn-mainland"), engines)
    decision = engine.evaluate(queries.LEGAL_OBLIGATIONS, {"watchlist_size": size})
    assert decision.profile == "cn-mainland" and decision.provenance()["profile"] == "cn-mainland"
    filing = {o["id"]: o for o in decision.result["obligations"]}["cac-filing"]
    assert (filing["applies"], filing["remaining"], filing["threshold"]) == (
        applies,
        remaining,
        100_000,
    )


def test_profiles_change_decisions_not_just_labels(bundle: PolicyBundle) -> None:
    hit = {
        "now": "2025-06-02T10:00:00+08:00",
        "hits": [
            {
                "entry_id": "wl-1",
                "status": "active",
                "legal_basis": "hk-cap60",
                "expires_at": "2025-12-31T23:59:59+08:00",
                "category": "parallel_trading",
            }
        ],
    }
    audit = {"kind": "audit_payload", "state": "recorded", "age_days": 400}
    outcomes = {}
    for profile in PROFILES:
        engine = EmbeddedEngine()
        engine.load(bundle.with_profile(profile))
        outcomes[profile] = (
            engine.evaluate(queries.ALERT, hit).result["alert"],
            engine.evaluate(queries.RETENTION, audit).result["action"],
        )
    assert outcomes == {
        "eu": (True, "redact"),
        "hk": (True, "redact"),
        "cn-mainland": (False, "keep"),  # Hong Kong law is no basis there; records kept 3 years
    }


def test_the_profile_setting_selects_the_law(tmp_path: Path) -> None:
    engine, event = engine_from_settings(
        load_settings(data_dir=tmp_path, policy_profile="cn-mainland")
    )
    try:
        assert event.profile == "cn-mainland" and event.to_audit()["profile"] == "cn-mainland"
        assert (
            engine.evaluate(queries.LEGAL_OBLIGATIONS, {"watchlist_size": 1}).result["profile"]
            == "cn-mainland"
        )
    finally:
        engine.close()
    default, event = engine_from_settings(load_settings(data_dir=tmp_path))
    default.close()
    assert event.profile == "eu"
    with pytest.raises(UnknownProfileError, match="defines cn-mainland, eu, hk"):
        engine_from_settings(load_settings(data_dir=tmp_path, policy_profile="mars"))


def test_committed_docs_are_current_for_every_profile(bundle: PolicyBundle) -> None:
    from policy.docs import docs_path, render

    for profile in PROFILES:
        path = REPO / docs_path(profile)
        committed = path.read_text(encoding="utf-8")
        assert committed == render(bundle.with_profile(profile)), (
            f"{path.name} is stale: run `veilmatch policy docs`"
        )
    assert docs_path("eu").name == "policies.md"
    assert docs_path("cn-mainland").name == "policies-cn-mainland.md"


def test_each_profile_document_shows_its_own_law(bundle: PolicyBundle) -> None:
    from policy.docs import render

    cn = render(bundle.with_profile("cn-mainland"))
    hk = render(bundle.with_profile("hk"))
    assert "PIPL Art. 26" in cn and "Facial Recognition Measures Art. 15" in cn
    assert "| `cac-filing` |" in cn and "from 100,000 people" in cn
    assert "| `audit_payload` | `recorded` | Audit log payload | 1095 days | redact |" in cn
    assert "Cap. 486 Sch. 1 DPP4" in hk and "PIPL" not in hk
    assert "**to confirm**" in cn  # what counsel must still confirm is marked
    assert bundle.with_profile("hk").digest in hk
    assert bundle.with_profile("cn-mainland").digest in cn


def test_diff_compares_profiles_as_it_compares_versions(bundle: PolicyBundle) -> None:
    root = str(REPO / "policy" / "bundle")
    eu, cn = bundle_from_spec(f"{root}#eu"), bundle_from_spec(f"{root}#cn-mainland")
    lines = [c.line() for c in diff_bundles(eu, cn)]
    assert lines[0] == "~ profile  active profile: eu → cn-mainland"
    assert "~ data     data.profile.retention.audit_payload.recorded.days: 183 → 1095" in lines
    assert "~ data     data.profile.face_recognition.alternative_required: false → true" in lines
    assert not any("data.profiles[" in line for line in lines)  # the same files on both sides
    assert not any(line.startswith(("~ rule", "+ rule", "- rule")) for line in lines)
    same = bundle_from_spec(root, "hk")
    assert same.profile == "hk" and diff_bundles(same, same) == []
    edited = _edit_profile(same, "cn-mainland", lambda d: d["sites"]["lo-wu"].update(open="07:00"))
    assert [c.line() for c in diff_bundles(same, edited)] == [
        '~ data     data.profiles["cn-mainland"].sites.lo-wu.open: "06:30" → "07:00"'
    ]
    with pytest.raises(UnknownProfileError):
        bundle_from_spec(f"{root}#mars")

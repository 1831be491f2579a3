"""Bundle validation and the digest definition (recomputable with sha256sum)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from policy.bundles import DEFAULT_PROFILE, PolicyBundle, default_bundle_dir
from policy.errors import BundleError, UnknownProfileError
from tests.policy.conftest import replace_in


@pytest.mark.parametrize("profile", ["eu", "hk", "cn-mainland"])
def test_digest_equals_the_documented_sha256sum_pipeline(
    bundle: PolicyBundle, profile: str
) -> None:
    script = (
        "{ find . -type f \\( -name '*.rego' ! -name '*_test.rego' -o -name data.json \\) "
        "| sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum; "
        f'echo "profile {profile}"; }} | sha256sum'
    )
    out = subprocess.run(
        ["sh", "-c", script], cwd=default_bundle_dir(), capture_output=True, check=True, text=True
    ).stdout.split()[0]
    assert bundle.with_profile(profile).digest == "sha256:" + out


def test_the_default_profile_is_eu_and_each_profile_has_its_own_digest(
    bundle: PolicyBundle,
) -> None:
    assert bundle.profile == DEFAULT_PROFILE == "eu"
    assert bundle.profiles == ("cn-mainland", "eu", "hk")
    digests = {bundle.with_profile(p).digest for p in bundle.profiles}
    assert len(digests) == 3 and bundle.digest in digests
    assert bundle.with_profile("hk").data["active_profile"] == {"id": "hk"}
    assert bundle.with_profile("hk").manifest == bundle.manifest  # same files, other law


def test_an_unknown_profile_is_refused_with_the_known_ones(bundle: PolicyBundle) -> None:
    with pytest.raises(UnknownProfileError, match=r"'mars'.*defines cn-mainland, eu, hk") as caught:
        PolicyBundle.from_dir(default_bundle_dir(), profile="mars")
    assert caught.value.profile == "mars" and caught.value.available == bundle.profiles
    assert isinstance(caught.value, BundleError)
    bare = {p: c for p, c in bundle.files.items() if not p.startswith("profiles/")}
    with pytest.raises(UnknownProfileError, match="defines none"):
        PolicyBundle(bare, profile="eu")


def test_a_bundle_without_profiles_keeps_the_plain_sha256sum_digest(bundle: PolicyBundle) -> None:
    bare = PolicyBundle({p: c for p, c in bundle.files.items() if not p.startswith("profiles/")})
    assert bare.profile is None and bare.profiles == () and "active_profile" not in bare.data
    text = "".join(f"{sha}  {path}\n" for path, sha in bare.manifest)
    assert bare.digest == "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_tests_are_loaded_separately_and_not_in_the_digest(bundle: PolicyBundle) -> None:
    assert bundle.tests and all(p.endswith("_test.rego") for p in bundle.tests)
    assert not any(p.endswith("_test.rego") for p in bundle.modules)
    edited = replace_in(
        bundle, "veilmatch/access/access_test.rego", "an officer reads alerts", "officer reads"
    )
    assert edited.digest == bundle.digest


def test_any_policy_or_data_change_changes_the_digest(bundle: PolicyBundle) -> None:
    rule = replace_in(bundle, "veilmatch/match/match.rego", "< limit", "<= limit")
    data = replace_in(
        bundle,
        "params/match/data.json",
        '"rate_limit_per_minute": 30',
        '"rate_limit_per_minute": 31',
    )
    assert len({bundle.digest, rule.digest, data.digest}) == 3


def test_data_is_mounted_at_its_directory_path(bundle: PolicyBundle) -> None:
    assert set(bundle.data) == {
        "params.access",
        "params.match",
        "params.alert",
        "params.retention",
        "profiles.eu",
        "profiles.hk",
        "profiles.cn-mainland",
        "active_profile",
    }
    assert bundle.data["params.alert"]["required_reviewers"] == 2


def test_from_dir_ignores_markdown_and_hidden_files(tmp_path: Path) -> None:
    shutil.copytree(default_bundle_dir(), tmp_path / "b")
    (tmp_path / "b" / "README.md").write_text("notes")
    (tmp_path / "b" / ".hidden").write_text("x")
    assert (
        PolicyBundle.from_dir(tmp_path / "b").digest
        == PolicyBundle.from_dir(default_bundle_dir()).digest
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no policy"),
        ({"a.rego": b"\xff\xfe"}, "not UTF-8"),
        ({"a.rego": b"package a", "p/data.json": b"{"}, "malformed JSON"),
        ({"a.rego": b"package a", "p/data.json": b"[1]"}, "JSON object"),
        ({"a.rego": b"package a", "data.json": b"{}"}, "directory"),
        ({"a.rego": b"package a", "bad-dir/data.json": b"{}"}, "identifier"),
        ({"a.rego": b"package a", "notes.txt": b"x"}, "unexpected file"),
        ({"../a.rego": b"package a"}, "relative path"),
        ({"a.rego": b"package a", "profiles/EU/data.json": b"{}"}, "profiles/<id>"),
        ({"a.rego": b"package a", "profiles/a/b/data.json": b"{}"}, "profiles/<id>"),
        ({"a.rego": b"package a", "active_profile/data.json": b"{}"}, "reserved"),
    ],
    ids=[
        "empty",
        "non-utf8-rego",
        "truncated-json",
        "json-array",
        "root-data",
        "dash-dir",
        "txt-file",
        "escaping-path",
        "uppercase-profile",
        "nested-profile",
        "reserved-path",
    ],
)
def test_malformed_bundles_are_refused(files: dict[str, bytes], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        PolicyBundle(files)


def test_from_dir_requires_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        PolicyBundle.from_dir(tmp_path / "missing")


def test_manifest_lists_each_decision_file_hash(bundle: PolicyBundle) -> None:
    paths = [p for p, _ in bundle.manifest]
    assert paths == sorted(paths)
    assert "params/access/data.json" in paths and "veilmatch/lib/time.rego" in paths
    assert json.loads(bundle.files["params/access/data.json"])["actions"]

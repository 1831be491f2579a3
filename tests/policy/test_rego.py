"""The Rego tests run through the embedded evaluator; `make test` fails below 100 % coverage."""

from __future__ import annotations

import pytest

from policy.bundles import PolicyBundle
from policy.errors import PolicyLoadError
from policy.rego_tests import run_tests
from tests.policy.conftest import replace_in


def test_shipped_policies_pass_all_tests_with_full_coverage(bundle: PolicyBundle) -> None:
    report = run_tests(bundle)
    assert len(report.results) >= 16
    assert report.failures == [], "\n".join(report.lines())
    assert report.coverage.percent == 100.0, "\n".join(report.lines())
    assert report.ok(100.0)
    # every policy module is measured, tests are not
    assert set(report.coverage.files) == set(bundle.modules)
    assert all(f.total > 0 for f in report.coverage.files.values())


def test_a_broken_rule_fails_with_the_failing_cases_named(bundle: PolicyBundle) -> None:
    broken = replace_in(
        bundle,
        "veilmatch/match/match.rego",
        "req.requests_last_minute < limit",
        "req.requests_last_minute <= limit",
    )
    report = run_tests(broken)
    assert not report.ok()
    [failure] = report.failures
    assert (failure.package, failure.name) == ("veilmatch.match_test", "test_all_cases_pass")
    assert failure.failed_cases == ("the 31st search within a minute is refused",)


def test_a_weakened_alert_rule_fails(bundle: PolicyBundle) -> None:
    broken = replace_in(
        bundle, "params/alert/data.json", '"required_reviewers": 2', '"required_reviewers": 3'
    )
    report = run_tests(broken)
    assert {f.package for f in report.failures} == {"veilmatch.alert_test"}


def test_an_untested_rule_drops_coverage_below_100(bundle: PolicyBundle) -> None:
    path = "veilmatch/access/access.rego"
    text = (
        bundle.files[path].decode()
        + '\nreasons contains "maintenance window" if input.maintenance == true\n'
    )
    report = run_tests(bundle.with_file(path, text.encode()))
    assert report.failures == []
    assert report.coverage.percent < 100.0
    assert not report.ok(100.0)
    lines = report.coverage.uncovered()[path]
    assert len(text.splitlines()) in lines


def test_a_test_that_errors_is_a_failure(bundle: PolicyBundle) -> None:
    path = "veilmatch/access/access_test.rego"
    text = bundle.files[path].decode() + '\ntest_boom if { to_number("x") == 1 }\n'
    report = run_tests(bundle.with_file(path, text.encode()))
    [failure] = report.failures
    assert failure.name == "test_boom" and failure.error and "to_number" in failure.error


def test_a_bundle_whose_tests_do_not_compile_is_refused(bundle: PolicyBundle) -> None:
    path = "veilmatch/access/access_test.rego"
    text = bundle.files[path].decode() + "\ntest_x if { undefined_function(1) }\n"
    with pytest.raises(PolicyLoadError, match="undefined function"):
        run_tests(bundle.with_file(path, text.encode()))


def test_no_tests_is_not_ok(bundle: PolicyBundle) -> None:
    bare = PolicyBundle({p: c for p, c in bundle.files.items() if not p.endswith("_test.rego")})
    report = run_tests(bare)
    assert report.results == () and not report.ok(0.0)

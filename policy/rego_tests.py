"""Run the Rego tests (``*_test.rego``) through the embedded OPA evaluator, with coverage.

The bindings expose OPA's evaluator and its coverage tracer but not ``opa test``, so
this module is the test runner: every rule whose name starts with ``test_`` in a test
module is one test; it passes when it evaluates to ``true`` and fails when it is
undefined, ``false`` or raises. Test packages may define a ``failed`` set naming the
table cases that did not pass; it is reported with the failure.

**Coverage** has the meaning of ``opa test --coverage``: OPA's tracer marks each source
line of a policy module that holds a rule head or a body expression as covered when
some test evaluated it. A line is covered if any test covered it; the percentage is
covered lines over all such lines in the policy modules (test modules excluded). A
rule no test reaches, or a branch no test takes, shows up as uncovered lines.

**Profiles.** A bundle with jurisdiction profiles is tested once per profile: a run
evaluates under the bundle's active profile, runs the shared tests and the test packages
whose METADATA names that profile (``custom.profile: cn-mainland``), and skips the
others. Coverage is per run, so every profile must reach 100 % with its own tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from policy._opa import OpaEngine, OpaError, compile_bundle
from policy.bundles import PolicyBundle, package_of
from policy.metadata import module_annotations

__all__ = ["CoverageReport", "RegoTestReport", "RegoTestResult", "run_all_profiles", "run_tests"]

_TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]*)\b", re.MULTILINE)


@dataclass(frozen=True)
class RegoTestResult:
    """One ``test_*`` rule's outcome."""

    package: str
    name: str
    passed: bool
    error: str | None = None
    failed_cases: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileCoverage:
    """Covered and uncovered line numbers (1-based) of one policy module."""

    covered: frozenset[int]
    not_covered: frozenset[int]

    @property
    def total(self) -> int:
        """Lines that hold rule heads or expressions."""
        return len(self.covered | self.not_covered)


@dataclass(frozen=True)
class CoverageReport:
    """Line coverage of the policy (non-test) modules over the whole test run."""

    files: dict[str, FileCoverage] = field(default_factory=dict)

    @property
    def percent(self) -> float:
        """Covered lines / all lines with rule heads or expressions, in percent."""
        total = sum(f.total for f in self.files.values())
        covered = sum(len(f.covered) for f in self.files.values())
        return 100.0 if total == 0 else 100.0 * covered / total

    def uncovered(self) -> dict[str, list[int]]:
        """Module path → sorted uncovered line numbers (only modules that have some)."""
        return {p: sorted(f.not_covered) for p, f in sorted(self.files.items()) if f.not_covered}


@dataclass(frozen=True)
class RegoTestReport:
    """All test outcomes and the coverage they achieved."""

    results: tuple[RegoTestResult, ...]
    coverage: CoverageReport
    profile: str | None = None

    @property
    def failures(self) -> list[RegoTestResult]:
        """The tests that did not pass."""
        return [r for r in self.results if not r.passed]

    def ok(self, min_coverage: float = 100.0) -> bool:
        """Every test passed, there was at least one, and coverage reached ``min_coverage``."""
        return bool(self.results) and not self.failures and self.coverage.percent >= min_coverage

    def lines(self) -> list[str]:
        """A human-readable report, one line per test, then coverage."""
        out = [f"profile {self.profile}"] if self.profile else []
        for r in self.results:
            status = "PASS" if r.passed else "FAIL"
            out.append(f"{status} data.{r.package}.{r.name}")
            if r.error:
                out.append(f"     error: {r.error}")
            out.extend(f"     case failed: {case}" for case in r.failed_cases)
        passed = len(self.results) - len(self.failures)
        out.append(f"{passed}/{len(self.results)} tests passed")
        out.append(f"coverage: {self.coverage.percent:.2f}% of policy lines")
        for path, rows in self.coverage.uncovered().items():
            out.append(f"     not covered: {path} lines {', '.join(map(str, rows))}")
        return out


def test_profile(path: str, text: str) -> str | None:
    """The profile a test module is for (its package METADATA ``custom.profile``), if any."""
    for note in module_annotations(path, text):
        if note.target == "package" and note.custom.get("profile") is not None:
            return str(note.custom["profile"])
    return None


def discover(bundle: PolicyBundle) -> list[tuple[str, str]]:
    """(package, test rule name) for every test rule that runs under the bundle's profile,
    in file then source order (tests for another profile are left out)."""
    found: list[tuple[str, str]] = []
    for path in sorted(bundle.tests):
        text = bundle.tests[path]
        if test_profile(path, text) not in (None, bundle.profile):
            continue
        package = package_of(text, path)
        for name in dict.fromkeys(_TEST_RULE.findall(text)):
            found.append((package, name))
    return found


def run_tests(bundle: PolicyBundle) -> RegoTestReport:
    """Compile ``bundle`` with its tests and run every test rule with coverage.

    Raises ``PolicyLoadError`` if the bundle (tests included) does not compile.
    """
    engine = compile_bundle(bundle, include_tests=True)
    try:
        covered: dict[str, set[int]] = {p: set() for p in bundle.modules}
        seen: dict[str, set[int]] = {p: set() for p in bundle.modules}
        results = [
            _run_one(engine, package, name, bundle, covered, seen)
            for package, name in discover(bundle)
        ]
    finally:
        engine.close()
    files = {
        path: FileCoverage(frozenset(covered[path]), frozenset(seen[path] - covered[path]))
        for path in bundle.modules
    }
    return RegoTestReport(tuple(results), CoverageReport(files), bundle.profile)


def run_all_profiles(bundle: PolicyBundle) -> list[RegoTestReport]:
    """:func:`run_tests` once per profile the bundle defines (once if it defines none)."""
    if not bundle.profiles:
        return [run_tests(bundle)]
    return [run_tests(bundle.with_profile(p)) for p in bundle.profiles]


def _run_one(
    engine: OpaEngine,
    package: str,
    name: str,
    bundle: PolicyBundle,
    covered: dict[str, set[int]],
    seen: dict[str, set[int]],
) -> RegoTestResult:
    try:
        rows = engine.eval_query(f"data.{package}.{name}", coverage=True)
    except OpaError as exc:
        return RegoTestResult(package, name, False, error=exc.message)
    _merge(engine.last_coverage or {}, covered, seen)
    if rows:
        return RegoTestResult(package, name, True)
    return RegoTestResult(package, name, False, failed_cases=_failed_cases(engine, package))


def _merge(
    report: dict[str, object], covered: dict[str, set[int]], seen: dict[str, set[int]]
) -> None:
    files = report.get("files")
    if not isinstance(files, dict):
        return
    for path, info in files.items():
        if path not in covered or not isinstance(info, dict):
            continue  # test modules are not measured
        hit = _rows(info.get("covered") or [])
        miss = _rows(info.get("not_covered") or [])
        covered[path] |= hit
        seen[path] |= hit | miss


def _rows(ranges: Iterable[dict[str, dict[str, int]]]) -> set[int]:
    rows: set[int] = set()
    for span in ranges:
        rows.update(range(span["start"]["row"], span["end"]["row"] + 1))
    return rows


def _failed_cases(engine: OpaEngine, package: str) -> tuple[str, ...]:
    try:
        rows = engine.eval_query(f"x := data.{package}.failed")
    except OpaError:
        return ()
    if not rows or not isinstance(rows[0].get("x"), list):
        return ()
    return tuple(str(case) for case in rows[0]["x"])

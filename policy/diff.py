"""Rule-level differences between two policy bundles, for review before activation.

Rules are compared by OPA's parsed form (``rego.parse_module``), so reformatting or
editing plain comments does not register; METADATA changes are listed field by field,
data changes leaf by leaf, and test table cases by name.

**Profiles** are compared as versions are: the active profile's data is compared under
``data.profile.*`` (so ``eu`` against ``cn-mainland`` lists every legal basis, period,
checkpoint and obligation that differs), preceded by a ``profile`` line when the
active profile changed; the other profiles' data is compared as it is, under
``data.profiles["<id>"].*``, only when both sides have the same active profile. A spec
names a profile with a ``#`` suffix: ``policy/bundle#hk``, ``HEAD:policy/bundle#eu``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from policy._opa import parse_module
from policy.bundles import ACTIVE_PROFILE_PATH, PolicyBundle
from policy.errors import BundleError
from policy.metadata import Annotation, bundle_annotations

__all__ = ["Change", "bundle_from_spec", "diff_bundles", "format_changes"]


@dataclass(frozen=True)
class Change:
    """One difference. ``sign`` is ``+`` added, ``-`` removed, ``~`` changed."""

    sign: str
    scope: str  # rule, test, metadata, data
    package: str
    name: str
    detail: str = ""

    def line(self) -> str:
        """``~ rule     veilmatch.match.allow: definition changed``."""
        where = f"{self.package}.{self.name}" if self.package else self.name
        return f"{self.sign} {self.scope:<8} {where}" + (f": {self.detail}" if self.detail else "")


def _term_name(term: Mapping[str, Any]) -> str:
    value = term.get("value")
    if term.get("type") in ("var", "string"):
        return str(value)
    return "[" + json.dumps(value, sort_keys=True) + "]"


def _rules(modules: Mapping[str, str]) -> dict[tuple[str, str], list[str]]:
    """(package, rule name) → sorted canonical JSON of each definition."""
    out: dict[tuple[str, str], list[str]] = {}
    for path in sorted(modules):
        module = parse_module(path, modules[path])
        package = ".".join(_term_name(t) for t in module["package"]["path"][1:])
        for rule in module.get("rules", []):
            head = rule.get("head", {})
            ref = head.get("ref") or [{"type": "var", "value": head.get("name")}]
            name = ".".join(_term_name(t) for t in ref)
            out.setdefault((package, name), []).append(json.dumps(rule, sort_keys=True))
    return {key: sorted(defs) for key, defs in out.items()}


def _flatten(value: Any, prefix: str) -> dict[str, str]:
    if isinstance(value, Mapping) and value:
        out: dict[str, str] = {}
        for key in value:
            out.update(_flatten(value[key], f"{prefix}.{key}"))
        return out
    return {prefix: json.dumps(value, sort_keys=True, ensure_ascii=False)}


def _compare_rules(scope: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[Change]:
    before, after = _rules(old), _rules(new)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        package, name = key
        if key not in before:
            changes.append(Change("+", scope, package, name, "added"))
        elif key not in after:
            changes.append(Change("-", scope, package, name, "removed"))
        elif before[key] != after[key]:
            n, m = len(before[key]), len(after[key])
            detail = "definition changed" if n == m else f"definitions {n} → {m}"
            changes.append(Change("~", scope, package, name, detail))
    return changes


def _compare_metadata(old: list[Annotation], new: list[Annotation]) -> list[Change]:
    def index(notes: list[Annotation]) -> dict[tuple[str, str], dict[str, str]]:
        return {
            (a.package, a.target): _flatten(
                {"title": a.title, "description": a.description, "custom": a.custom}, "metadata"
            )
            for a in notes
        }

    before, after = index(old), index(new)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        package, target = key
        a, b = before.get(key, {}), after.get(key, {})
        for field in sorted(a.keys() | b.keys()):
            if a.get(field) != b.get(field):
                label = field.removeprefix("metadata.")
                changes.append(
                    Change(
                        "~",
                        "metadata",
                        package,
                        target,
                        f"{label}: {a.get(field, '(none)')} → {b.get(field, '(none)')}",
                    )
                )
    return changes


def _comparable_data(bundle: PolicyBundle, other: PolicyBundle) -> dict[str, str]:
    """Flattened data: the active profile under ``data.profile``, others only if
    ``other`` has the same active profile (else they are the same files, not a change)."""
    out: dict[str, str] = {}
    for path, value in bundle.data.items():
        profile = path.removeprefix("profiles.") if path.startswith("profiles.") else None
        if path == ACTIVE_PROFILE_PATH:
            continue
        if profile is not None and profile == bundle.profile:
            out.update(_flatten(value, "data.profile"))
        elif profile is not None:
            if bundle.profile == other.profile:
                out.update(_flatten(value, f'data.profiles["{profile}"]'))
        else:
            out.update(_flatten(value, f"data.{path}"))
    return out


def _compare_data(old: PolicyBundle, new: PolicyBundle) -> list[Change]:
    a = _comparable_data(old, new)
    b = _comparable_data(new, old)
    changes = []
    if old.profile != new.profile:
        detail = f"{old.profile} → {new.profile}"
        changes.append(Change("~", "profile", "", "active profile", detail))
    for key in sorted(a.keys() | b.keys()):
        if key not in a:
            changes.append(Change("+", "data", "", key, b[key]))
        elif key not in b:
            changes.append(Change("-", "data", "", key, a[key]))
        elif a[key] != b[key]:
            changes.append(Change("~", "data", "", key, f"{a[key]} → {b[key]}"))
    return changes


def diff_bundles(old: PolicyBundle, new: PolicyBundle) -> list[Change]:
    """Every rule, METADATA, data and test change from ``old`` to ``new``."""
    changes = _compare_rules("rule", old.modules, new.modules)
    changes += _compare_metadata(bundle_annotations(old), bundle_annotations(new))
    changes += _compare_data(old, new)
    changes += _compare_rules("test", old.tests, new.tests)
    return changes


def format_changes(old: PolicyBundle, new: PolicyBundle, changes: list[Change]) -> list[str]:
    """Printable report: digests, then one line per change."""

    def label(bundle: PolicyBundle) -> str:
        suffix = f" (profile {bundle.profile})" if bundle.profile else ""
        return f"{bundle.source} {bundle.digest}{suffix}"

    lines = [f"old: {label(old)}", f"new: {label(new)}"]
    if old.digest == new.digest:
        lines.append("decision files identical (same digest)")
    lines += [c.line() for c in changes] or ["no rule, metadata, data or test changes"]
    return lines


def bundle_from_spec(spec: str, profile: str | None = None) -> PolicyBundle:
    """A bundle from a directory, or from git history as ``REV:path``, optionally
    ``#profile`` (else ``profile``, else the default profile).

    Examples: ``HEAD~1:policy/bundle``, ``policy/bundle#cn-mainland`` (paths are relative
    to the repository root). Raises ``UnknownProfileError`` for a profile the bundle
    lacks, ``BundleError`` for anything else unreadable.
    """
    spec, _, named = spec.partition("#")
    bundle = _bundle_at(spec)
    wanted = named or profile
    return bundle.with_profile(wanted) if wanted else bundle


def _bundle_at(spec: str) -> PolicyBundle:
    path = Path(spec)
    if path.is_dir():
        return PolicyBundle.from_dir(path)
    rev, sep, subdir = spec.partition(":")
    if not sep or not rev:
        raise BundleError(f"{spec}: neither a directory nor REV:path")
    subdir = subdir.strip("/") or "."
    listing = _git("ls-tree", "-r", "--name-only", rev, "--", subdir)
    files: dict[str, bytes] = {}
    for name in listing.decode().splitlines():
        rel = PurePosixPath(name).relative_to(subdir).as_posix() if subdir != "." else name
        if rel.endswith(".md") or any(p.startswith((".", "__")) for p in PurePosixPath(rel).parts):
            continue
        files[rel] = _git("show", f"{rev}:{name}")
    if not files:
        raise BundleError(f"{spec}: no files at that revision and path")
    return PolicyBundle(files, source=spec)


def _git(*args: str) -> bytes:
    try:
        return subprocess.run(  # noqa: S603 - fixed executable, arguments are not a shell
            ["git", *args],  # noqa: S607 - git from PATH, like any developer tool
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        raise BundleError(
            f"git {' '.join(args[:2])}: {stderr.decode(errors='replace').strip() or exc}"
        ) from None

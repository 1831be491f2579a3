"""Markdown tables for the generated policy documentation (cells, schemas, test cases).

Shared by :mod:`policy.docs` (one section per policy package) and
:mod:`policy.docs_profile` (the jurisdiction profile section). Output is deterministic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from policy.bundles import PolicyBundle, package_of
from policy.metadata import Annotation
from policy.rego_tests import discover

__all__ = ["cell", "fields", "flatten", "table", "test_section"]

_CASES_RULE = re.compile(r"^([a-z_]*cases)\s*:=", re.MULTILINE)
_INDEX = re.compile(r"\[(\d+)\]")


def cell(value: Any) -> str:
    """One table cell: strings as they are, JSON for the rest, pipes escaped."""
    if isinstance(value, str):
        text = value
    elif value is None:
        text = "—"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return " ".join(text.split()).replace("|", "\\|")


def table(headers: list[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """A Markdown table followed by a blank line."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return [*out, ""]


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """``{"a.b": "1"}`` for a JSON object; lists and scalars stay whole."""
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key in value:
            out.update(flatten(value[key], f"{prefix}{key}."))
        return out
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out = {}
        stem = prefix.rstrip(".")
        for i, item in enumerate(value, 1):
            out.update(flatten(item, f"{stem}[{i}]."))
        return out
    return {prefix.rstrip("."): cell(value)}


def fields(value: Any) -> list[str]:
    """``key: value`` lines of a flattened JSON value."""
    return [f"{k}: {v}" for k, v in flatten(value).items()]


def _baseline(inputs: list[dict[str, str]]) -> dict[str, str]:
    """Field values shared by more than half the cases (shown once above the table)."""
    counts: dict[tuple[str, str], int] = {}
    for row in inputs:
        for item in row.items():
            counts[item] = counts.get(item, 0) + 1
    base: dict[str, str] = {}
    for (key, value), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if any(index != "1" for index in _INDEX.findall(key)):
            continue  # only the first element of a list is shared; later ones vary by row
        if 2 * n > len(inputs) and key not in base:
            base[key] = value
    return base


def _difference(row: dict[str, str], base: dict[str, str]) -> str:
    if not row:
        return "(empty request)"
    lines = [f"{k}: {v}" for k, v in row.items() if base.get(k) != v]
    lines += [
        f"{k}: (missing)"
        for k in base
        if k not in row and not any(k.startswith(r + "[") for r in row)  # e.g. "hits: []"
    ]
    return "<br>".join(lines) or "(as above)"


def _humanise(test_name: str) -> str:
    return test_name.removeprefix("test_").replace("_", " ")


def _case_table(rule: str, cases: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    if rule != "cases":
        out += [f"**{rule.removesuffix('_cases').replace('_', ' ').capitalize()} cases**", ""]
    inputs = [flatten(c.get("input")) for c in cases]
    base = _baseline(inputs) if len(inputs) > 2 else {}
    if base:
        out += ["Unless a row says otherwise, the input has:", ""]
        out += [f"- {k}: {v}" for k, v in base.items()] + [""]
    out += table(
        ["#", "case", "input" + (" (differences)" if base else ""), "expected"],
        (
            (i, c.get("case"), _difference(row, base), "<br>".join(fields(c.get("want"))))
            for i, (c, row) in enumerate(zip(cases, inputs, strict=True), 1)
        ),
    )
    return out


def test_section(
    bundle: PolicyBundle,
    test_package: str,
    test_notes: list[Annotation],
    engine: Any,
    heading: str = "### Test cases",
) -> list[str]:
    """The case tables of one test package (evaluated under the bundle's profile)."""
    paths = [p for p in sorted(bundle.tests) if package_of(bundle.tests[p], p) == test_package]
    if not paths:
        return []
    out = [heading, ""]
    head = next(
        (a for a in test_notes if a.package == test_package and a.target == "package"), None
    )
    if head is not None and head.description:
        out += [head.description, ""]
    for path in paths:
        for rule in dict.fromkeys(_CASES_RULE.findall(bundle.tests[path])):
            out += _case_table(rule, engine.eval_document(f"{test_package}.{rule}"))
    others = [
        name
        for pkg, name in discover(bundle)
        if pkg == test_package and name != "test_all_cases_pass"
    ]
    if others:
        out += ["Further checks:", ""] + [f"- {_humanise(name)}" for name in others] + [""]
    return out

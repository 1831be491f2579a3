"""Read the METADATA annotations of Rego modules (what the legal team reviews).

An annotation is a comment block starting with ``# METADATA`` whose YAML body
(``title``, ``description``, ``custom``) describes the statement on the very next line:
a ``package`` or a rule. The YAML is parsed by OPA's own parser (``yaml.unmarshal``), the
same one the compiler uses for ``rego.metadata.rule()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from policy._opa import yaml_load
from policy.bundles import PolicyBundle, package_of
from policy.errors import BundleError, PolicyError

__all__ = ["Annotation", "bundle_annotations", "module_annotations"]

_START = re.compile(r"^\s*#\s*METADATA\s*$")
_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)")
_RULE = re.compile(r"^(?:default\s+)?([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")


@dataclass(frozen=True)
class Annotation:
    """One METADATA block and the statement it annotates.

    ``target`` is ``"package"`` for a package annotation, else the rule name
    (``"decision"``, ``"periods.alert.confirmed"``); ``line`` is the statement's line.
    """

    path: str
    package: str
    target: str
    line: int
    title: str = ""
    description: str = ""
    custom: dict[str, Any] = field(default_factory=dict)

    @property
    def query(self) -> str:
        """``<package>.<rule>`` (or the package itself for package annotations)."""
        return self.package if self.target == "package" else f"{self.package}.{self.target}"


def module_annotations(path: str, text: str) -> list[Annotation]:
    """All annotations in one module, in source order; malformed YAML raises BundleError."""
    package = package_of(text, path)
    lines = text.splitlines()
    found: list[Annotation] = []
    i = 0
    while i < len(lines):
        if not _START.match(lines[i]):
            i += 1
            continue
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].lstrip().startswith("#"):
            comment = lines[i].lstrip()[1:]
            body.append(comment[1:] if comment.startswith(" ") else comment)
            i += 1
        if i >= len(lines):
            raise BundleError(f"{path}: METADATA block at the end of the file annotates nothing")
        statement = lines[i]
        if (match := _PACKAGE.match(statement)) is not None:
            target = "package"
        elif (match := _RULE.match(statement)) is not None:
            target = match.group(1)
        else:
            raise BundleError(f"{path}:{i + 1}: METADATA is not followed by a package or rule")
        try:
            fields = yaml_load("\n".join(body)) or {}
        except PolicyError as exc:
            raise BundleError(f"{path}:{i}: {exc}") from None
        if not isinstance(fields, dict):
            raise BundleError(f"{path}:{i}: METADATA must be a YAML mapping")
        custom = fields.get("custom") or {}
        found.append(
            Annotation(
                path=path,
                package=package,
                target=target,
                line=i + 1,
                title=str(fields.get("title") or ""),
                description=str(fields.get("description") or "").strip(),
                custom=custom if isinstance(custom, dict) else {},
            )
        )
    return found


def bundle_annotations(bundle: PolicyBundle, *, tests: bool = False) -> list[Annotation]:
    """Annotations of every policy module (and test modules if asked), by path."""
    modules = {**bundle.modules, **(bundle.tests if tests else {})}
    return [a for path in sorted(modules) for a in module_annotations(path, modules[path])]

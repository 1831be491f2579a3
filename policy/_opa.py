"""The only module that imports the embedded OPA bindings (``opa_bindings``).

Everything here turns ``OpaError`` into this component's errors. The bindings compile
lazily: ``add_policy`` only parses, so :func:`compile_bundle` forces bundle activation
(type checking, METADATA YAML, cross-module references) with a trivial query before a
new engine is ever used.
"""

from __future__ import annotations

import base64
from typing import Any

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from policy.bundles import PolicyBundle
from policy.errors import PolicyError, PolicyLoadError, ProfileDataError

#: The rule listing inconsistencies in the profile data (checked at every load).
PROFILE_PROBLEMS = "veilmatch.profile.problems"

__all__ = [
    "PROFILE_PROBLEMS",
    "OpaEngine",
    "OpaError",
    "OpaUndefinedError",
    "compile_bundle",
    "parse_module",
    "yaml_load",
]


def compile_bundle(bundle: PolicyBundle, *, include_tests: bool = False) -> OpaEngine:
    """A fresh engine holding ``bundle`` (tests too if asked), fully compiled.

    Raises ``PolicyLoadError`` with the engine's message on any parse or compile error,
    and ``ProfileDataError`` when the bundle defines profiles and
    ``veilmatch.profile.problems`` is not empty (or undefined).
    """
    engine = OpaEngine()
    try:
        modules = {**bundle.modules, **(bundle.tests if include_tests else {})}
        for path in sorted(modules):
            engine.add_policy(path, modules[path])
        for data_path in sorted(bundle.data):
            engine.add_data(bundle.data[data_path], data_path)
        engine.eval_query("__veilmatch_probe := true")
        problems = _profile_problems(engine) if bundle.profiles else ()
    except OpaError as exc:
        engine.close()
        raise PolicyLoadError(bundle.digest, exc.message) from None
    if problems:
        engine.close()
        raise ProfileDataError(bundle.digest, problems)
    return engine


def _profile_problems(engine: OpaEngine) -> tuple[str, ...]:
    """Sorted problems of the profile data; a bundle without the check is a problem too."""
    try:
        found = engine.eval_document(PROFILE_PROBLEMS)
    except OpaUndefinedError:
        return (f"the bundle defines profiles but no {PROFILE_PROBLEMS} rule",)
    return tuple(sorted(str(p) for p in found or ()))


_scratch: OpaEngine | None = None


def _scratch_engine() -> OpaEngine:
    global _scratch
    if _scratch is None:
        _scratch = OpaEngine()
    return _scratch


def yaml_load(text: str) -> Any:
    """Parse YAML with OPA's own parser (the one that reads METADATA annotations)."""
    try:
        rows = _scratch_engine().eval_query("x := yaml.unmarshal(input.text)", {"text": text})
    except OpaError as exc:
        raise PolicyError(f"malformed METADATA: {exc.message}") from None
    return rows[0]["x"] if rows else None


def parse_module(path: str, text: str) -> dict[str, Any]:
    """OPA's AST for one module (rules without locations), comments decoded."""
    try:
        rows = _scratch_engine().eval_query(
            "x := rego.parse_module(input.path, input.text)", {"path": path, "text": text}
        )
    except OpaError as exc:
        raise PolicyLoadError("(unparsed)", exc.message) from None
    module: dict[str, Any] = rows[0]["x"]
    for comment in module.get("comments", []):
        comment["Text"] = base64.b64decode(comment["Text"]).decode("utf-8")
    return module

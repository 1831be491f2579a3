"""The default engine: OPA's Go evaluator in process (``opa-golib-python-bindings``)."""

from __future__ import annotations

from typing import Any

from policy._opa import OpaEngine, OpaError, OpaUndefinedError, compile_bundle
from policy.bundles import PolicyBundle
from policy.engine import Outcome, PolicyEngine
from policy.errors import PolicyEvaluationError

__all__ = ["EmbeddedEngine"]


class EmbeddedEngine(PolicyEngine):
    """Evaluates in process; a load compiles a fresh OPA engine and swaps it in atomically.

    In-flight evaluations finish on the engine they started with (the old engine is
    released when the last reference goes), so a load never disturbs a decision.
    """

    kind = "embedded"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._state: tuple[OpaEngine, str, str | None] | None = None

    def _activate(self, bundle: PolicyBundle, previous: PolicyBundle | None) -> None:
        engine = compile_bundle(bundle)  # raises PolicyLoadError; nothing changed yet
        self._state = (engine, bundle.digest, bundle.profile)

    def _evaluate(self, query: str, package: str, rule: str, input: dict[str, Any]) -> Outcome:
        state = self._state
        assert state is not None  # evaluate() checked a bundle is loaded
        engine, digest, profile = state
        try:
            value = engine.eval_document(f"{package}.{rule}", input)
        except OpaUndefinedError:
            return Outcome(False, None, digest, profile=profile)
        except OpaError as exc:
            raise PolicyEvaluationError(query, exc.message) from None
        return Outcome(True, value, digest, profile=profile)

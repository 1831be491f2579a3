"""The sidecar engine: an OPA server (``opa run --server``) over its REST API.

Uses ``opa-python-client`` with ``rego_compat=False``: its default silently rewrites a
policy the server rejected and retries, which would make the loaded text differ from
the reviewed text. Calls made (and all the local test server implements):

- ``PUT /v1/data/<path>`` for each ``data.json`` and for the ``veilmatch_bundle``
  manifest (the active digest, so operators can check what a sidecar holds);
- ``PUT /v1/policies/<id>`` for each module (id = its path in the bundle);
- ``DELETE /v1/policies/<id>`` / ``DELETE /v1/data/<path>`` for files a new bundle dropped;
- ``POST /v1/data/<package>/<rule>`` with ``{"input": …}`` to evaluate.

Loading is checked first with the embedded compiler (same OPA 1.x language), so a
broken bundle is refused before the server is touched. Pushing is module by module,
not atomic: if the server refuses one, the previous bundle is pushed back. A sidecar
must be managed by one veilmatch process only.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlsplit

from opa_client import OpaClient

from policy._opa import compile_bundle
from policy.bundles import PolicyBundle
from policy.engine import Outcome, PolicyEngine
from policy.errors import (
    PolicyEngineUnavailableError,
    PolicyError,
    PolicyEvaluationError,
    PolicyLoadError,
)

__all__ = ["MANIFEST_PATH", "HttpEngine"]

#: Where the pushed bundle's digest is stored on the server (``data.veilmatch_bundle``).
MANIFEST_PATH = "veilmatch_bundle"


def _server_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {response.status_code}"
        return str(body.get("message") or body)
    parts = [str(getattr(exc, "message", "") or exc)]
    for err in getattr(exc, "errors", None) or []:
        if isinstance(err, dict) and err.get("message"):
            parts.append(str(err["message"]))
    return ": ".join(p for p in parts if p)


_SHARED = ("veilmatch/lib/", "veilmatch/profile/")


class HttpEngine(PolicyEngine):
    """Evaluates on an OPA server at ``url`` (``http://host:port`` or ``https://…``).

    Timeouts and connection failures raise ``PolicyEngineUnavailableError`` (callers
    fail closed). ``timeout`` is in seconds per request.
    """

    kind = "http"

    def __init__(self, url: str, *, timeout: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PolicyError(f"malformed OPA URL {url!r}: want http(s)://host:port")
        self.url = url
        self._client = OpaClient(
            host=parts.hostname,
            port=parts.port or 8181,
            ssl=parts.scheme == "https",
            timeout=timeout,
            retries=0,
        )

    def close(self) -> None:
        """Close the HTTP session."""
        self._client.close_connection()

    def server_digest(self) -> str | None:
        """The digest recorded on the server by the last successful load (None if none)."""
        try:
            body = self._client.get_data(MANIFEST_PATH)
        except OSError as exc:
            raise PolicyEngineUnavailableError(f"OPA at {self.url}: {exc}") from None
        except Exception:  # opa_client raises its own PolicyNotFoundError for undefined
            return None
        result = body.get("result")
        return result.get("digest") if isinstance(result, dict) else None

    def _activate(self, bundle: PolicyBundle, previous: PolicyBundle | None) -> None:
        compile_bundle(bundle).close()  # refuse locally first, with OPA's own message
        try:
            self._push(bundle, previous)
        except PolicyLoadError as refused:
            if previous is not None:
                # Best effort: restore what was active; the refusal is the error to report.
                with contextlib.suppress(PolicyError):
                    self._push(previous, bundle)
            raise refused from None

    def _push(self, bundle: PolicyBundle, previous: PolicyBundle | None) -> None:
        client = self._client
        try:
            for data_path, value in sorted(bundle.data.items()):
                client.update_or_create_data(value, data_path.replace(".", "/"))
            # Shared helpers (time, profile) first, so modules that call them compile on
            # arrival: the server type-checks each module as it is pushed.
            order = sorted(bundle.modules, key=lambda p: (not p.startswith(_SHARED), p))
            for path in order:
                client.update_policy_from_string(bundle.modules[path], path, rego_compat=False)
            if previous is not None:
                for path in sorted(set(previous.modules) - set(bundle.modules)):
                    client.delete_policy(path)
                for data_path in sorted(set(previous.data) - set(bundle.data)):
                    client.delete_data(data_path.replace(".", "/"))
            client.update_or_create_data({"digest": bundle.digest}, MANIFEST_PATH)
        except OSError as exc:
            raise PolicyEngineUnavailableError(f"OPA at {self.url}: {exc}") from None
        except Exception as exc:  # opa_client's RegoParseError and friends
            raise PolicyLoadError(bundle.digest, _server_message(exc)) from None

    def _evaluate(self, query: str, package: str, rule: str, input: dict[str, Any]) -> Outcome:
        bundle = self._bundle
        assert bundle is not None
        try:
            body = self._client.query_rule(input_data=input, package_path=package, rule_name=rule)
        except OSError as exc:
            response = getattr(exc, "response", None)
            if response is not None and response.status_code < 500:
                raise PolicyEvaluationError(query, _server_message(exc)) from None
            raise PolicyEngineUnavailableError(f"OPA at {self.url}: {exc}") from None
        if not isinstance(body, dict):
            raise PolicyEvaluationError(query, "malformed response from OPA")
        engine_id = body.get("decision_id")
        if "result" not in body:
            return Outcome(False, None, bundle.digest, engine_id, bundle.profile)
        return Outcome(True, body["result"], bundle.digest, engine_id, bundle.profile)

"""A local stand-in for ``opa run --server``, backed by the embedded OPA evaluator.

The official ``opa`` binary cannot be installed from the registries this project
builds from, so the HTTP engine is tested against this server. It speaks the part of
OPA's REST API (v1) that :class:`policy.opa_http.HttpEngine` uses, with OPA's status
codes and error bodies:

- ``GET /health`` → 200;
- ``GET /v1/policies`` → ``{"result": [{"id", "raw"}]}``;
- ``PUT /v1/policies/<id>`` (text body) → 200 ``{}``, or 400 with
  ``{"code": "invalid_parameter", "message", "errors": [...]}`` when the module set
  no longer compiles (nothing changes then);
- ``DELETE /v1/policies/<id>`` → 200 ``{}`` or 404;
- ``PUT /v1/data/<path>`` (JSON body) → 204; ``DELETE /v1/data/<path>`` → 204 or 404;
- ``GET /v1/data/<path>`` → ``{"result": …}`` or ``{}`` when undefined;
- ``POST /v1/data/<path>`` with ``{"input": …}`` → ``{"result": …, "decision_id"}``,
  or ``{"decision_id"}`` alone when undefined; 500 on evaluation errors.

To use the real server instead (same results, see docs/policies.md)::

    opa run --server --addr 127.0.0.1:8181
    VEILMATCH_POLICY_ENGINE=http VEILMATCH_OPA_URL=http://127.0.0.1:8181 veilmatch ...

Development only: no authentication, plain HTTP, binds to loopback by default.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from policy._opa import OpaEngine, OpaError, OpaUndefinedError

__all__ = ["LocalOpaServer"]

_MAX_BODY = 8 * 1024 * 1024


class _State:
    """Modules and data; every change recompiles, and only a compiling set is kept."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.modules: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.engine = self._compile(self.modules, self.data)

    @staticmethod
    def _compile(modules: dict[str, str], data: dict[str, Any]) -> OpaEngine:
        engine = OpaEngine()
        try:
            for path in sorted(modules):
                engine.add_policy(path, modules[path])
            engine.add_data(data)
            engine.eval_query("__probe := true")
        except OpaError:
            engine.close()
            raise
        return engine

    def replace(self, modules: dict[str, str], data: dict[str, Any]) -> None:
        """Swap in a new module/data set, or raise OpaError leaving the old one."""
        engine = self._compile(modules, data)
        self.modules, self.data, self.engine = modules, data, engine


def _segments(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (inputs must not reach logs)."""

    # -- helpers ---------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, code: str, message: str, errors: list[Any] | None = None) -> None:
        body: dict[str, Any] = {"code": code, "message": message}
        if errors is not None:
            body["errors"] = errors
        self._reply(status, body)

    def _route(self) -> tuple[str, str]:
        path = self.path.split("?", 1)[0]
        for prefix, kind in (("/v1/policies", "policies"), ("/v1/data", "data")):
            if path == prefix or path.startswith(prefix + "/"):
                return kind, path[len(prefix) :].lstrip("/")
        return ("health", "") if path == "/health" else ("", "")

    # -- verbs -------------------------------------------------------------
    def do_GET(self) -> None:
        kind, rest = self._route()
        state = self.server.state
        if kind == "health":
            self._reply(HTTPStatus.OK, {})
        elif kind == "policies" and not rest:
            with state.lock:
                listing = [{"id": k, "raw": v} for k, v in sorted(state.modules.items())]
            self._reply(HTTPStatus.OK, {"result": listing})
        elif kind == "data":
            self._evaluate(rest, None)
        else:
            self._error(HTTPStatus.NOT_FOUND, "resource_not_found", "not found")

    def do_POST(self) -> None:
        kind, rest = self._route()
        if kind != "data":
            self._error(HTTPStatus.NOT_FOUND, "resource_not_found", "not found")
            return
        try:
            body = json.loads(self._body() or b"{}")
        except (ValueError, json.JSONDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, "invalid_parameter", f"malformed body: {exc}")
            return
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "invalid_parameter", "body must be an object")
            return
        self._evaluate(rest, body.get("input"), decision_id=str(uuid.uuid4()))

    def do_PUT(self) -> None:
        kind, rest = self._route()
        state = self.server.state
        try:
            raw = self._body()
        except ValueError as exc:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "invalid_parameter", str(exc))
            return
        if kind == "policies" and rest:
            with state.lock:
                modules = {**state.modules, rest: raw.decode("utf-8", errors="replace")}
                try:
                    state.replace(modules, state.data)
                except OpaError as exc:
                    self._error(
                        HTTPStatus.BAD_REQUEST,
                        "invalid_parameter",
                        "error(s) occurred while compiling module(s)",
                        [{"code": exc.code, "message": exc.message}],
                    )
                    return
            self._reply(HTTPStatus.OK, {})
        elif kind == "data" and rest:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                self._error(HTTPStatus.BAD_REQUEST, "invalid_parameter", f"malformed JSON: {exc}")
                return
            with state.lock:
                data = copy.deepcopy(state.data)
                *parents, leaf = _segments(rest)
                node = data
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = value
                try:
                    state.replace(state.modules, data)
                except OpaError as exc:
                    self._error(HTTPStatus.BAD_REQUEST, "invalid_parameter", exc.message)
                    return
            self._reply(HTTPStatus.NO_CONTENT)
        else:
            self._error(HTTPStatus.NOT_FOUND, "resource_not_found", "not found")

    def do_DELETE(self) -> None:
        kind, rest = self._route()
        state = self.server.state
        with state.lock:
            if kind == "policies" and rest in state.modules:
                modules = {k: v for k, v in state.modules.items() if k != rest}
                try:
                    state.replace(modules, state.data)
                except OpaError as exc:
                    self._error(HTTPStatus.BAD_REQUEST, "invalid_parameter", exc.message)
                    return
                self._reply(HTTPStatus.OK, {})
                return
            if kind == "data" and rest:
                data = copy.deepcopy(state.data)
                *parents, leaf = _segments(rest)
                node = data
                for part in parents:
                    node = node.get(part) if isinstance(node, dict) else None  # type: ignore[assignment]
                if isinstance(node, dict) and leaf in node:
                    del node[leaf]
                    state.replace(state.modules, data)
                    self._reply(HTTPStatus.NO_CONTENT)
                    return
        self._error(HTTPStatus.NOT_FOUND, "resource_not_found", f"{rest} not found")

    def _evaluate(self, rest: str, input_doc: Any, decision_id: str | None = None) -> None:
        with self.server.state.lock:
            engine = self.server.state.engine
        dotted = ".".join(_segments(rest))
        body: dict[str, Any] = {} if decision_id is None else {"decision_id": decision_id}
        try:
            body["result"] = engine.eval_document(dotted, input_doc)
        except OpaUndefinedError:
            pass
        except OpaError as exc:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", exc.message)
            return
        self._reply(HTTPStatus.OK, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.state = _State()


class LocalOpaServer:
    """Run the stand-in server on a background thread (``port=0`` picks a free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http://host:port`` the server listens on."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalOpaServer:
        """Start serving in the background."""
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground (the ``veilmatch policy serve-local`` command)."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalOpaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

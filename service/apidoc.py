"""Render ``docs/api.md``: the prose in ``api_prose.md`` plus route tables generated from
both apps' OpenAPI schemas, so the reference cannot drift from the code.

Run ``python -m service.apidoc > docs/api.md``; ``tests/service/test_apidoc.py`` fails
when the committed file is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from service import api_gate, api_oversight, api_staff

__all__ = ["openapi_schemas", "render"]

_PROSE_FILE = Path(__file__).with_name("api_prose.md")


def openapi_schemas() -> dict[str, dict[str, Any]]:
    """The OpenAPI documents of both apps (routers only; no database needed)."""
    staff = FastAPI(title="veilmatch staff API")
    staff.include_router(api_staff.router)
    staff.include_router(api_oversight.router)
    staff.include_router(api_oversight.stats_router)
    gate = FastAPI(title="veilmatch gate API")
    gate.include_router(api_gate.router)
    return {"staff": staff.openapi(), "gate": gate.openapi()}


def _table(schema: dict[str, Any]) -> list[str]:
    rows = ["| method | path | summary | request body |", "|---|---|---|---|"]
    for path, item in sorted(schema.get("paths", {}).items()):
        for method, op in sorted(item.items()):
            summary = (op.get("description") or op.get("summary") or "").split("\n")[0]
            content = op.get("requestBody", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {})
            name = ref.get("$ref", "").rsplit("/", 1)[-1] or ref.get("title", "")
            others = [f"`{t}`" for t in sorted(content) if t != "application/json"]
            body = " or ".join([n for n in [name] if n] + others)
            rows.append(f"| {method.upper()} | `{path}` | {summary} | {body or '–'} |")
    return rows


def render() -> str:
    """The full Markdown document."""
    schemas = openapi_schemas()
    prose = _PROSE_FILE.read_text(encoding="utf-8").rstrip()
    out = [prose, "", "## Reference (generated from OpenAPI)", ""]
    for name, title in (("gate", "Gate API (mutual TLS)"), ("staff", "Staff API")):
        out += [f"### {title}", "", *_table(schemas[name]), ""]
    out += [
        "Ops routes on both listeners: `GET /healthz`, `GET /readyz`; staff only: "
        "`GET /metrics`. Full schemas: `GET /openapi.json` on each listener.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())

"""No production function is longer than 80 lines (tests, benchmarks, migrations aside).

Ruff's complexity rules bound branches, arguments and statements; this bounds length,
which they do not. A long function is a module's job hiding inside one name.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ["core", "protocol", "crypto", "audit", "policy", "gate", "service", "veilmatch"]
MAX_LINES = 80


def _long_functions() -> list[str]:
    found = []
    for package in PRODUCTION:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > MAX_LINES:
                        found.append(
                            f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length})"
                        )
    return found


def test_no_production_function_over_80_lines() -> None:
    assert _long_functions() == []

"""The layer contract of ``pyproject.toml`` (run by ``make lint``) holds, and can fail.

``lint-imports`` checks the real tree; then a copy of the tree in which ``crypto``
imports ``service`` (a lower layer reaching up) and a copy in which the gate imports
the audit log must each be reported as broken, so the contract is not vacuous.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["core", "protocol", "crypto", "audit", "policy", "gate", "service", "veilmatch"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _copy_tree(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_real_tree_keeps_every_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("crypto/__init__.py", "import service.app\n", "Layers"),
        ("core/__init__.py", "import policy.engine\n", "Layers"),
        ("gate/__init__.py", "import audit.log\n", "The gate uses only"),
    ],
    ids=["crypto-imports-service", "core-imports-policy", "gate-imports-audit"],
)
def test_an_upward_import_breaks_the_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = _copy_tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + line)
    result = _lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), result.stdout

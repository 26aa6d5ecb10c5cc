"""The layer contract of the package, checked with import-linter (contracts in pyproject.toml).

Domain code (config, sources, warehouse, pipeline, rate limiting) imports no Airflow; a layer
imports only the layers below it; production code never imports the fakes or the local stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--no-logo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_import_contracts_hold():
    result = lint(ROOT, ROOT / "include")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("config/models.py", "import airflow.sdk  # noqa", "moomarkets.config.models -> airflow"),
        ("sources/base.py", "from moomarkets.warehouse import db  # noqa", "moomarkets.sources.base -> moomarkets.warehouse"),
        ("pipeline/run.py", "from moomarkets.testing import jquants_fake  # noqa", "moomarkets.pipeline.run -> moomarkets.testing"),
        ("services/groups.py", "from airflow.models.dag import DagModel  # noqa", "moomarkets.services.groups -> airflow"),
    ],
)
def test_a_violation_is_caught(tmp_path, module, line, broken):
    """The contracts can fail: the same tree with one forbidden import added breaks them."""
    shutil.copytree(ROOT / "include" / "moomarkets", tmp_path / "src" / "moomarkets",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "moomarkets" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint(tmp_path, tmp_path / "src")
    assert result.returncode != 0
    assert broken in result.stdout

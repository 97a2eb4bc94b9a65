"""Notebooks run headless on the bundled fixtures; a failing cell fails the test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(notebook: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(notebook), str(REPO / "fixtures" / "data" / "demo")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "distinct edges from" in result.stdout

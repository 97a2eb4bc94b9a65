"""The built wheel, installed into a clean virtual environment, finds its SQL and runs."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, cwd=cwd
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_installed_wheel_finds_sql(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, REPO)
    wheels = list(dist.glob("flowfence-*.whl"))
    assert len(wheels) == 1
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    py = env / "bin" / "python"
    _run(py, "-m", "pip", "install", "-q", "-c", REPO / "constraints.txt", wheels[0])
    # Run from a directory without the checkout so only the installed package can answer.
    probe = (
        "import flowfence.core.sql as s, pathlib; d = s.sql_dir();"
        "assert 'site-packages' in str(d), d;"
        "assert 'state_edges' in s.names(), s.names();"
        "print(sorted(p.name for p in d.glob('*.sql')))"
    )
    out = _run(py, "-I", "-c", probe, cwd=tmp_path)
    shipped = sorted(p.name for p in (REPO / "sql").glob("*.sql"))
    assert out.strip() == str(shipped)
    assert _run(env / "bin" / "flowfence", "--version", cwd=tmp_path).startswith("flowfence ")

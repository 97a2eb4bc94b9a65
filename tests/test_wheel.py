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


def test_the_wheel_carries_the_schemas_and_its_package_finds_them(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, REPO)
    (wheel,) = dist.glob("flowfence-*.whl")
    target = tmp_path / "site"
    _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, wheel)
    # This interpreter's dependencies, but the package from the wheel, not the checkout.
    probe = (
        f"import sys; sys.path.insert(0, {str(target)!r});"
        "from flowfence.calico import schema, schema_tree;"
        f"assert schema.__file__.startswith({str(target)!r}), schema.__file__;"
        "d = schema.schemas_dir();"
        "assert (d / 'LICENSE').is_file() and (d / 'README.md').is_file();"
        "n = [schema.schema(c, a, k) is not None for c in schema.CRD_SETS"
        " for a, k in schema.kinds(c)];"
        "r = schema_tree.check_tree(__import__('pathlib').Path(sys.argv[1]), 'calico');"
        "print(sum(n), len(n), r.documents, len(r.errors))"
    )
    out = _run(sys.executable, "-I", "-c", probe, REPO / "fixtures" / "policies", cwd=tmp_path)
    loaded, kinds, documents, errors = map(int, out.split())
    assert loaded == kinds > 10
    assert (documents, errors) == (7, 0)

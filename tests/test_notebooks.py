"""The notebooks run headless on the bundled fixtures, as `python notebooks/NAME.py`; a failing
cell fails the run (and so this test), their charts are real images, and their numbers agree
with the library they call."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml
from crd import validate_staged_policy
from matplotlib import image

from flowfence.flows import edges, sources

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "fixtures" / "data" / "demo"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))


def run_notebook(notebook: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(notebook), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=120,
    )


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    """Each notebook run once on the demo data: name -> (stdout, output directory)."""
    results = {}
    for notebook in NOTEBOOKS:
        out = tmp_path_factory.mktemp(notebook.stem)
        result = run_notebook(notebook, DEMO, "--out", out)
        assert result.returncode == 0, f"{notebook.name}:\n{result.stderr}"
        results[notebook.stem] = (result.stdout, out)
    return results


def test_there_are_notebooks() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"explore_flows", "what_if"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_a_clean_marimo_app(notebook: Path) -> None:
    text = notebook.read_text(encoding="utf-8")
    assert "\napp = marimo.App(" in text
    assert text.rstrip().endswith('if __name__ == "__main__":\n    app.run()')
    result = subprocess.run(
        [sys.executable, "-m", "marimo", "check", "--strict", str(notebook)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_headless(notebook: Path, ran: dict[str, tuple[str, Path]]) -> None:
    stdout, _ = ran[notebook.stem]
    assert "distinct edges from" in stdout


def test_a_failing_cell_fails_the_run(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(
        textwrap.dedent(
            """
            import marimo

            app = marimo.App()


            @app.cell
            def _():
                value = 1
                return (value,)


            @app.cell
            def _(value):
                raise RuntimeError(f"cell failed with {value}")


            if __name__ == "__main__":
                app.run()
            """
        ),
        encoding="utf-8",
    )
    result = run_notebook(broken)
    assert result.returncode != 0
    assert "RuntimeError: cell failed with 1" in result.stderr


def test_explore_counts_agree_with_the_library(ran: dict[str, tuple[str, Path]]) -> None:
    stdout, _ = ran["explore_flows"]
    con = duckdb.connect()
    bound = sources.bind_flows(con, DEMO)
    frame = edges.aggregate(con)
    assert f"{len(bound.files)} files (hive=True)" in stdout
    assert f"{frame.height} distinct edges from {int(frame['rows'].sum())} rows" in stdout
    match = re.search(r"traffic matrix (\d+)x(\d+)", stdout)
    assert match and int(match[1]) > 10 and int(match[2]) > 10


@pytest.mark.parametrize("name", ["traffic_matrix.png", "rule_timeline.png"])
def test_explore_charts_are_real_images(name: str, ran: dict[str, tuple[str, Path]]) -> None:
    _, out = ran["explore_flows"]
    path = out / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(path)
    height, width = pixels.shape[:2]
    assert width >= 600 and height >= 400
    # Not a blank canvas: many distinct colours (a heatmap, markers, text).
    sample = pixels[::3, ::3, :3].reshape(-1, 3)
    colours = np.unique(np.round(sample * 255).astype(np.int64) @ np.array([65536, 256, 1]))
    assert len(colours) > 50


def test_what_if_shows_the_nightly_backup_denied(ran: dict[str, tuple[str, Path]]) -> None:
    # Learned from 12:00 on, the demo's postgres policy has never seen the 02:00 backup job.
    stdout, out = ran["what_if"]
    assert "postgres: 1 edges would be denied" in stdout
    row = next(line for line in stdout.splitlines() if "db-backup" in line)
    assert "wep:batch/db-backup-*" in row and "5432" in row and "ingress" in row
    policy = yaml.safe_load((out / "what-if-postgres.yaml").read_text(encoding="utf-8"))
    assert validate_staged_policy(policy, enterprise=True) == []
    peers = [r["source"].get("namespaceSelector", "") for r in policy["spec"]["ingress"]]
    assert peers and not [p for p in peers if "batch" in p]


def test_what_if_learning_the_whole_window_denies_nothing(tmp_path: Path) -> None:
    notebook = REPO / "notebooks" / "what_if.py"
    result = run_notebook(notebook, DEMO, "--learn-hours", "24", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"replayed \d+ edges \(\d+ flows\): 0 would be denied", result.stdout)

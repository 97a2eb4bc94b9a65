"""bench/ingest.py end to end on a few thousand lines: it generates, exports, ingests in a
fresh process, re-ingests (all skipped) and reads the store back with the job's loader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ingest_benchmark_runs_and_checks_its_row_counts(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench.ingest", "--rows", "3k", "--work", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rows"] == result["fixture_rows"] == result["read_back"]
    assert 2_900 <= result["rows"] <= 3_100 and result["malformed"] == 0
    assert result["parsers"] == {"duckdb": result["files"], "python": 0}
    assert result["rerun_skipped"] == result["files"] == 24
    assert result["peak_rss_mib"] > 0 and result["rows_per_second"] > 0
    assert not (REPO / "bench" / "INGEST.md").read_text().startswith(str(tmp_path))

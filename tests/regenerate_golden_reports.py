"""Rewrite tests/golden_reports/ (the change reports of the review scenario) from the code.

Usage, from the repository root:

    .venv/bin/python tests/regenerate_golden_reports.py

It plays tests/review_scenario.py (six runs with a fixed clock: first run, no change, one
namespace changed, a namespace dismissed, an accepted policy with drift, a stale rule) in a
temporary directory and writes each step's report.json and report.md to
tests/golden_reports/<step>/. Read the diff (`git diff tests/golden_reports`) before
committing it: the golden files are what tests/test_golden_reports.py holds the reports to.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from review_scenario import GOLDEN, play, reports

from flowfence.cli.app import main


def regenerate() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for step, out in play(Path(tmp), main):
            target = GOLDEN / step
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for name, data in reports(out).items():
                (target / name).write_bytes(data)
            print(f"{step}: wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    regenerate()

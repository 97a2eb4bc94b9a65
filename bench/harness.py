"""What every bench step shares: one measurement per fresh child process, and generated data
sets kept under bench/data with the parameters (and the generator's own figure) beside them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bench.model import Sample

ROOT = Path(__file__).resolve().parent.parent
STAMP = "bench-stamp.json"  # the generator's arguments: data is reused only when they match
GENERATED = "bench-generate.json"  # the generator's figure, kept for runs that reuse the data
_SIZE = re.compile(r"(\d+)([kKmM]?)")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}


class BenchError(RuntimeError):
    pass


def parse_rows(text: str) -> int:
    import argparse

    match = _SIZE.fullmatch(text.strip().replace("_", ""))
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a row count such as 20k, 1M, 10M")
    value = int(match.group(1)) * _SCALE[match.group(2).lower()]
    if value < 1:
        raise argparse.ArgumentTypeError("row counts must be positive")
    return value


def label(rows: int) -> str:
    for suffix, scale in (("M", 1_000_000), ("k", 1_000)):
        if rows >= scale and rows % scale == 0:
            return f"{rows // scale}{suffix}"
    return str(rows)


def measure(kind: str, args: dict[str, Any], work: Path) -> Sample:
    """Run one `bench.measure` child; its peak RSS comes from wait4, not from the child.

    On Linux a child's peak RSS starts at what this process held when it spawned the child, so
    the harness does no heavy work itself (data preparation runs in a child too)."""
    work.mkdir(parents=True, exist_ok=True)
    result_path, log_path = work / f"{kind}.json", work / f"{kind}.log"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.measure", kind, json.dumps(args), str(result_path)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace")[-2000:]
        raise BenchError(f"{kind} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    data = json.loads(result_path.read_text())
    counts = {k: int(v) for k, v in data.items() if isinstance(v, int)}
    return Sample(
        seconds=float(data["seconds"]),
        peak_rss=usage.ru_maxrss * 1024,  # Linux reports KiB
        import_seconds=float(data.get("import_seconds", 0.0)),
        cpu_seconds=float(data.get("cpu_seconds", 0.0)),
        stages=dict(data.get("stages", {})),
        counts=counts,
    )


def ensure_data(
    data: Path, gen_args: dict[str, Any], work: Path, reuse: bool, log: TextIO
) -> tuple[Sample | None, str | None]:
    """Generate `data` unless `reuse` and its stamp matches `gen_args`. Returns the generator's
    figure and, when the data was reused, the date it was generated (None: generated now). The
    figure is None when reused data has no figure beside it."""
    stamp, kept = data / STAMP, data / GENERATED
    if reuse and stamp.exists() and json.loads(stamp.read_text()) == gen_args:
        print(f"reusing {data}", file=log, flush=True)
        if not kept.exists():
            return None, "earlier"
        saved = json.loads(kept.read_text())
        return Sample(**saved["sample"]), str(saved["date"])
    print(f"generating {gen_args['rows']:,} rows into {data}", file=log, flush=True)
    # The harness's own files go first: the generator refuses a folder holding anything else.
    stamp.unlink(missing_ok=True)
    kept.unlink(missing_ok=True)
    sample = measure("generate", gen_args, work)
    stamp.write_text(json.dumps(gen_args))
    save_generated(data, sample)
    return sample, None


def save_generated(data: Path, sample: Sample) -> None:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    (data / GENERATED).write_text(json.dumps({"date": date, "sample": asdict(sample)}))


def parquet_rows(files: list[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

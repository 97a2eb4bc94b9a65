"""Benchmark of `flowfence ingest`: N million Calico Enterprise JSON lines -> the Parquet store.

    python -m bench.ingest [--rows 10M] [--work DIR] [--keep] [--reuse] [--report]

1. The synthetic fixture (`fixtures_gen`, topology `synthetic`, 200 namespaces, seed 1, one
   day) is generated as Parquet, then exported with DuckDB as Enterprise flow-log JSON lines
   (`flows-HH.log`, one file per hour, the shape Felix writes: labels `{labels: [...]}`,
   policies `{enforced_policies, pending_policies}`). Neither step is timed as ingest.
2. `flowfence ingest <files> --out STORE --output json` runs in a fresh process; its wall
   time gives rows per second, and `getrusage(RUSAGE_CHILDREN).ru_maxrss` after it exits gives
   its peak resident memory (the only child process this script waits for).
3. The same command again: every file is already in the manifest, so this is the cost of the
   idempotency check (a sha256 pass over the input).
4. The store is read back with `sources.bind_flows` to check the row count.

Prints the figures as JSON; `--report` also writes bench/INGEST.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from flowfence.fixtures.generate import generate
from flowfence.flows import sources

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 1, tzinfo=UTC)


def _rows(text: str) -> int:
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return int(text.rstrip("kKmM")) * scale


def export_json(parquet: Path, out: Path) -> list[Path]:
    """One Enterprise JSON-lines file per hour of the fixture tree."""
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    files = []
    try:
        con.execute("SET enable_progress_bar = false")
        for hour_dir in sorted(parquet.glob("date=*/hour=*")):
            target = out / f"flows-{hour_dir.parent.name[5:]}-{hour_dir.name[5:]}.log"
            rel = con.read_parquet(str(hour_dir / "*.parquet"), hive_partitioning=False)
            con.register("hour_rows", rel)
            con.execute(
                "COPY (SELECT * EXCLUDE (source_port) FROM hour_rows) TO $out (FORMAT json)",
                {"out": str(target)},
            )
            con.unregister("hour_rows")
            files.append(target)
    finally:
        con.close()
    return files


def timed_ingest(files: list[Path], store: Path) -> tuple[float, dict[str, Any]]:
    cmd = [sys.executable, "-m", "flowfence.cli.app", "ingest", *map(str, files)]
    cmd += ["--out", str(store), "--output", "json"]
    began = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - began, json.loads(done.stdout)


def parquet_rows(root: Path) -> int:
    con = duckdb.connect()
    try:
        rel = con.read_parquet(str(root / "**" / "*.parquet"), hive_partitioning=False)
        return int(rel.aggregate("count(*)").fetchall()[0][0])
    finally:
        con.close()


def stored_rows(store: Path) -> int:
    con = duckdb.connect()
    try:
        sources.bind_flows(con, store)
        flows = con.table("flows")
        # the view may be pre-aggregated, with `rows` raw rows behind each view row
        measure = "sum(rows)" if "rows" in flows.columns else "count(*)"
        return int(flows.aggregate(measure).fetchall()[0][0])
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10M", help="JSON lines to ingest (e.g. 1M, 10M)")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--report", action="store_true", help="write bench/INGEST.md")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the JSON files of an earlier --work --keep run"
    )
    args = parser.parse_args(argv)
    rows = _rows(args.rows)
    work = args.work or Path(tempfile.mkdtemp(prefix="flowfence-ingest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        began = time.perf_counter()
        files = sorted((work / "json").glob("flows-*.log")) if args.reuse else []
        if files:
            fixture_rows = parquet_rows(work / "parquet")
        else:
            fixture = generate(
                "synthetic", work / "parquet", seed=1, rows=rows, namespaces=200, start=START,
                hours=24, overwrite=True,
            )  # fmt: skip
            fixture_rows = fixture.rows
            files = export_json(work / "parquet", work / "json")
        shutil.rmtree(work / "store", ignore_errors=True)
        prepared = time.perf_counter() - began
        size = sum(f.stat().st_size for f in files)
        load_before = os.getloadavg()[0]
        seconds, summary = timed_ingest(files, work / "store")
        load_after = os.getloadavg()[0]
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        again, second = timed_ingest(files, work / "store")
        read_back = stored_rows(work / "store")
        store_bytes = sum(p.stat().st_size for p in (work / "store").rglob("*.parquet"))
        result = {
            "requested": args.rows,
            "rows": summary["rows"],
            "fixture_rows": fixture_rows,
            "read_back": read_back,
            "files": len(files),
            "input_bytes": size,
            "store_bytes": store_bytes,
            "seconds": round(seconds, 1),
            "rows_per_second": round(summary["rows"] / seconds),
            "mib_per_second": round(size / seconds / 2**20, 1),
            "peak_rss_mib": round(peak_kib / 1024),
            "rerun_seconds": round(again, 1),
            "rerun_skipped": second["files"]["skipped"],
            "malformed": summary["malformed"],
            "parsers": {
                name: sum(1 for f in summary["sources"] if f["parser"] == name)
                for name in ("duckdb", "python")
            },
            "prepare_seconds": round(prepared, 1),
            "cpus": os.cpu_count(),
            "load_average": [round(load_before, 1), round(load_after, 1)],
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        }
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if result["read_back"] != result["rows"] or result["rows"] != result["fixture_rows"]:
        print("row counts differ", file=sys.stderr)
        return 1
    if args.report:
        (ROOT / "bench" / "INGEST.md").write_text(report(result), encoding="utf-8")
    return 0


def report(r: dict[str, Any]) -> str:
    fast, slow = r["parsers"]["duckdb"], r["parsers"]["python"]
    return f"""# Ingest benchmark

`python -m bench.ingest --rows {r["requested"]} --report` on {r["date"]}: {r["cpus"]} CPUs, Python
{r["python"]}, DuckDB {r["duckdb"]}. The machine was shared: 1-minute load average
{r["load_average"][0]} before and {r["load_average"][1]} after the timed run. The input is the
synthetic fixture (200 namespaces, seed 1, one day) exported as Calico Enterprise flow-log JSON
lines, {r["files"]} files (one per hour). `flowfence ingest` runs in a fresh process; peak
memory is that process's maximum resident set.

| figure | value |
|---|---|
| JSON lines ingested | {r["rows"]:,} ({r["malformed"]} malformed) |
| input | {r["input_bytes"] / 2**30:.2f} GiB in {r["files"]} files |
| wall time | {r["seconds"]} s |
| **rows per second** | **{r["rows_per_second"]:,}** ({r["mib_per_second"]} MiB/s of JSON) |
| **peak RSS** | **{r["peak_rss_mib"]} MiB** |
| store written (zstd Parquet) | {r["store_bytes"] / 2**20:.0f} MiB |
| files read by the DuckDB fast path / line by line | {fast} / {slow} |
| second run (all {r["rerun_skipped"]} files skipped by checksum) | {r["rerun_seconds"]} s |
| rows read back with `sources.bind_flows` | {r["read_back"]:,} |

Where the time goes: Felix-shaped files are read by DuckDB (`read_json`, every field read as
JSON and checked in SQL, then `COPY ... PARTITION_BY (date, hour)`), two threads; the sha256
pass over the input is a few percent. Memory is bounded by DuckDB's 512 MB limit (two threads)
plus the Python process, whatever the file size. Files the fast path refuses (malformed lines,
other shapes, Goldmane NDJSON) are parsed line by line in Python at roughly a third of this
rate, with a similar memory bound (100,000-row chunks). Several `flowfence ingest` processes
over disjoint files can write to one store (commits are serialised by a lock).
"""


if __name__ == "__main__":
    sys.exit(main())

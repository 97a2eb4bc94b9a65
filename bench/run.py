"""The flowfence benchmarks, one command: `python -m bench.run` (`make bench`).

Steps, each skippable and sized by its options:

1. Sizes (`--rows`, default 1M 10M 100M): generate the data with the fixture generator (timed,
   kept under bench/data), then, repeated and interleaved so drift hits every figure alike,
   the bare DuckDB aggregation, `flowfence run` (the CLI, end to end), the bare DuckDB
   distinct-edge query and `flowfence replay`, each in a fresh process (`bench.measure`).
2. Incremental (`--incremental-days`, default 30): one new hour on a state built over those
   days, against the full recomputation and the bare aggregation of the same files.
3. Ingest (`--ingest-rows`, default 10M): `flowfence ingest` of that data set exported as
   Calico Enterprise JSON lines, and the rerun that skips every file.

DuckDB runs with `--memory-limit`, `--threads` and a spill directory under `--temp-dir` (its
peak size is recorded). RESULTS.md's generated block is rewritten after every step, so an
interrupted run keeps what it measured. Targets are reported, never enforced: the exit status
is 0 unless a measurement itself fails.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import results, steps
from bench.harness import (
    ROOT,
    BenchError,
    ensure_data,
    label,
    measure,
    parquet_rows,
    parse_rows,
)
from bench.model import BenchRun, Figure, Machine, Sample, SizeResult

BENCH = ROOT / "bench"
LOOP = ("bare_edges", "run", "bare_distinct", "replay")
WHAT_IF = ("part_edges", "part_activity", "whatif_per_day", "whatif_group_first")
LARGE = 50_000_000  # sizes from here on are repeated --large-repeat times

__all__ = ["label", "main", "parse_rows"]


def _replay_policies(existing: Path | None, written: Path, into: Path) -> Path:
    """One folder: the existing policies and the staged ones `run` wrote. kustomization.yaml is
    left out because the policy loader rejects documents without metadata.name."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    sources = sorted(existing.glob("*.yaml")) if existing else []
    sources += sorted(p for p in written.glob("*.yaml") if p.name != "kustomization.yaml")
    for src in sources:
        shutil.copyfile(src, into / f"{src.parent.name}-{src.name}")
    return into


def bench_size(rows: int, opts: argparse.Namespace, log: Any) -> SizeResult:
    name = label(rows)
    data = opts.data_dir / f"{opts.topology}-{name}-seed{opts.seed}-ns{opts.namespaces}"
    work = opts.work_dir / name
    loop = LOOP + (WHAT_IF if opts.what_if else ())
    repeat = opts.large_repeat if rows >= LARGE else opts.repeat
    figures: dict[str, list[Sample]] = {k: [] for k in loop}
    gen_args = {
        "topology": opts.topology,
        "data": str(data),
        "seed": opts.seed,
        "rows": rows,
        "namespaces": opts.namespaces,
    }
    reuse = opts.reuse_data or data in opts.generated_now
    generated, when = ensure_data(data, gen_args, work / "generate", reuse, log)
    if when is None:
        opts.generated_now.add(data)
    files = sorted(data.glob("date=*/hour=*/*.parquet"))
    common = {
        "data": str(data),
        "threads": opts.threads,
        "memory_limit": opts.memory_limit,
        "temp_dir": str(opts.temp_dir / name),
    }
    existing = str(opts.existing_policies) if opts.existing_policies else None
    run_args = {**common, "out": str(work / "out"), "existing_policies": existing}
    replay_args = {**common, "policies": str(work / "replay-policies")}
    for i in range(repeat):
        for kind in loop:
            args = replay_args if kind == "replay" else run_args if kind == "run" else common
            sample = measure(kind, args, work / kind)
            figures[kind].append(sample)
            print(
                f"[{name}] {i + 1}/{repeat} {kind}: {sample.seconds:.2f} s, "
                f"CPU {sample.cpu_seconds:.2f} s, {results.mb(sample.peak_rss)}, "
                f"spilled {results.mb(sample.counts.get('spill_bytes', 0))}",
                file=log,
                flush=True,
            )
            if kind == "run" and i == 0:
                _replay_policies(
                    opts.existing_policies, work / "out" / "policies", work / "replay-policies"
                )
    done = {k: Figure(k, tuple(v)) for k, v in figures.items()}
    if opts.tight_memory_limit and rows == max(opts.rows):
        # the same run under a far smaller memory_limit: does it finish, spill, stay bounded?
        tight = {**run_args, "memory_limit": opts.tight_memory_limit}
        sample = measure("run", tight, work / "run_tight")
        done["run_tight"] = Figure("run_tight", (sample,))
        print(
            f"[{name}] run, memory_limit {opts.tight_memory_limit}: {sample.seconds:.2f} s, "
            f"{results.mb(sample.peak_rss)}, spilled {results.mb(sample.counts['spill_bytes'])}",
            file=log,
            flush=True,
        )
    if generated is not None:
        done["generate"] = Figure("generate", (generated,))
    return SizeResult(
        rows=rows,
        label=name,
        data_rows=parquet_rows(files),
        data_files=len(files),
        data_bytes=sum(f.stat().st_size for f in files),
        figures=done,
        generated_at=when,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument(
        "--rows",
        nargs="*",
        type=parse_rows,
        default=[1_000_000, 10_000_000, 100_000_000],
        help="sizes to run end to end (default 1M 10M 100M); none: skip the step",
    )
    p.add_argument("--repeat", type=int, default=3, help="processes per figure (median)")
    p.add_argument(
        "--large-repeat",
        type=int,
        default=1,
        help=f"processes per figure at {label(LARGE)} rows and more (default 1)",
    )
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit (default 1GB)")
    p.add_argument(
        "--temp-dir",
        type=Path,
        help="DuckDB spill directory, on local disk (default WORK_DIR/spill); one fresh "
        "subdirectory per measurement, its peak size recorded",
    )
    p.add_argument(
        "--tight-memory-limit",
        default="256MB",
        help="also run once with this memory_limit, at the largest size and for the full "
        "recomputation of the incremental step: does DuckDB spill to --temp-dir and stay "
        "within it? ('' to skip)",
    )
    p.add_argument("--topology", default="synthetic", choices=("synthetic", "demo", "large"))
    p.add_argument("--namespaces", type=int, default=50)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--existing-policies",
        type=Path,
        default=ROOT / "fixtures" / "policies",
        help="policy folder for run (and replay); 'none' to leave out",
    )
    p.add_argument("--incremental-days", type=int, default=30, help="days of state (default 30)")
    p.add_argument(
        "--incremental-rows-per-hour",
        type=parse_rows,
        default=20_000,
        help="rows per hour of the incremental data (default 20k, the generator's default)",
    )
    p.add_argument("--no-incremental", dest="incremental", action="store_false")
    p.add_argument("--ingest-rows", type=parse_rows, default=10_000_000, help="default 10M")
    p.add_argument("--no-ingest", dest="ingest", action="store_false")
    p.add_argument("--data-dir", type=Path, default=BENCH / "data")
    p.add_argument("--work-dir", type=Path, default=BENCH / "work")
    p.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    p.add_argument(
        "--reuse-data",
        action="store_true",
        help="keep data generated earlier with the same parameters (its generator figure is "
        "the one recorded when it was generated)",
    )
    p.add_argument(
        "--what-if",
        action="store_true",
        help="also time the parts of the read stage and the what-if variants (bench/sql/)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    opts = parser().parse_args(args)
    if opts.repeat < 1 or opts.large_repeat < 1:
        raise SystemExit("--repeat and --large-repeat must be at least 1")
    if str(opts.existing_policies).lower() == "none":
        opts.existing_policies = None
    opts.temp_dir = opts.temp_dir or opts.work_dir / "spill"
    opts.generated_now = set()
    skipped = []
    if not opts.rows:
        skipped.append("the end-to-end sizes (`--rows` with no size)")
    if not opts.incremental:
        skipped.append("the incremental step (`--no-incremental`)")
    if not opts.ingest:
        skipped.append("the ingest step (`--no-ingest`)")
    existing = opts.existing_policies
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    run = BenchRun(
        machine=Machine.detect(ROOT),
        command=shlex.join(["python", "-m", "bench.run", *args]),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        threads=opts.threads,
        memory_limit=opts.memory_limit,
        topology=opts.topology,
        namespaces=opts.namespaces,
        seed=opts.seed,
        repeat=opts.repeat,
        existing_policies=_shown(existing) if existing else None,
        sizes=(),
        elapsed=0.0,
        load=(load_before, load_before),
        temp_dir=_shown(opts.temp_dir),
        skipped=tuple(skipped),
        large_repeat=opts.large_repeat,
        tight_memory_limit=opts.tight_memory_limit if opts.rows else "",
    )
    pending = [f"the {label(r)} size" for r in opts.rows]
    pending += ["the incremental step"] * opts.incremental + ["the ingest step"] * opts.ingest

    def write(run: BenchRun, final: bool = False) -> BenchRun:
        run = replace(
            run, elapsed=time.perf_counter() - began, load=(load_before, os.getloadavg()[0])
        )
        shown = run if final else replace(run, skipped=(*run.skipped, *_unfinished(pending)))
        block = results.render(shown)
        old = opts.results.read_text(encoding="utf-8") if opts.results.exists() else None
        opts.results.write_text(results.splice(old, block), encoding="utf-8")
        return run

    try:
        for rows in opts.rows:
            run = replace(run, sizes=(*run.sizes, bench_size(rows, opts, sys.stderr)))
            pending.remove(f"the {label(rows)} size")
            run = write(run)
        if opts.incremental:
            run = replace(run, incremental=steps.bench_incremental(opts, sys.stderr))
            pending.remove("the incremental step")
            run = write(run)
        if opts.ingest:
            run = replace(run, ingest=steps.bench_ingest(opts, sys.stderr))
            pending.remove("the ingest step")
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        write(run)
        return 1
    run = write(run, final=True)
    print(results.render(run))
    return 0


def _unfinished(pending: list[str]) -> list[str]:
    return [f"{p} (not finished when this block was written)" for p in pending]


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())

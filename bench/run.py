"""The flowfence benchmarks: `python -m bench.run [--rows 1M 10M] [...]` (`make bench`).

For each size: generate the data (timed, the fixture-generator figure), then, repeated and
interleaved so drift hits every figure alike, the bare DuckDB aggregation, `flowfence run`,
the bare DuckDB distinct-edge query and `flowfence replay`, each in a fresh process
(`bench.measure`). Writes the generated block of RESULTS.md and prints it. Targets are
reported, never enforced: the exit status is 0 unless a measurement itself fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import results
from bench.model import BenchRun, Figure, Machine, Sample, SizeResult

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
_SIZE = re.compile(r"(\d+)([kKmM]?)")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}
LOOP = ("bare_edges", "run", "bare_distinct", "replay")
WHAT_IF = ("part_edges", "part_activity", "whatif_per_day", "whatif_group_first")


class BenchError(RuntimeError):
    pass


def parse_rows(text: str) -> int:
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
    """Run one `bench.measure` child; its peak RSS comes from wait4, not from the child."""
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
    figures: dict[str, list[Sample]] = {k: [] for k in loop}
    gen_args = {
        "topology": opts.topology,
        "data": str(data),
        "seed": opts.seed,
        "rows": rows,
        "namespaces": opts.namespaces,
    }
    stamp = data / "bench-stamp.json"
    if opts.reuse_data and stamp.exists() and json.loads(stamp.read_text()) == gen_args:
        print(f"[{name}] reusing {data}", file=log)
        generated = None
    else:
        print(f"[{name}] generating {rows:,} rows into {data}", file=log, flush=True)
        stamp.unlink(missing_ok=True)
        generated = measure("generate", gen_args, work / "generate")
        stamp.write_text(json.dumps(gen_args))
    files = sorted(data.glob("date=*/hour=*/*.parquet"))
    common = {"data": str(data), "threads": opts.threads, "memory_limit": opts.memory_limit}
    existing = str(opts.existing_policies) if opts.existing_policies else None
    run_args = {
        **common,
        "out": str(work / "out"),
        "temp_dir": str(work / "spill"),
        "existing_policies": existing,
    }
    replay_args = {**common, "policies": str(work / "replay-policies")}
    for i in range(opts.repeat):
        for kind in loop:
            args = replay_args if kind == "replay" else run_args if kind == "run" else common
            sample = measure(kind, args, work / kind)
            figures[kind].append(sample)
            print(
                f"[{name}] {i + 1}/{opts.repeat} {kind}: {sample.seconds:.2f} s, "
                f"CPU {sample.cpu_seconds:.2f} s, {results.mb(sample.peak_rss)}",
                file=log,
                flush=True,
            )
            if kind == "run" and i == 0:
                _replay_policies(
                    opts.existing_policies, work / "out" / "policies", work / "replay-policies"
                )
    done = {k: Figure(k, tuple(v)) for k, v in figures.items()}
    if generated is not None:
        done["generate"] = Figure("generate", (generated,))
    return SizeResult(
        rows=rows,
        label=name,
        data_rows=sum(_parquet_rows(files)),
        data_files=len(files),
        data_bytes=sum(f.stat().st_size for f in files),
        figures=done,
    )


def _parquet_rows(files: Sequence[Path]) -> list[int]:
    import pyarrow.parquet as pq

    return [pq.ParquetFile(f).metadata.num_rows for f in files]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument(
        "--rows",
        nargs="+",
        type=parse_rows,
        default=[1_000_000, 10_000_000],
        help="sizes to run, e.g. 1M 10M (default) or 20k",
    )
    p.add_argument("--repeat", type=int, default=3, help="processes per figure (median)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit (default 1GB)")
    p.add_argument("--topology", default="synthetic", choices=("synthetic", "demo"))
    p.add_argument("--namespaces", type=int, default=50)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--existing-policies",
        type=Path,
        default=ROOT / "fixtures" / "policies",
        help="policy folder for run (and replay); 'none' to leave out",
    )
    p.add_argument("--data-dir", type=Path, default=BENCH / "data")
    p.add_argument("--work-dir", type=Path, default=BENCH / "work")
    p.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    p.add_argument(
        "--reuse-data",
        action="store_true",
        help="keep data generated earlier with the same parameters (no generator figure then)",
    )
    p.add_argument(
        "--no-what-if",
        dest="what_if",
        action="store_false",
        help="skip the what-if variants of the aggregation stage",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    opts = parser().parse_args(args)
    if opts.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    if str(opts.existing_policies).lower() == "none":
        opts.existing_policies = None
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    try:
        sizes = tuple(bench_size(rows, opts, sys.stderr) for rows in opts.rows)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    existing = opts.existing_policies
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
        sizes=sizes,
        elapsed=time.perf_counter() - began,
        load=(load_before, os.getloadavg()[0]),
    )
    block = results.render(run)
    old = opts.results.read_text(encoding="utf-8") if opts.results.exists() else None
    opts.results.write_text(results.splice(old, block), encoding="utf-8")
    print(block)
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())

"""One measurement in a fresh interpreter: `python -m bench.measure KIND ARGS_JSON RESULT_PATH`.

`bench.run` starts one of these per figure so that each peak RSS belongs to exactly one
measurement (the parent reads it with `os.wait4`) and no run warms another's caches or
allocator. The child writes a JSON object to RESULT_PATH: `seconds` and `cpu_seconds` (wall
and CPU time of the measured work, imports excluded), `import_seconds`, `stages` (seconds per
pipeline stage, where the kind has stages) and kind-specific counts used to check that the
engines saw the same data.

Stages are timed by wrapping the module attributes the pipeline and the replay command call
(sources.bind_flows, edges.aggregate, ...) in this process only; jobs/ is not modified.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).resolve().parent / "sql"
START = datetime(2026, 11, 1, tzinfo=UTC)  # first generated hour; the run's window ends 24h on
HOURS = 24  # equal to flowfence's default initialLookback, so the run reads every row


class Stopwatch:
    """Accumulates wall time per stage for functions wrapped with `wrap`. A call made while
    another call of the same stage is running is not counted twice."""

    def __init__(self, keep: Mapping[str, Callable[[Any], Any]] | None = None) -> None:
        self.spent: dict[str, float] = {}
        # What the measurement needs of a stage's latest return value (`keep[stage]` of it),
        # and nothing else: holding every stage's frames would add them to the peak RSS.
        self.keep = dict(keep or {})
        self.last: dict[str, Any] = {}
        self.missing: list[str] = []  # wrap targets this version of flowfence lacks
        self._active: set[str] = set()

    def wrap(self, owner: object, attr: str, stage: str) -> None:
        inner: Callable[..., Any] | None = getattr(owner, attr, None)
        if inner is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
            return

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if stage in self._active:
                return inner(*args, **kwargs)
            self._active.add(stage)
            began = time.perf_counter()
            try:
                value = inner(*args, **kwargs)
                if stage in self.keep:
                    self.last[stage] = self.keep[stage](value)
                return value
            finally:
                self.spent[stage] = self.spent.get(stage, 0.0) + time.perf_counter() - began
                self._active.discard(stage)

        setattr(owner, attr, timed)

    def wrap_all(self, targets: tuple[tuple[str, str, str], ...]) -> None:
        for module, attr, stage in targets:
            self.wrap(importlib.import_module(module), attr, stage)


class Clock:
    """Wall seconds and CPU seconds (every thread of this process) since it was made. CPU time
    barely moves when other processes compete for the cores; wall time does."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), _cpu()

    def read(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall, "cpu_seconds": _cpu() - self.cpu}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SpillWatch:
    """Polls DuckDB's temp_directory in a thread and keeps the largest total size of the files
    in it: whether (and how much) a measurement spilled. A fresh, empty directory per run."""

    def __init__(self, directory: str | None, every: float = 0.1) -> None:
        self.directory = Path(directory) if directory else None
        self.peak = 0
        self.files = 0
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> SpillWatch:
        if self.directory is not None:
            if self.directory.exists():
                shutil.rmtree(self.directory)
            self.directory.mkdir(parents=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.directory is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    def _poll(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def _sample(self) -> None:
        assert self.directory is not None
        total = count = 0
        for root, _, names in os.walk(self.directory):
            for name in names:
                try:
                    total += (Path(root) / name).stat().st_size
                    count += 1
                except OSError:  # removed between listing and stat
                    pass
        self.peak, self.files = max(self.peak, total), max(self.files, count)

    def counts(self) -> dict[str, int]:
        return {"spill_bytes": self.peak, "spill_files": self.files}


def duck_config(args: dict[str, Any]) -> dict[str, Any]:
    """The DuckDB settings every measured query runs with (those of `flowfence run`)."""
    config = {"threads": args["threads"], "memory_limit": args["memory_limit"]}
    if args.get("temp_dir"):
        config["temp_directory"] = args["temp_dir"]
    return config


def read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def files_glob(data: str) -> str:
    return str(Path(data).resolve() / "**" / "*.parquet")


def generate(args: dict[str, Any]) -> dict[str, Any]:
    from flowfence.fixtures.generate import generate as gen

    start = datetime.fromisoformat(args["start"]) if "start" in args else START
    clock = Clock()
    result = gen(
        args["topology"],
        Path(args["data"]),
        seed=args["seed"],
        rows=args["rows"],
        namespaces=args["namespaces"],
        start=start,
        hours=args.get("hours", HOURS),
        overwrite=True,
    )
    spent = clock.read()
    size = sum((result.out / f).stat().st_size for f in result.files)
    return {**spent, "rows": result.rows, "files": len(result.files), "bytes": size}


def _bare(name: str, args: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    with SpillWatch(args.get("temp_dir")) as spill:
        con = duckdb.connect(config=duck_config(args))
        try:
            query = read_sql(name)
            clock = Clock()
            frame = con.sql(query, params={"files": files_glob(args["data"])}).pl()
            spent = clock.read()
        finally:
            con.close()
    out: dict[str, Any] = {**spent, **spill.counts(), "edges": frame.height}
    if "rows" in frame.columns:
        out["rows"] = int(frame.get_column("rows").sum())
    return out


def bare_edges(args: dict[str, Any]) -> dict[str, Any]:
    return _bare("bare_edges", args)


def bare_distinct(args: dict[str, Any]) -> dict[str, Any]:
    return _bare("bare_distinct", args)


# (module, attribute, stage). `read` is everything that touches the flow logs (bind and the
# DuckDB scans, all batches); `bind` runs inside it, and `screen` .. `report` inside `derive`
# (everything after aggregation). Targets a version lacks are skipped and listed: the pipeline
# is still moving, so several spellings of a stage are listed.
RUN_TARGETS = (
    ("flowfence.flows.sources", "list_files", "plan"),
    ("flowfence.state.incremental", "plan", "plan"),
    ("flowfence.run.reads", "read", "read"),
    ("flowfence.state.incremental", "bind_files", "bind"),
    ("flowfence.state.incremental", "read", "read"),
    ("flowfence.run.pipeline", "derive", "derive"),
    ("flowfence.run.pipeline", "_screen", "screen"),
    ("flowfence.calico.names", "screen", "screen"),
    ("flowfence.run.pipeline", "load_policies", "policies"),
    ("flowfence.learn.select", "load_policies", "policies"),
    ("flowfence.learn.exclude", "exclude", "exclude"),
    ("flowfence.learn.rules", "build", "rules"),
    ("flowfence.run.pipeline", "render", "render"),
    ("flowfence.render.manifests", "policy_documents", "render"),
    ("flowfence.render.yaml_files", "render", "render"),
    ("flowfence.run.pipeline", "_report", "report"),
    ("flowfence.run.report_facts", "report", "report"),
    ("flowfence.review.changes", "read_policies", "review"),
    ("flowfence.review.apply_decisions", "apply", "review"),
    ("flowfence.review.outcome", "review", "review"),
    ("flowfence.review.annotate", "annotate", "review"),
    ("flowfence.calico.schema_tree", "check_rendered", "validate"),
    ("flowfence.state.tables", "load", "state"),
    ("flowfence.state.tables", "collect_garbage", "state"),
    ("flowfence.state.tables", "commit", "state"),
    ("flowfence.core.atomic", "sync_tree", "write"),
    ("flowfence.report.run_report", "to_json", "write"),
    ("flowfence.report.markdown", "to_markdown", "write"),
)


def run(args: dict[str, Any]) -> dict[str, Any]:
    """`flowfence run` through the CLI (`cli.main`, in-process) into a fresh output directory
    (an existing state would make it an incremental run), with the bench's DuckDB settings
    passed as `--memory-limit`, `--threads` and `--temp-dir`."""
    from flowfence.cli import app as cli

    watch = Stopwatch(keep={"pipeline": _kept})
    watch.wrap_all((("flowfence.run.pipeline", "run", "pipeline"), *RUN_TARGETS))
    out = Path(args["out"])
    if out.exists():
        shutil.rmtree(out)
    now = (START + timedelta(hours=HOURS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    argv = ["run", "--flows", args["data"], "--out", str(out), "--now", now, "--output", "json"]
    argv += ["--memory-limit", args["memory_limit"], "--threads", str(args["threads"])]
    argv += ["--temp-dir", args["temp_dir"]]
    if args.get("existing_policies"):
        argv += ["--existing-policies", args["existing_policies"]]
    with SpillWatch(args["temp_dir"]) as spill:
        clock = Clock()
        code = cli.main(argv)
        spent = clock.read()
    if code != 0:
        raise SystemExit(f"flowfence run exited {code}")
    return {**spent, **spill.counts(), **_run_counts(watch)}


def _kept(result: Any) -> dict[str, Any]:
    """The counts of a run's result (`pipeline.run`), not the result and its frames."""
    if result.computation is None:  # stopped early: nothing read, nothing written
        return {"edges": 0, "rows": 0, "rows_read": 0, "files_read": 0, "namespaces": 0,
                "written": 0}  # fmt: skip
    report = result.computation.report
    reads = result.computation.reads
    return {
        "edges": report.input["edges"],
        "rows": report.input["rows"],
        "rows_read": sum(b.rows for b in reads.batches) if reads else 0,
        "files_read": sum(b.files for b in reads.batches) if reads else 0,
        "namespaces": len(report.namespaces),
        "written": len(result.written),
    }


def _run_counts(watch: Stopwatch) -> dict[str, Any]:
    return {"stages": dict(watch.spent), "missing": watch.missing, **watch.last["pipeline"]}


REPLAY_TARGETS = (
    ("flowfence.cli.replay", "load_policies", "policies"),
    ("flowfence.flows.sources", "bind_flows", "bind"),
    ("flowfence.flows.edges", "aggregate", "aggregate"),
    ("flowfence.replay.audit", "compute", "evaluate"),
    ("flowfence.replay.render", "to_json", "render"),
)


def replay(args: dict[str, Any]) -> dict[str, Any]:
    """`flowfence replay --output json` in-process, through the CLI."""
    from flowfence.cli import app as cli

    watch = Stopwatch(keep={"aggregate": lambda frame: frame.height})
    watch.wrap_all(REPLAY_TARGETS)
    argv = ["replay", "--policies", args["policies"], "--flows", args["data"], "--output", "json"]
    # The same DuckDB limits as `flowfence run` (replay has had the options since issue 11).
    argv += ["--memory-limit", args["memory_limit"], "--threads", str(args["threads"])]
    argv += ["--temp-dir", args["temp_dir"]]
    clock = Clock()
    code = cli.main(argv)
    spent = clock.read()
    if code != 0:
        raise SystemExit(f"flowfence replay exited {code}")
    out = {**spent, "stages": watch.spent, "missing": watch.missing}
    if "aggregate" in watch.last:
        out["edges"] = watch.last["aggregate"]
    return out


def _window() -> dict[str, datetime | None]:
    since, until = START.replace(tzinfo=None), (START + timedelta(hours=HOURS)).replace(tzinfo=None)
    return {"since": since, "until": until, "end_before": None}


def _bound_query(args: dict[str, Any], run_query: Callable[[Any], Any]) -> dict[str, Any]:
    """bind_flows over the whole window, then one query: a part of (or an alternative to)
    the read stage of `flowfence run`."""
    import duckdb

    from flowfence.flows import sources

    con = duckdb.connect(config=duck_config(args))
    try:
        clock = Clock()
        sources.bind_flows(con, args["data"], since=START, until=START + timedelta(hours=HOURS))
        frame = run_query(con)
        spent = clock.read()
    finally:
        con.close()
    out: dict[str, Any] = {**spent}
    if "source_type" in frame.columns:
        out["edges"] = frame.height
    if "rows" in frame.columns:
        out["rows"] = int(frame["rows"].sum())
    return out


def part_edges(args: dict[str, Any]) -> dict[str, Any]:
    """bind + the edge query `flowfence run` runs today (sql/state_edges.sql)."""
    from flowfence.core import sql

    return _bound_query(args, lambda con: sql.relation(con, "state_edges", **_window()).pl())


def part_activity(args: dict[str, Any]) -> dict[str, Any]:
    """bind + the second scan `flowfence run` makes today (sql/state_activity.sql)."""
    from flowfence.core import sql

    return _bound_query(args, lambda con: sql.relation(con, "state_activity", **_window()).pl())


def whatif_per_day(args: dict[str, Any]) -> dict[str, Any]:
    """bind + the per-day rewrite of sql/state_edges.sql."""
    query = read_sql("whatif_per_day")
    return _bound_query(args, lambda con: con.sql(query, params=_window()).pl())


def whatif_group_first(args: dict[str, Any]) -> dict[str, Any]:
    """Group raw rows first, normalise the groups: replaces bind + the edge query."""
    import duckdb

    lo = int(START.timestamp())
    params = {"files": files_glob(args["data"]), "lo": lo, "hi": lo + HOURS * 3600}
    con = duckdb.connect(config=duck_config(args))
    try:
        clock = Clock()
        frame = con.sql(read_sql("whatif_group_first"), params=params).pl()
        spent = clock.read()
    finally:
        con.close()
    return {**spent, "edges": frame.height, "rows": int(frame["rows"].sum())}


KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "generate": generate,
    "bare_edges": bare_edges,
    "bare_distinct": bare_distinct,
    "run": run,
    "replay": replay,
    "part_edges": part_edges,
    "part_activity": part_activity,
    "whatif_per_day": whatif_per_day,
    "whatif_group_first": whatif_group_first,
}


def _import_engines() -> float:
    """Import the heavy modules up front so their cost is reported apart from the measured
    work (a CLI user pays it once per invocation)."""
    began = time.perf_counter()
    # flowfence.cli first, as the `flowfence` command imports it: it sets Polars' allocator
    # options (cli/__init__.py), which apply only if set before Polars is loaded.
    for name in ("flowfence.cli.app", "duckdb", "polars", "flowfence.run.pipeline"):
        importlib.import_module(name)
    return time.perf_counter() - began


def main(argv: list[str]) -> int:
    kind, args_json, result_path = argv
    args = json.loads(args_json)
    imported = _import_engines()
    from bench import measure_steps

    result = {**KINDS, **measure_steps.KINDS}[kind](args)
    result["import_seconds"] = imported
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

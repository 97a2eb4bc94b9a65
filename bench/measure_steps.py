"""The measured kinds of the incremental and ingest steps (`bench.steps`), run by
`bench.measure` in a fresh process like every other figure.

- `incremental`: `pipeline.run` over a flow tree with an explicit state directory, after
  copying a prepared state into it (the copy is not timed). Used for the 30-day build, the
  settling run, the incremental run over one new hour and the full recomputation.
- `ingest`: `flowfence ingest` through the CLI (`cli.main`, in-process) into a store; run a
  second time on the same store it measures the idempotency check.
- `export_json`: the JSON-lines export the ingest step reads (`bench.ingest.export_json`). It
  runs in a child too: a child's peak RSS starts at what its parent held when it was spawned,
  so a parent grown by the export would inflate every figure measured after it.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.measure import RUN_TARGETS, Clock, SpillWatch, Stopwatch, _kept


def incremental(args: dict[str, Any]) -> dict[str, Any]:
    from flowfence.config.settings import load_settings
    from flowfence.run import pipeline

    watch = Stopwatch(keep={"pipeline": _kept})
    watch.wrap_all((("flowfence.run.pipeline", "run", "pipeline"), *RUN_TARGETS))
    where = Path(args["where"])
    if where.exists():
        shutil.rmtree(where)
    if args.get("copy_from"):
        shutil.copytree(args["copy_from"], where)
    where.mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        None,
        None,
        memory_limit=args["memory_limit"],
        threads=args["threads"],
        temp_dir=args["temp_dir"],
    )
    settings = replace(settings, initial_lookback=timedelta(hours=args["lookback_hours"]))
    request = pipeline.RunRequest(
        flows=args["data"],
        out=where / "out",
        settings=settings,
        now=datetime.fromisoformat(args["now"]),
        state=where / "state",
    )
    with SpillWatch(args["temp_dir"]) as spill:
        clock = Clock()
        pipeline.run(request)
        spent = clock.read()
    from bench.measure import _run_counts

    return {**spent, **spill.counts(), **_run_counts(watch)}


def ingest(args: dict[str, Any]) -> dict[str, Any]:
    from flowfence.cli import app as cli

    files = sorted(str(p) for p in Path(args["json"]).glob("flows-*.log"))
    store = Path(args["store"])
    if args.get("fresh") and store.exists():
        shutil.rmtree(store)
    argv = ["ingest", *files, "--out", str(store), "--output", "json"]
    clock = Clock()
    code = cli.main(argv)
    spent = clock.read()
    if code != 0:
        raise SystemExit(f"flowfence ingest exited {code}")
    return {**spent, "files": len(files)}


def export(args: dict[str, Any]) -> dict[str, Any]:
    from bench.ingest import export_json

    clock = Clock()
    files = export_json(Path(args["data"]), Path(args["into"]))
    return {**clock.read(), "files": len(files)}


KINDS = {"incremental": incremental, "ingest": ingest, "export_json": export}

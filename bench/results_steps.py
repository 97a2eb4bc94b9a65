"""RESULTS.md sections for the incremental and ingest steps (`bench.steps`), their targets
and their checks; `bench.results.render` places them in the generated block."""

from __future__ import annotations

from bench.model import BenchRun, Figure, IncrementalResult, IngestResult
from bench.results import RUN_COLUMNS, Verdict, _table, mb, ratio, stage_rows

INCREMENTAL_TARGET = 20.0  # issue 5: an incremental run at least 20x faster than a full one
RERUN_TARGET = 0.10  # issue 12: a rerun with nothing new under 10% of a full run
INCREMENTAL_TITLES = {
    "generate": "fixture generator, the {days}",
    "build": "`pipeline.run`, the {days} into an empty state (builds the state)",
    "settle": "nothing new while statuses settle: 30 minutes after the build, no new file "
    "(every status moves, so every manifest is written again)",
    "rerun": "nothing new and no status due: 10 minutes after that (computes everything, "
    "changes nothing)",
    "quiet": "rerun with nothing new: 10 minutes later again, after a run that changed nothing "
    "(stops before reading)",
    "steady": "**incremental, steady state**: the new hour on a settled state (hourly CronJob)",
    "first": "incremental, first run after the build (every status moves, every manifest "
    "rendered again)",
    "full": "full recomputation: the {days} + the new hour into an empty state",
    "full_tight": "full recomputation again, with the tight memory_limit (see Setup)",
    "bare_edges": "bare DuckDB aggregation of the {days} + the new hour",
}


def days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def spill_verdict(run: BenchRun) -> list[Verdict]:
    """memory_limit honoured and spilling: the runs with the tight limit, against the same
    runs with the normal one."""
    pairs = [
        (f"{s.label}, 1 day", s.figures["run"], s.figures["run_tight"])
        for s in run.sizes
        if "run_tight" in s.figures
    ]
    inc = run.incremental
    if inc is not None and "full_tight" in inc.figures:
        pairs.append((f"{days(inc.days)} + 1 h", inc.figures["full"], inc.figures["full_tight"]))
    if not pairs:
        return []
    said = "; ".join(
        f"{where}: peak RSS {mb(tight.peak_rss)} (with {run.memory_limit}: {mb(normal.peak_rss)}, "
        f"spilled {mb(normal.spill())}), spilled {mb(tight.spill())}, "
        f"{tight.seconds:.1f} s (with {run.memory_limit}: {normal.seconds:.1f} s)"
        for where, normal, tight in pairs
    )
    spilled = any(tight.spill() > 0 for _, _, tight in pairs)
    return [
        Verdict(
            f"memory_limit honoured, spills to --temp-dir (memory_limit {run.tight_memory_limit})",
            ", ".join(where for where, _, _ in pairs),
            "spilled" if spilled else "no spill needed",
            spilled,
            said,
        )
    ]


def verdicts(run: BenchRun) -> list[Verdict]:
    out = spill_verdict(run)
    inc = run.incremental
    if inc is None:
        return out
    f = inc.figures
    full = f["full"]
    for kind in ("steady", "first"):
        fig = f[kind]
        speedup = full.seconds / fig.seconds
        out.append(
            Verdict(
                f"incremental ({kind}) >= {INCREMENTAL_TARGET:.0f}x faster than full (issue 5)",
                f"{days(inc.days)} + 1 h",
                f"{speedup:.1f}x (CPU {full.cpu_seconds / fig.cpu_seconds:.1f}x)",
                speedup >= INCREMENTAL_TARGET,
                f"{fig.seconds:.2f} s against {full.seconds:.2f} s; "
                f"{ratio(fig.seconds, f['bare_edges'].seconds)} the bare aggregation of "
                f"all the files; read {fig.stage('read'):.2f} s, after the read "
                f"{max(0.0, fig.seconds - fig.stage('plan') - fig.stage('read')):.2f} s",
            )
        )
    situations = {
        "quiet": "after a run that changed nothing",
        "rerun": "no status due",
        "settle": "statuses settle",
    }
    for kind, situation in situations.items():
        if kind not in f:
            continue
        share = f[kind].seconds / full.seconds
        out.append(
            Verdict(
                f"rerun with nothing new < {RERUN_TARGET:.0%} of full (issue 12)",
                f"{days(inc.days)}, {situation}",
                f"{share:.0%} ({f[kind].seconds:.2f} s)",
                share < RERUN_TARGET,
                f"read {f[kind].stage('read'):.2f} s, after the read "
                f"{max(0.0, f[kind].seconds - f[kind].stage('read')):.2f} s",
            )
        )
    return out


def _incremental(inc: IncrementalResult) -> list[str]:
    f = inc.figures
    bare, full = f["bare_edges"], f["full"]
    rows = []
    for kind, title in INCREMENTAL_TITLES.items():
        fig = f.get(kind)
        if fig is None:
            continue
        title = title.format(days=days(inc.days))
        if kind == "generate" and inc.generated_at:
            title += f" (generated {inc.generated_at}, reused)"
        read = fig.count("rows_read")
        rows.append(
            [
                title,
                f"{fig.seconds:.2f}",
                ratio(fig.seconds, bare.seconds),
                f"{fig.cpu_seconds:.2f}",
                ratio(fig.cpu_seconds, bare.cpu_seconds),
                "" if kind in ("generate", "bare_edges") else ratio(fig.seconds, full.seconds),
                mb(fig.peak_rss),
                mb(fig.spill()),
                "" if read is None else f"{read:,}",
            ]
        )
    header = (
        "measurement",
        "seconds (median)",
        "ratio to bare aggregation",
        "CPU s",
        "CPU ratio",
        "ratio to full",
        "peak RSS",
        "spilled",
        "rows read",
    )
    pairs = [(k, f[k]) for k in ("build", "steady", "first", "full") if k in f]
    return [
        f"## Incremental: one new hour on {days(inc.days)} of state",
        "",
        f"- Data: {inc.data_rows:,} rows in {inc.data_files} hourly files ({days(inc.days)} x "
        f"{inc.rows_per_hour:,} rows an hour, same generator, topology and seed), then one new "
        f"hour of {inc.new_rows:,} rows. `initialLookback` {inc.days * 24}h; default settings "
        "otherwise (lateArrivalGrace 1h, so the hour before the new one is still open and "
        "read again).",
        f"- The state after the build: {inc.state_edges:,} edges, "
        f"{inc.state_bytes / 1e3:,.0f} kB on "
        "disk. Each incremental run starts from its own copy of the state (the copy is not "
        "timed); `steady` starts from a state a later run without new data has settled.",
        "- Every run through `pipeline.run` in a fresh process, same DuckDB settings as above.",
        "",
        *_table(header, rows),
        "",
        "Stage split (seconds of the median run; columns as for `flowfence run` above):",
        "",
        *stage_rows(pairs, RUN_COLUMNS),
        "",
    ]


def _ingest(ing: IngestResult, bare: Figure | None) -> list[str]:
    rows = []
    for kind, title in (
        ("ingest", "`flowfence ingest`, into an empty store"),
        ("ingest_again", "`flowfence ingest` again: every file skipped by checksum"),
    ):
        fig = ing.figures[kind]
        rows.append(
            [
                title,
                f"{fig.seconds:.1f}",
                f"{ing.rows / fig.seconds:,.0f}",
                ratio(fig.seconds, bare.seconds) if bare else "n/a",
                f"{fig.cpu_seconds:.1f}",
                ratio(fig.cpu_seconds, bare.cpu_seconds) if bare else "n/a",
                mb(fig.peak_rss),
            ]
        )
    export = f"{ing.export_seconds:.1f} s" if ing.export_seconds is not None else "time unknown"
    if ing.exported_at:
        export += f" (made {ing.exported_at}, reused)"
    header = (
        "measurement",
        "seconds",
        "rows/s",
        f"ratio to bare aggregation ({ing.label})",
        "CPU s",
        "CPU ratio",
        "peak RSS",
    )
    return [
        f"## Ingest: {ing.label} rows of Calico Enterprise JSON lines",
        "",
        f"- Input: the {ing.label} data set above ({ing.rows:,} rows) exported with DuckDB as "
        f"Enterprise flow-log JSON lines (`bench.ingest.export_json`, one file per hour): "
        f"{ing.files} files, {ing.input_bytes / 2**30:.2f} GiB. Export: {export}, not part of "
        "the figures.",
        f"- Store written: {mb(ing.store_bytes)} of zstd Parquet, {ing.store_rows:,} rows read "
        "back. `flowfence ingest` through the CLI in a fresh process; it has no memory "
        "options (its DuckDB runs with a 512 MB limit of its own).",
        "",
        *_table(header, rows),
        "",
    ]


def sections(run: BenchRun) -> list[str]:
    lines: list[str] = []
    if run.incremental is not None:
        lines += _incremental(run.incremental)
    if run.ingest is not None:
        same = next((s for s in run.sizes if s.label == run.ingest.label), None)
        lines += _ingest(run.ingest, same.figures.get("bare_edges") if same else None)
    return lines


def checks(run: BenchRun) -> list[str]:
    notes = []
    inc = run.incremental
    if inc is not None and not inc.same_manifests:
        notes.append("incremental: the incremental runs wrote other rules than the full run")
    if inc is not None:
        edges = {k: inc.figures[k].count("edges") for k in ("steady", "first", "full")}
        if len(set(edges.values())) > 1:
            notes.append(f"incremental: edge counts differ ({edges})")
    ing = run.ingest
    if ing is not None and ing.store_rows != ing.rows:
        notes.append(f"ingest: {ing.store_rows:,} rows in the store, {ing.rows:,} exported")
    return notes

"""`flowfence run`: learn namespace-isolation policies from flow logs and write them to DIR."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text

from flowfence.cli import options
from flowfence.config.settings import Settings, load_settings
from flowfence.core import times
from flowfence.core.errors import BadInput, ExitCode
from flowfence.report import markdown as report_md
from flowfence.report import markdown_model, run_report
from flowfence.run import pipeline, watch
from flowfence.state import store as state_store

FLAVORS = ("calico-enterprise", "calico", "kubernetes")


def _change_text(ns: run_report.NamespaceEntry) -> str:
    if ns.change in ("none", "unchanged"):
        return "-"
    rules = f" +{len(ns.added_rules)} -{len(ns.removed_rules)}"
    return ns.change + (rules if ns.added_rules or ns.removed_rules else "")


COLUMNS = ("namespace", "status", "action", "change", "egress", "ingress", "drift", "stale",
           "notes")  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _rows(report: run_report.RunReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for ns in report.namespaces:
        egress = sum(1 for r in ns.rules if r.direction == "egress")
        ingress = len(ns.rules) - egress
        # A namespace flag repeats its rules' flags: each is listed once.
        notes = "; ".join(
            dict.fromkeys((*ns.flags, *sorted({f for r in ns.rules for f in r.flags})))
        )
        status = ns.status
        if ns.previous_status is not None and ns.previous_status != ns.status:
            status = f"{ns.previous_status} -> {ns.status}"
        action = ns.decision["decision"] if ns.decision else ns.stagedAction
        rows.append(
            (ns.namespace, status, action, _change_text(ns), str(egress), str(ingress),
             str(len(ns.drift) or ""), str(len(ns.stale_rules) or ""), notes)
        )  # fmt: skip
    return rows


def _plain(text: str) -> str:
    """One field of a log line: no tab, newline or other control character (no ANSI)."""
    return _CONTROL.sub(" ", text)


def _lines(result: pipeline.RunResult, computation: pipeline.Computation, out: Path) -> list[str]:
    """The summary's sentences after the table."""
    report = computation.report
    counts = run_report.summary_counts(report)
    lines = [
        report_md.summary_line(markdown_model.from_report(report)).replace("**", ""),
        f"{counts['namespaces']} policies, {counts['egress_rules']} egress and "
        f"{counts['ingress_rules']} ingress rules; {counts['excluded_flows']} flows left to "
        f"higher tiers; {counts['rejected_flows']} flows rejected. "
        f"Wrote {len(result.written)} files, removed {len(result.removed)} in {out}.",
    ]
    reads = computation.reads
    if reads is not None:
        read = sum(b.files for b in reads.batches)
        rows = sum(b.rows for b in reads.batches)
        generation = report.incremental.get("generation")
        saved = f"state generation {generation}" if result.committed else "state unchanged"
        lines.append(f"Read {read} files ({rows} rows) this run; {saved}.")
    if counts["stale_rules"]:
        lines.append(
            f"{counts['stale_rules']} stale rules proposed for removal (see report.md; "
            "--prune-stale removes them)."
        )
    for lapsed in report.lapsed_decisions:
        lines.append(
            f"Decision for {lapsed['namespace']} expired {lapsed['expires']}: learning again."
        )
    if result.commit is not None:
        if result.commit.committed:
            subject = result.commit.message.splitlines()[0]
            pushed = " and pushed" if result.commit.pushed else ""
            lines.append(f"Committed{pushed} {result.commit.commit}: {subject}")
        else:
            lines.append("Nothing to commit: no policy or decision changed.")
    return lines


def _summary(result: pipeline.RunResult, computation: pipeline.Computation, out: Path) -> None:
    """A table on a terminal. Elsewhere (a CronJob's log, a pipe) plain lines, never cut to a
    terminal's width: the title, a tab-separated header and one tab-separated line per
    namespace (empty cells `-`), then the sentences."""
    report = computation.report
    title = f"flowfence: {report.window['since']} .. {report.window['until']}"
    rows, lines = _rows(report), _lines(result, computation, out)
    if not sys.stdout.isatty():
        typer.echo(title)
        for row in (COLUMNS, *rows):
            typer.echo("\t".join(_plain(cell) or "-" for cell in row))
        for line in lines:
            typer.echo(_plain(line))
        return
    console = Console(highlight=False, soft_wrap=True)
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(v) for v in row))  # Text(): report strings are data, not markup
    console.print(table)
    for line in lines:
        console.print(Text(line))


def _quiet(result: pipeline.RunResult, output: str) -> None:
    """A run that stopped early (run/quiet.py): the report of the run whose outputs stand
    (`--output json`), or one sentence saying so."""
    stopped = result.quiet
    if stopped is None:
        return
    if output == "json":
        typer.echo(stopped.report.decode().rstrip("\n"))
        return
    typer.echo(
        f"Nothing new since {times.rfc3339(stopped.since)}: read no flow log and wrote no file; "
        f"state generation {stopped.generation} unchanged. The policies and reports are "
        "that run's."
    )


@contextmanager
def _progress() -> Iterator[Callable[[str], None] | None]:
    """Progress over the run's steps on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), console=console,
        transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("flowfence run: locking the state", total=len(STEP_TEXT))

        def advance(step: str) -> None:
            bar.update(task, advance=1, description=f"flowfence run: {STEP_TEXT.get(step, step)}")

        yield advance


STEP_TEXT = {
    "after-lock": "reading new flow logs",
    "after-read": "learning rules, applying decisions",
    "after-policies": "writing reports",
    "after-report": "done",
}


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        flows: Annotated[
            str,
            typer.Option(
                "--flows",
                help="Flow logs: a Parquet file, a directory, or a date=/hour= tree; local "
                "or s3://bucket/prefix, and with --engine spark any Hadoop URL (s3a://, "
                "hdfs://, file://), listed and read by Spark.",
                envvar="FLOWFENCE_FLOWS",
            ),
        ],
        out: Annotated[
            Path, typer.Option("--out", help="Output directory (policies/, report.*).")
        ] = Path("out"),
        config: Annotated[
            Path | None,
            typer.Option(
                "--config",
                help="A Calico PolicyRecommendationScope manifest (name 'default'), unchanged.",
                exists=True,
                dir_okay=False,
            ),
        ] = None,
        settings_file: Annotated[
            Path | None,
            typer.Option(
                "--settings",
                help="flowfence's own settings (kind FlowfenceConfig); see docs/configuration.md.",
                exists=True,
                dir_okay=False,
            ),
        ] = None,
        existing_policies: Annotated[
            Path | None,
            typer.Option(
                "--existing-policies",
                help="Folder of policy YAML already in the cluster; traffic a tier before "
                "ours decides is left out.",
                exists=True,
                file_okay=False,
            ),
        ] = None,
        namespaces_file: Annotated[
            Path | None,
            typer.Option(
                "--namespaces",
                help="`kubectl get namespaces -o yaml` output, the cluster's namespaces: "
                "labels for the selector, namespaces without traffic (NoData); a namespace "
                "it does not list is deleted and loses its policy. Takes precedence over "
                "Namespace items in --inventory.",
                exists=True,
                dir_okay=False,
            ),
        ] = None,
        inventory_file: options.Inventory = None,
        now: options.Now = None,
        flavor: Annotated[
            str | None,
            typer.Option(
                "--flavor", help="calico-enterprise (default), calico (open source) or kubernetes."
            ),
        ] = None,
        output: Annotated[
            str, typer.Option("--output", help="text (a summary) or json (report on stdout).")
        ] = "text",
        memory_limit: options.MemoryLimit = None,
        threads: options.Threads = None,
        temp_dir: options.TempDir = None,
        engine: Annotated[
            str,
            typer.Option(
                "--engine",
                envvar="FLOWFENCE_ENGINE",
                help="Where the scan of the flow logs runs: duckdb (default) or spark "
                "(PySpark; everything after the aggregation stays in this process).",
            ),
        ] = "duckdb",
        spark_master: Annotated[
            str | None,
            typer.Option(
                "--spark-master",
                envvar="FLOWFENCE_SPARK_MASTER",
                help="--engine spark: the Spark master (default: what spark-submit configured, "
                "else local mode).",
            ),
        ] = None,
        state: Annotated[
            str | None,
            typer.Option(
                "--state",
                envvar="FLOWFENCE_STATE",
                help="Learning state directory or s3://bucket/prefix (default DIR/state): "
                "what was read, the evidence per rule, the status per namespace.",
            ),
        ] = None,
        reset_state: Annotated[
            bool,
            typer.Option(
                "--reset-state",
                help="Start a new learning state: move the manifest and tables of --state "
                "into a reset-<UTC time> folder there (kept, never deleted), then run. Needed "
                "when table files are there without their manifest.",
            ),
        ] = False,
        prune_stale: Annotated[
            bool,
            typer.Option(
                "--prune-stale",
                help="Remove the rules the report lists as stale (evidence older than "
                "staleRulePeriod).",
            ),
        ] = False,
        watch_mode: Annotated[
            bool,
            typer.Option(
                "--watch",
                help="Run every `interval` until SIGTERM or SIGINT, finishing the run in "
                "progress (a long-lived Deployment).",
            ),
        ] = False,
        watch_every: Annotated[
            float | None,
            typer.Option("--watch-every", hidden=True, help="Seconds between runs (tests)."),
        ] = None,
        git_commit: Annotated[
            bool,
            typer.Option(
                "--git-commit",
                help="Commit DIR/policies, decisions.yaml and report.md in the git work tree "
                "holding DIR, when a policy or a decision changed.",
            ),
        ] = False,
        git_push: Annotated[
            bool,
            typer.Option("--git-push", help="Also push to the remote (implies --git-commit)."),
        ] = False,
        detailed_exitcode: Annotated[
            bool,
            typer.Option(
                "--detailed-exitcode",
                help="Exit 4 when the output changed (a policy file written or removed), "
                "0 when not; for CI.",
            ),
        ] = False,
    ) -> None:
        """Learn one namespace-isolation policy per namespace from the flows and write them."""
        if flavor is not None and flavor not in FLAVORS:
            raise BadInput(f"--flavor: expected one of {', '.join(FLAVORS)}, got {flavor!r}")
        if output not in ("text", "json"):
            raise BadInput(f"--output: expected text or json, got {output!r}")
        if engine not in ("duckdb", "spark"):
            raise BadInput(f"--engine: expected duckdb or spark, got {engine!r}")
        settings = load_settings(
            config,
            settings_file,
            flavor=flavor,
            memory_limit=memory_limit,
            threads=threads,
            temp_dir=temp_dir,
        )
        if watch_mode and now is not None:
            raise BadInput("--now cannot be combined with --watch (each run reads the clock)")
        if watch_every is not None and watch_every <= 0:
            raise BadInput("--watch-every must be positive")
        if watch_mode and reset_state:
            raise BadInput("--reset-state cannot be combined with --watch (reset with one run)")
        if watch_mode and detailed_exitcode:
            raise BadInput("--detailed-exitcode cannot be combined with --watch")
        changed = False

        def once(_: int = 0) -> None:
            nonlocal changed
            with _progress() as on_step:
                result = _run(on_step)
            changed = result.output_changed
            for warning in result.warnings:
                typer.echo(f"flowfence: warning: {warning}", err=True)
            computation = result.computation
            if computation is None:  # nothing new since a run that changed nothing
                _quiet(result, output)
                return
            for risk in computation.report.frozen_risks:  # a frozen policy to look at
                text = f"{risk['namespace']}: {risk['risk']}: {risk['detail']}"
                typer.echo(f"flowfence: risk: {_plain(text)}", err=True)
            if output == "json":
                typer.echo(json.dumps(computation.report.to_dict(), indent=2))
            else:
                _summary(result, computation, out)

        def _run(on_step: Callable[[str], None] | None) -> pipeline.RunResult:
            request = pipeline.RunRequest(
                flows=flows,
                out=out,
                settings=settings,
                now=options.now_option(now),
                existing_policies=existing_policies,
                namespaces_file=namespaces_file,
                inventory_file=inventory_file,
                state=None if state is None else state_store.location(state),
                prune_stale=prune_stale,
                reset_state=reset_state,
                git_commit=git_commit or git_push,
                git_push=git_push,
                on_step=on_step,
                engine="spark" if engine == "spark" else "duckdb",
                spark_master=spark_master,
            )
            return pipeline.run(request)

        if not watch_mode:
            once()
            if detailed_exitcode and changed:
                raise typer.Exit(int(ExitCode.CHANGED))
            return
        raise typer.Exit(_watch(once, settings, watch_every))


def _notify(message: str) -> None:
    typer.echo(f"flowfence: watch: {message}", err=True)


def _watch(once: watch.RunOnce, settings: Settings, every: float | None) -> int:
    seconds = every if every is not None else settings.interval.total_seconds()
    with watch.handle_signals(watch.Stop(), _notify) as stop:
        return watch.loop(once, seconds, stop, _notify)

"""The recommendation run, stage by stage: read the new flows -> aggregate edges -> screen
untrusted strings -> merge into the state -> exclude what higher tiers decide -> build rules ->
status per namespace -> render manifests -> report.

`compute` does everything but writing and returns the files to write and the new state; `run`
holds the state lock, loads the state, commits the new one and writes the outputs atomically.
Only the read touches the flow logs (one DuckDB scan of the files this run has not sealed yet,
incremental.py); the rest works on the distinct edges of the state plus the new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import polars as pl

from flowfence.calico import names as validate
from flowfence.config.settings import Settings
from flowfence.core import atomic, checkpoints
from flowfence.core.errors import BadInput, FlowInputError, RuntimeFailure
from flowfence.flows import sources, spark_engine
from flowfence.flows.edges import KEY_COLUMNS
from flowfence.flows.sources import FileInfo
from flowfence.learn import learnable as learn
from flowfence.learn import rules, stale
from flowfence.learn.model import Recommendation
from flowfence.render import cache as render_cache
from flowfence.report import model as rpt
from flowfence.report.build import RunFacts, exclusions
from flowfence.report.build import build as _report
from flowfence.review import changes, decisions, gitops
from flowfence.review import step as review
from flowfence.state import incremental, lifecycle
from flowfence.state import rhythm as schedule
from flowfence.state import store as state_store
from flowfence.state import tables as state

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Cached = render_cache.Cached
_ROW = "__state_row"  # row of the merged edges, carried through screening and exclusion


@dataclass(frozen=True)
class RunRequest:
    flows: str | Path
    out: Path
    settings: Settings
    now: datetime
    existing_policies: Path | None = None
    namespaces_file: Path | None = None
    state: Path | str | None = None  # the state directory or s3:// prefix; DIR/state when None
    prune_stale: bool = False
    git_commit: bool = False  # commit DIR's policies, decisions and report (gitops.py)
    git_push: bool = False  # and push them
    on_step: Callable[[str], None] | None = None  # progress: called with each checkpoint name
    engine: Literal["duckdb", "spark"] = "duckdb"  # where the scan of the flow logs runs
    spark_master: str | None = None  # --engine spark: None = spark-submit's or local mode

    @property
    def state_dir(self) -> Path | str:
        return self.state if self.state is not None else self.out / "state"


@dataclass(frozen=True)
class Computation:
    recommendations: Mapping[str, Recommendation]
    statuses: Mapping[str, tuple[str, datetime]]
    files: Mapping[str, bytes]
    report: rpt.RunReport
    state: state.State  # the state after this run, not yet committed
    changed: bool  # whether `state` differs from the state the run started from
    stale_rules: tuple[stale.StaleRule, ...] = ()
    reads: Reads | None = None  # what this run read (not in the report: it must not depend
    # on what earlier runs happened to read)
    review: review.Review | None = None  # decisions applied, drift, changes against DIR


@dataclass(frozen=True)
class RunResult:
    computation: Computation
    written: tuple[str, ...]
    removed: tuple[str, ...]
    committed: bool = False  # a new state generation was written
    warnings: tuple[str, ...] = ()  # for stderr (a stale lock taken over)
    commit: gitops.CommitResult | None = None  # with --git-commit

    @property
    def output_changed(self) -> bool:
        """Whether this run wrote or removed a file under policies/ (`--detailed-exitcode`)."""
        return any(p.startswith("policies/") for p in (*self.written, *self.removed))


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the memory, thread and spill settings applied."""
    config: dict[str, Any] = {}
    if settings.memory_limit:
        config["memory_limit"] = settings.memory_limit
    if settings.threads:
        config["threads"] = settings.threads
    if settings.temp_dir:
        config["temp_directory"] = str(settings.temp_dir)
    con = duckdb.connect(config=config)
    # DuckDB's progress bar writes to stdout, which carries only data (`--output json`); it is
    # a session setting (DuckDB 2 refuses it in the connect-time config).
    con.execute("SET enable_progress_bar = false")
    return con


@dataclass(frozen=True)
class Reads:
    seal: incremental.Batch
    open: incremental.Batch
    backfill: incremental.Batch

    @property
    def batches(self) -> tuple[incremental.Batch, ...]:
        return (self.seal, self.open, self.backfill)


def _read(request: RunRequest, prior: state.State, now: datetime) -> tuple[incremental.Plan, Reads]:
    """List the flow logs, plan the reads against `prior`, read. With `--engine spark` the
    session opens first: a Hadoop URL (`s3a://`, `hdfs://`, `file://`) is listed through it."""
    if request.engine == "spark":
        with spark_engine.session(request.spark_master) as spark:
            plan = _plan(request, prior, now, spark_engine.list_files(request.flows, spark))
            return plan, _read_with(None, plan, now, spark)
    plan = _plan(request, prior, now, sources.list_files(request.flows)[0])
    con = connect(request.settings)
    try:
        return plan, _read_with(con, plan, now, None)
    except duckdb.OutOfMemoryException as exc:  # a resource limit, not bad input
        raise RuntimeFailure(
            f"out of memory reading {request.flows}: raise --memory-limit or set --temp-dir "
            f"to a disk with room to spill ({exc})"
        ) from exc
    except duckdb.Error as exc:  # a corrupt data page only shows when it is read
        raise FlowInputError(f"{request.flows}: cannot read flow logs: {exc}") from exc
    finally:
        con.close()


def _plan(
    request: RunRequest, prior: state.State, now: datetime, listing: Sequence[FileInfo]
) -> incremental.Plan:
    settings = request.settings
    return incremental.plan(
        listing,
        prior,
        now,
        initial_lookback=settings.initial_lookback,
        grace=settings.late_arrival_grace,
    )


def _read_with(
    con: duckdb.DuckDBPyConnection | None,
    plan: incremental.Plan,
    now: datetime,
    spark: SparkSession | None,
) -> Reads:
    # Only the scan moves to Spark; merging, rules, rendering and state stay in-process.
    def read(files: Sequence[FileInfo], end_before: datetime | None = None) -> incremental.Batch:
        return incremental.read(
            con, files, since=plan.origin, until=now, end_before=end_before, spark=spark
        )

    return Reads(read(plan.seal), read(plan.open), read(plan.backfill, plan.backfill_before))


def compute(
    request: RunRequest, prior: state.State | None = None, cached: Cached | None = None
) -> Computation:
    """The run over the flows not yet sealed in `prior` (a new state when None). `cached`
    returns the bytes of an output file as written before (None when absent), so that
    unchanged manifests are not rendered again."""
    prior = prior if prior is not None else state.new()
    now = request.now.astimezone(UTC).replace(tzinfo=None)
    if prior.now is not None and now < prior.now:
        raise BadInput(
            f"--now {rpt.rfc3339(now)} is before the last run recorded in the state "
            f"({rpt.rfc3339(prior.now)}); use another --state to recompute the past"
        )
    # A broken decisions file stops the run before any flow log is read.
    decided = decisions.load(request.out)
    plan, reads = _read(request, prior, now)
    _step(request, "after-read")
    return derive(request, prior, plan, reads, cached, decided=decided)


def derive(
    request: RunRequest,
    prior: state.State,
    plan: incremental.Plan,
    reads: Reads,
    cached: Cached | None = None,
    *,
    decided: decisions.Decisions | None = None,
) -> Computation:
    """Everything after the read: pure, no I/O but the policy and namespace files.

    The state keeps edges as read (unscreened): every run screens the merged edges, so what is
    rejected and counted is exactly what a single read of all the data would give."""
    settings = request.settings
    now = request.now.astimezone(UTC).replace(tzinfo=None)
    sealed = incremental.merge_edges(prior.edges, reads.seal.edges, reads.backfill.edges)
    activity_sealed = schedule.trim(
        incremental.merge_activity(prior.activity, reads.seal.activity, reads.backfill.activity)
    )
    everything = incremental.merge_edges(sealed, reads.open.edges)
    activity = incremental.merge_activity(activity_sealed, reads.open.activity)
    good, rejections = validate.screen(everything.drop("day_list").with_row_index(_ROW))
    previous = learn.previous_states(prior)
    learned = learn.learn(
        settings,
        request.namespaces_file,
        request.existing_policies,
        good,
        previous,
        plan.origin,
        now,
    )
    selected = learned.selection.selected
    recs = rules.build(learned.learnable, selected, settings)

    # Namespace activity is measured before any pruning: pruned evidence was still traffic.
    newest = good.get_column("last_seen").max() if good.height else None
    newest_flow = newest if isinstance(newest, datetime) else None
    last_flow = learn.last_flows(good)
    cutoff = stale.cutoff(good, settings.stale_rule_period)
    old = stale.stale_evidence(learned.learnable, cutoff)
    stale_rules: tuple[stale.StaleRule, ...] = ()
    pruned = 0
    if old.height and cutoff is not None:
        fresh = rules.build(
            learned.learnable.filter(pl.col("last_seen") >= cutoff), selected, settings
        )
        stale_rules = stale.compare(recs, fresh, cutoff)
        if request.prune_stale:
            recs, pruned = fresh, old.height
            keys = everything.select(pl.col(list(KEY_COLUMNS)).gather(old.get_column(_ROW)))
            sealed = _without(sealed, keys)
            everything = _without(everything, keys)

    rhythms = schedule.detect_all(activity)
    digests = learn.digests(recs, settings)
    timing = lifecycle.Timing(
        settings.interval, settings.stabilization_period, settings.stale_namespace_period
    )
    states = {
        ns: lifecycle.decide(
            previous.get(ns),
            namespace=ns,
            rules_digest=digests[ns],
            rules=len(recs[ns].rules),
            learning_since=learned.since[ns],
            last_flow=last_flow.get(ns),
            newest_flow=newest_flow,
            rhythm=rhythms.get(ns),
            now=now,
            timing=timing,
        )
        for ns in selected
    }
    statuses = {ns: (s.status, s.last_updated) for ns, s in states.items()}
    files, manifests = render_cache.render(recs, settings, statuses, prior.manifests, cached)
    # The change is reported against the files before the run; a rerun at the same --now
    # (a retry, or a run killed between the policies and the report) against the files
    # before the run that committed the state, so it reports the same change.
    disk = changes.read_policies(request.out)
    previous_status: dict[str, str] = {ns: p.status for ns, p in previous.items()}
    if prior.now == now:
        before, previous_status = review.baseline(disk, prior.baseline, previous_status)
    else:
        before = disk
    checked = review.review(
        recs,
        files,
        settings,
        previous=before,
        decided=decided if decided is not None else decisions.load(request.out),
        now=request.now.astimezone(UTC),
        learnable=learned.learnable,
        existing=learned.policies,
    )
    files = checked.files
    states = {
        ns: replace(s, staged_action=checked.applied.staged_actions.get(ns, "Learn"))
        for ns, s in states.items()
    }

    generation = prior.generation + 1
    nonempty = reads.seal.nonempty | reads.backfill.nonempty
    after = state.State(
        generation=prior.generation,
        origin=plan.origin,
        watermark=plan.watermark,
        now=now,
        edges=sealed,
        activity=activity_sealed,
        namespaces=pl.DataFrame(
            [asdict(s) for _, s in sorted(states.items())], schema=state.NAMESPACES_SCHEMA
        ),
        files=incremental.sealed_files(prior.files, plan.seal, nonempty, generation),
        runs=prior.runs,
        manifests=manifests,
        baseline=review.baseline_table(
            before, checked.files, previous_status, {ns: s.status for ns, s in states.items()}
        ),
        table_files=prior.table_files,
    )
    changed = not prior.same_content(after)
    if changed:
        after = replace(after, runs=_log_run(prior, plan, reads, now, pruned))
    late = incremental.late_note(plan)
    facts = RunFacts(
        now=now,
        since=plan.origin,
        input={
            "files": after.files.filter(~pl.col("empty")).height + reads.open.files,
            "rows": int(everything.get_column("rows").sum()) if everything.height else 0,
            "flows": int(everything.get_column("flows").sum()) if everything.height else 0,
            "edges": everything.height,
        },
        incremental={
            "generation": generation if changed else prior.generation,
            "sealed_files": after.files.height,
            "open_files": len(plan.open),
            "late_files": len(plan.late),
            "state_edges": sealed.height,
            "pruned_edges": pruned,
        },
        states=states,
        stale_rules=stale_rules,
        pruned=request.prune_stale,
    )
    report = _report(
        settings,
        facts,
        recs,
        files,
        learned.selection,
        excluded=exclusions(learned.excluded.excluded),
        flagged=exclusions(learned.excluded.flagged),
        rejected=tuple(
            rpt.Rejection(r.reason, r.edges, r.flows, r.samples) for r in rejections.items
        ),
        warnings=(*learned.warnings, *([late] if late else [])),
    )
    report = review.annotate(report, checked, previous_status, settings)
    return Computation(
        recs, statuses, files, report, after, changed, stale_rules, reads, review=checked
    )


def _without(frame: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    return frame.join(keys, on=list(KEY_COLUMNS), how="anti", nulls_equal=True)


def _log_run(
    prior: state.State, plan: incremental.Plan, reads: Reads, now: datetime, pruned: int
) -> pl.DataFrame:
    row = {
        "generation": prior.generation + 1,
        "now": now,
        "origin": plan.origin,
        "files_read": sum(b.files for b in reads.batches),
        "files_sealed": len(plan.seal),
        "rows_read": sum(b.rows for b in reads.batches),
        "flows_read": sum(b.flows for b in reads.batches),
        "late_ignored": len(plan.late),
        "backfill_files": len(plan.backfill),
        "pruned_edges": pruned,
    }
    return pl.concat([prior.runs, pl.DataFrame([row], schema=state.RUNS_SCHEMA)])


def run(request: RunRequest) -> RunResult:
    """Lock the state, compute, commit the new state, then write policies and reports."""
    # A local state directory is locked; an s3:// one is committed with a conditional put
    # (state_store.py), so a run that loses the race stops before writing any output.
    with state_store.opened(request.state_dir) as held:
        _step(request, "after-lock")
        prior = held.load()
        held.collect_garbage(prior)
        computation = compute(request, prior, render_cache.output_reader(request.out))
        if computation.changed:
            held.commit(prior, computation.state)
        out = request.out
        written, removed = atomic.sync_tree(out, computation.files, owned="policies")
        _step(request, "after-policies")
        reports = {
            "report.json": rpt.to_json(computation.report).encode(),
            "report.md": rpt.to_markdown(computation.report).encode(),
        }
        for name, data in reports.items():
            if atomic.write_bytes(out / name, data):
                written.append(name)
        # The state under DIR (the default) stays out of a GitOps repository.
        if (request.state is None or request.git_commit) and gitops.write_gitignore(out):
            written.append(".gitignore")
        _step(request, "after-report")
        commit = None
        if request.git_commit or request.git_push:
            commit = gitops.publish(out, push_too=request.git_push)
    warnings = (held.warning,) if held.warning else ()
    return RunResult(
        computation, tuple(sorted(written)), tuple(removed), computation.changed, warnings, commit
    )


def _step(request: RunRequest, name: str) -> None:
    checkpoints.reached(name)
    if request.on_step is not None:
        request.on_step(name)

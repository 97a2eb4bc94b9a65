"""The recommendation run, stage by stage: read the new flows -> aggregate edges -> screen
untrusted strings -> merge into the state -> exclude what higher tiers decide -> build rules ->
build each policy document once -> status per namespace -> apply decisions -> YAML -> review
(drift, changes) -> report.

`compute` does everything but writing and returns the files to write and the new state; `run`
holds the state lock, loads the state, commits the new one and writes the outputs atomically.
Only the read touches the flow logs (one DuckDB scan of the files this run has not sealed yet,
state/incremental.py); the rest works on the distinct edges of the state plus the new ones.
The state after the run is assembled in next_state.py, the statuses decided in statuses.py and
the report's facts gathered in report_facts.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flowfence.calico import schema_tree
from flowfence.config.settings import Settings
from flowfence.core import atomic, checkpoints, lock, times
from flowfence.core.errors import BadInput, RuntimeFailure
from flowfence.flows import sources
from flowfence.learn import stale
from flowfence.learn.model import Recommendation
from flowfence.render import manifests, yaml_files
from flowfence.report import html, markdown, run_report
from flowfence.review import (
    annotate,
    apply_decisions,
    baseline,
    changes,
    decisions,
    drift,
    gitops,
    outcome,
)
from flowfence.review import written as record_file
from flowfence.run import learning, next_state, quiet, report_facts, statuses
from flowfence.run import reads as run_reads
from flowfence.state import incremental, open_units, store, tables

if TYPE_CHECKING:
    pass

Cached = yaml_files.Cached


@dataclass(frozen=True)
class RunRequest:
    flows: str | Path
    out: Path
    settings: Settings
    now: datetime
    existing_policies: Path | None = None
    namespaces_file: Path | None = None
    inventory_file: Path | None = None  # `kubectl get pods -A -o json`: named ports, namespaces
    state: Path | str | None = None  # the state directory or s3:// prefix; DIR/state when None
    prune_stale: bool = False
    reset_state: bool = False  # move the state aside first (store.reset) and start a new one
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
    report: run_report.RunReport
    state: tables.State  # the state after this run, not yet committed
    changed: bool  # whether `state` differs from the state the run started from
    stale_rules: tuple[stale.StaleRule, ...] = ()
    reads: run_reads.Reads | None = (
        None  # what this run read (not in the report: it must not depend
    )
    # on what earlier runs happened to read)
    review: outcome.Review | None = None  # decisions applied, drift, changes against DIR
    record: bytes = b""  # DIR/.flowfence-written.json after this run (review/written.py)
    plan: incremental.Plan | None = None  # the reads planned (run/quiet.py digests it)


@dataclass(frozen=True)
class RunResult:
    computation: Computation | None  # None when the run stopped early (`quiet`)
    written: tuple[str, ...]
    removed: tuple[str, ...]
    committed: bool = False  # a new state generation was written
    warnings: tuple[str, ...] = ()  # for stderr (a stale lock taken over)
    commit: gitops.CommitResult | None = None  # with --git-commit
    quiet: quiet.Quiet | None = None  # nothing new: the outputs of an earlier run stand

    @property
    def output_changed(self) -> bool:
        """Whether this run wrote or removed a file under policies/ (`--detailed-exitcode`)."""
        return any(p.startswith("policies/") for p in (*self.written, *self.removed))


def compute(
    request: RunRequest, prior: tables.State | None = None, cached: Cached | None = None
) -> Computation:
    """The run over the flows not yet sealed in `prior` (a new state when None). `cached`
    returns the bytes of an output file as written before (None when absent), so that
    unchanged manifests are not rendered again."""
    prior = prior if prior is not None else tables.new()
    now = times.naive_utc(request.now)
    if prior.now is not None and now < prior.now:
        raise BadInput(
            f"--now {times.rfc3339(now)} is before the last run recorded in the state "
            f"({times.rfc3339(prior.now)}); use another --state to recompute the past"
        )
    # A broken decisions file stops the run before any flow log is read.
    decided = decisions.load(request.out)
    record = record_file.load(request.out)
    plan, reads = run_reads.read(
        request.flows, request.settings, prior, now,
        engine=request.engine, spark_master=request.spark_master,
    )  # fmt: skip
    _step(request, "after-read")
    merged = next_state.merge(
        prior,
        sealing=(reads.seal, reads.kept_seal, reads.backfill),
        still_open=(reads.open, reads.kept_open),
    )
    # The read frames live on in `merged` only: the rest of the run needs their counts.
    reads = reads.counted()
    return derive(request, prior, plan, reads, merged, cached, decided=decided, record=record)


def derive(
    request: RunRequest,
    prior: tables.State,
    plan: incremental.Plan,
    reads: run_reads.Reads,
    merged: next_state.Merged,
    cached: Cached | None = None,
    *,
    decided: decisions.Decisions | None = None,
    record: record_file.Written | None = None,
) -> Computation:
    """Everything after the read and the merge of its edges into the state (`merged`): pure,
    no I/O but the policy, decision and namespace files."""
    settings = request.settings
    now = times.naive_utc(request.now)
    previous = statuses.previous_states(prior)
    markers = statuses.deleted_states(prior)
    learned = learning.learn(
        settings,
        merged,
        previous,
        plan.origin,
        now,
        namespaces_file=request.namespaces_file,
        existing_policies=request.existing_policies,
        prune_stale=request.prune_stale,
        inventory_file=request.inventory_file,
        deleted={ns: m.learning_since for ns, m in markers.items()},
    )
    recs, chosen = learned.recs, learned.selected
    deleted = chosen.selection.deleted
    # Each policy document is built once: its digest decides the status, which is then set.
    docs = manifests.policy_documents(recs, settings)
    states = statuses.decide(
        settings, docs, recs,
        selected=chosen.selection.selected, previous=previous, since=chosen.since,
        edges=learned.screened, activity=learned.merged.activity, now=now,
    )  # fmt: skip
    status = {ns: (s.status, s.last_updated) for ns, s in states.items()}
    docs = manifests.with_statuses(docs, status)
    # The change is reported against the files before the run; a rerun at the same --now
    # (a retry, or a run killed between the policies and the report) against the files
    # before the run that committed the state, so it reports the same change.
    before = changes.read_policies(request.out)
    previous_status: dict[str, str] = {ns: p.status for ns, p in previous.items()}
    if prior.now == now:
        before, previous_status = baseline.baseline(before, prior.baseline, previous_status)
    in_cluster = drift.enforced_in_cluster(chosen.policies, settings.tier_name)
    # What flowfence last wrote: the record in DIR plus the digests the state keeps, so that
    # losing the record alone does not let a hand edit be frozen.
    last = (record if record is not None else record_file.load(request.out)).with_digests(
        (r["file"], r["sha256"]) for r in prior.manifests.iter_rows(named=True)
    )
    applied = apply_decisions.apply(
        {f"{apply_decisions.POLICIES}/{name}": doc for name, doc in docs.items()},
        before,
        decided if decided is not None else decisions.load(request.out),
        request.now.astimezone(UTC),
        enforced_in_cluster=tuple(in_cluster),
        deleted=deleted,
        record=last,
        tier=settings.tier_name,
    )
    files, written = yaml_files.render(applied.documents, prior.manifests, cached)
    checked = outcome.review(
        recs, applied, files, settings,
        previous=before, learnable=chosen.learnable, in_cluster=in_cluster,
    )  # fmt: skip
    states = {
        ns: replace(s, staged_action=applied.staged_actions.get(ns, "Learn"))
        for ns, s in states.items()
    }
    after = next_state.after(
        prior, plan, learned.merged, now,
        states=states,
        deleted=statuses.deleted_after(deleted, previous, markers, now),
        sealed_nonempty=reads.seal.nonempty | reads.kept_seal.nonempty | reads.backfill.nonempty,
        kept=reads.kept,
        manifests=written,
        baseline=baseline.baseline_table(
            before, files, previous_status, {ns: s.status for ns, s in states.items()}
        ),
    )  # fmt: skip
    changed = not prior.same_content(after)
    if changed:
        after = replace(
            after, runs=next_state.log_run(prior, plan, reads.batches, now, learned.pruned)
        )
    report = report_facts.report(
        settings, plan, learned,
        now=now, prior=prior, after=after, changed=changed,
        open_files=reads.open.files + reads.kept_open.files,
        states=states, prune_stale=request.prune_stale, files=files,
    )  # fmt: skip
    report = annotate.annotate(report, checked, previous_status, settings)
    if last.problem is not None:
        report = replace(report, warnings=(*report.warnings, last.problem))
    return Computation(
        recs, status, files, report, after, changed, learned.stale_rules, reads, review=checked,
        record=record_file.dumps(record_file.after(last, files)), plan=plan,
    )  # fmt: skip


def run(request: RunRequest) -> RunResult:
    """Lock the state, compute, commit the new state, then write policies and reports."""
    # The output directory is locked, so two runs with different states never write one DIR.
    # A local state directory is locked too; an s3:// one is committed with a conditional put
    # (state/store.py), so a run that loses the race stops before writing any output.
    out_lock = lock.acquire(request.out, name=lock.OUT_LOCK_NAME, what="output directory")
    with out_lock, store.opened(request.state_dir) as held:
        _step(request, "after-lock")
        if request.git_commit or request.git_push:
            # A detached HEAD or an unreachable remote stops the run before it writes anything.
            gitops.preflight(request.out, push_too=request.git_push)
        aside = held.reset() if request.reset_state else None
        prior = held.load()
        held.collect_garbage(prior)
        marker = _marker_dir(request, held)
        inputs = quiet.taken(_inputs(request), marker) if marker is not None else ""
        if marker is not None:
            if (stopped := _stopped(request, marker, prior, inputs)) is not None:
                warned = (held.warning,) if held.warning else ()
                return RunResult(None, (), (), warnings=warned, quiet=stopped)
            quiet.forget(marker)
        # Read once: compute compares reused files and the schema check skips unchanged ones.
        on_disk = functools.cache(yaml_files.output_reader(request.out))
        computation = compute(request, prior, on_disk)
        # Every manifest to be written is checked against its schema before anything (state
        # included) is written: invalid output is flowfence's bug, never something to hand to a
        # cluster. A file whose bytes are already on disk is not written, nor checked again.
        writing = [rel for rel, data in computation.files.items() if on_disk(rel) != data]
        flavor = request.settings.flavor
        if invalid := schema_tree.check_rendered(computation.files, flavor, only=writing):
            raise RuntimeFailure(schema_tree.failure(invalid))
        out = request.out
        # A symlink among the outputs is refused before the state moves on (atomic.py).
        record = record_file.FILE_NAME
        atomic.check_writable(out, [*computation.files, *run_report.FILES, record])
        if computation.changed:
            held.commit(prior, computation.state)
        # The record first: a run killed before its policies leaves a record that still knows
        # the files on disk (review/written.py).
        wrote_record = atomic.write_bytes(out / record, computation.record)
        written, removed = atomic.sync_tree(out, computation.files, owned="policies")
        written += [record] if wrote_record else []
        _step(request, "after-policies")
        reports = {
            "report.json": run_report.to_json(computation.report).encode(),
            "report.md": markdown.to_markdown(computation.report).encode(),
            "report.html": html.to_html(computation.report, computation.files).encode(),
        }
        for name, data in reports.items():
            if atomic.write_bytes(out / name, data):
                written.append(name)
        # The state under DIR (the default) stays out of a GitOps repository.
        if (request.state is None or request.git_commit) and gitops.write_gitignore(out):
            written.append(".gitignore")
        _step(request, "after-report")
        if marker is not None and not computation.changed and computation.plan is not None:
            _leave_marker(request, marker, prior, computation, inputs, reports)
        commit = None
        if request.git_commit or request.git_push:
            commit = gitops.publish(out, push_too=request.git_push)
    warnings: tuple[str, ...] = (held.warning,) if held.warning else ()
    if aside is not None:
        warnings += (f"--reset-state: the earlier state was moved to {aside}",)
    return RunResult(
        computation, tuple(sorted(written)), tuple(removed), computation.changed, warnings, commit
    )


def _marker_dir(request: RunRequest, held: store.Store) -> Path | None:
    """Where a run that changed nothing leaves its marker (run/quiet.py): a local state only,
    and not for a run that resets the state, commits to git or scans with Spark."""
    if not isinstance(held, store.LocalStore) or request.engine != "duckdb":
        return None
    return None if request.reset_state or request.git_commit or request.git_push else held.directory


def _inputs(request: RunRequest) -> quiet.Inputs:
    files = {
        "namespaces": request.namespaces_file,
        "inventory": request.inventory_file,
        "existing-policies": request.existing_policies,
    }
    return quiet.Inputs(
        request.settings, (request.prune_stale, str(request.flows)), files, request.out
    )


def _stopped(
    request: RunRequest, marker: Path, prior: tables.State, inputs: str
) -> quiet.Quiet | None:
    """This run's early stop when nothing is new since a run that changed nothing."""
    if prior.now is None:
        return None
    now = times.naive_utc(request.now)
    plan = run_reads.plan_reads(request.settings, prior, now, sources.list_files(request.flows)[0])
    reused = open_units.reusable(prior, plan.origin, plan.open)
    return quiet.check(marker, inputs, request.out, prior, plan, now, reused)


def _leave_marker(
    request: RunRequest,
    marker: Path,
    prior: tables.State,
    computation: Computation,
    inputs: str,
    reports: Mapping[str, bytes],
) -> None:
    """The marker of a run that changed nothing, unless an input changed while it ran. Its
    outputs are digested as written (the policies, the reports, the record), not re-read."""
    if computation.plan is None or quiet.taken(_inputs(request), marker) != inputs:
        return
    written: dict[str, bytes | None] = {**computation.files, **reports}
    written[record_file.FILE_NAME] = computation.record
    digest = quiet.fingerprint(inputs, computation.plan, written)
    now = times.naive_utc(request.now)
    settled = decisions.load(request.out)
    until = quiet.quiet_until(request.settings, computation.statuses, settled, now)
    quiet.record(marker, generation=prior.generation, now=now, until=until, digest=digest)


def _step(request: RunRequest, name: str) -> None:
    checkpoints.reached(name)
    if request.on_step is not None:
        request.on_step(name)

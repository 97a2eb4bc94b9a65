"""The learning state after a run: the edges and activity merged from the state and this run's
reads, the namespaces' lifecycle, the sealed files, the manifests written and the baseline a
rerun compares with (state/tables.py holds the tables, state/store.py commits them).

Only sealed reads go into the state; the open files (still being written) are merged for this
run's rules and read again by the next run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import polars as pl

from flowfence.flows.edges import KEY_COLUMNS
from flowfence.state import incremental, lifecycle, open_units, rhythm, tables


@dataclass(frozen=True)
class Merged:
    sealed: pl.DataFrame  # the state's edges after this run
    sealed_activity: pl.DataFrame  # the state's activity after this run
    edges: pl.DataFrame  # everything this run learns from: sealed and open
    activity: pl.DataFrame


def merge(
    prior: tables.State,
    *,
    sealing: Sequence[incremental.Batch],
    still_open: Sequence[incremental.Batch],
) -> Merged:
    """The state's edges and activity with the batches that seal now merged in, and (for this
    run only) those of the units still open."""
    sealed, learned_from = incremental.merge_twice(
        [prior.edges, *(b.edges for b in sealing)], [b.edges for b in still_open]
    )
    sealed_activity = rhythm.trim(
        incremental.merge_activity(prior.activity, *(b.activity for b in sealing))
    )
    return Merged(
        sealed,
        sealed_activity,
        learned_from,
        incremental.merge_activity(sealed_activity, *(b.activity for b in still_open)),
    )


def without(merged: Merged, keys: pl.DataFrame) -> Merged:
    """`merged` without the edges of `keys` (KEY_COLUMNS): evidence pruned as stale."""

    def drop(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.join(keys, on=list(KEY_COLUMNS), how="anti", nulls_equal=True)

    return Merged(drop(merged.sealed), merged.sealed_activity, drop(merged.edges), merged.activity)


def after(
    prior: tables.State,
    plan: incremental.Plan,
    merged: Merged,
    now: datetime,
    *,
    states: Mapping[str, lifecycle.NamespaceState],
    deleted: Mapping[str, lifecycle.NamespaceState],
    sealed_nonempty: Collection[str],
    manifests: pl.DataFrame,
    baseline: pl.DataFrame,
    kept: open_units.Kept,
) -> tables.State:
    """The state after this run (its run log still that of `prior`: see `log_run`). The
    namespaces table holds `states`, the selected namespaces, and the markers of the `deleted`
    ones (lifecycle.deleted); `kept` the units still open, as read (state/open_units.py)."""
    generation = prior.generation + 1
    return tables.State(
        generation=prior.generation,
        origin=plan.origin,
        watermark=plan.watermark,
        now=now,
        edges=merged.sealed,
        activity=merged.sealed_activity,
        namespaces=pl.DataFrame(
            [asdict(s) for _, s in sorted({**deleted, **states}.items())],
            schema=tables.NAMESPACES_SCHEMA,
        ),
        files=incremental.sealed_files(prior.files, plan.seal, sealed_nonempty, generation),
        runs=prior.runs,
        manifests=manifests,
        baseline=baseline,
        open_files=kept.files,
        open_edges=kept.edges,
        open_activity=kept.activity,
        table_files=prior.table_files,
    )


def log_run(
    prior: tables.State,
    plan: incremental.Plan,
    batches: Sequence[incremental.Batch],
    now: datetime,
    pruned: int,
) -> pl.DataFrame:
    """The run log with this run appended (only a run that changes the state is logged)."""
    row = {
        "generation": prior.generation + 1,
        "now": now,
        "origin": plan.origin,
        "files_read": sum(b.files for b in batches),
        "files_sealed": len(plan.seal),
        "rows_read": sum(b.rows for b in batches),
        "flows_read": sum(b.flows for b in batches),
        "late_ignored": len(plan.late),
        "backfill_files": len(plan.backfill),
        "pruned_edges": pruned,
    }
    return pl.concat([prior.runs, pl.DataFrame([row], schema=tables.RUNS_SCHEMA)])

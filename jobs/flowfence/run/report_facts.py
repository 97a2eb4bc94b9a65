"""The run report (report/build.py) from what a run computed, before the review annotates it.

The input and incremental counts describe the evidence the run learned from and the state it
keeps, not what this run happened to read, so identical state and inputs give identical
reports whatever earlier runs read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import polars as pl

from flowfence.config.settings import Settings
from flowfence.report import build, run_report
from flowfence.run.learning import Learned
from flowfence.state import incremental, lifecycle, tables


def report(
    settings: Settings,
    plan: incremental.Plan,
    learned: Learned,
    *,
    now: datetime,
    prior: tables.State,
    after: tables.State,
    changed: bool,
    open_files: int,
    states: Mapping[str, lifecycle.NamespaceState],
    prune_stale: bool,
    files: Mapping[str, bytes],
) -> run_report.RunReport:
    """The report of a run whose state after it is `after` (`changed`: it differs from
    `prior`, so it is committed as a new generation)."""
    merged, selected = learned.merged, learned.selected
    facts = build.RunFacts(
        now=now,
        since=plan.origin,
        input={
            "files": after.files.filter(~pl.col("empty")).height + open_files,
            "rows": incremental.total(merged.edges, "rows"),
            "flows": incremental.total(merged.edges, "flows"),
            "edges": merged.edges.height,
        },
        incremental={
            "generation": prior.generation + 1 if changed else prior.generation,
            "sealed_files": after.files.height,
            "open_files": len(plan.open),
            "late_files": len(plan.late),
            "state_edges": merged.sealed.height,
            "pruned_edges": learned.pruned,
        },
        states=states,
        stale_rules=learned.stale_rules,
        pruned=prune_stale,
    )
    late = incremental.late_note(plan)
    return build.build(
        settings,
        facts,
        learned.recs,
        files,
        selected.selection,
        excluded=build.exclusions(selected.excluded.excluded),
        flagged=build.exclusions(selected.excluded.flagged),
        rejected=learned.rejections.items,
        warnings=(*selected.warnings, *([late] if late else [])),
    )

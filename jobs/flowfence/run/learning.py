"""What a run learns from the merged edges: screened for untrusted strings (calico/names.py),
the namespaces selected and the tiers before ours left out (learn/select.py), the rules built
(learn/rules.py), and the stale rules found and, with `--prune-stale`, pruned (learn/stale.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from flowfence.calico import names
from flowfence.config.settings import Settings
from flowfence.flows.edges import KEY_COLUMNS
from flowfence.learn import netset_cidrs, rules, select, stale
from flowfence.learn.model import Recommendation
from flowfence.run.next_state import Merged, without
from flowfence.state import lifecycle

_ROW = "__state_row"  # row of the merged edges, carried through screening and exclusion


@dataclass(frozen=True)
class Learned:
    merged: Merged  # the merged edges, without the pruned evidence
    screened: pl.DataFrame  # the merged edges that passed screening (before any pruning)
    rejections: names.Rejections
    selected: select.Selected
    recs: dict[str, Recommendation]
    stale_rules: tuple[stale.StaleRule, ...]
    pruned: int  # edges pruned as stale (--prune-stale)


def learn(
    settings: Settings,
    merged: Merged,
    previous: Mapping[str, lifecycle.NamespaceState],
    origin: datetime,
    now: datetime,
    *,
    namespaces_file: Path | None,
    existing_policies: Path | None,
    prune_stale: bool,
    inventory_file: Path | None = None,
    deleted: Mapping[str, datetime] | None = None,
) -> Learned:
    """The state keeps edges as read (unscreened): every run screens the merged edges, so what
    is rejected and counted is exactly what a single read of all the data would give."""
    good, rejections = names.screen(merged.edges.drop("day_list").with_row_index(_ROW))
    chosen = select.select(
        settings,
        namespaces_file,
        existing_policies,
        good,
        previous,
        origin,
        now,
        inventory_file=inventory_file,
        deleted=deleted,
    )
    selected = chosen.selection.selected
    sets = (
        netset_cidrs.set_cidrs(chosen.policies.network_sets)
        if chosen.policies is not None and settings.flavor == "kubernetes"
        else {}
    )

    def build(edges: pl.DataFrame) -> dict[str, Recommendation]:
        return netset_cidrs.narrow(rules.build(edges, selected, settings), sets)

    recs = build(chosen.learnable)
    # Staleness is measured against the newest flow of every screened edge.
    cutoff = stale.cutoff(good, settings.stale_rule_period)
    old = stale.stale_evidence(chosen.learnable, cutoff)
    if not old.height or cutoff is None:
        return Learned(merged, good, rejections, chosen, recs, (), 0)
    fresh = build(chosen.learnable.filter(pl.col("last_seen") >= cutoff))
    found = stale.compare(recs, fresh, cutoff)
    if not prune_stale:
        return Learned(merged, good, rejections, chosen, recs, found, 0)
    keys = merged.edges.select(pl.col(list(KEY_COLUMNS)).gather(old.get_column(_ROW)))
    return Learned(without(merged, keys), good, rejections, chosen, fresh, found, old.height)

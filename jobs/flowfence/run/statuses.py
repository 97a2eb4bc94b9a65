"""Each namespace's lifecycle state after a run (state/lifecycle.py), decided from the policy
document the run built for it (its digest), the namespace's newest flow and rhythm, and its
state before the run. The run then writes the statuses into those same documents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from flowfence.config.settings import Settings
from flowfence.learn import namespaces
from flowfence.learn.model import Recommendation
from flowfence.state import lifecycle, rhythm, tables


def previous_states(prior: tables.State) -> dict[str, lifecycle.NamespaceState]:
    """The namespaces the previous run selected (deleted namespaces' markers left out)."""
    return {
        row["namespace"]: lifecycle.NamespaceState(**row)
        for row in prior.namespaces.iter_rows(named=True)
        if row["status"] != lifecycle.DELETED
    }


def deleted_states(prior: tables.State) -> dict[str, lifecycle.NamespaceState]:
    """The markers of the namespaces the state records as deleted (lifecycle.deleted)."""
    return {
        row["namespace"]: lifecycle.NamespaceState(**row)
        for row in prior.namespaces.iter_rows(named=True)
        if row["status"] == lifecycle.DELETED
    }


def deleted_after(
    deleted: Sequence[str],
    previous: Mapping[str, lifecycle.NamespaceState],
    markers: Mapping[str, lifecycle.NamespaceState],
    now: datetime,
) -> dict[str, lifecycle.NamespaceState]:
    """The markers after this run, for the namespaces it found `deleted`: a marker already
    kept stays as it was (the deletion was seen then); a namespace the previous run selected
    gets one now. A marker whose namespace no flow in the state names any more is dropped:
    nothing is left to bring it back."""
    kept = {ns: markers[ns] for ns in deleted if ns in markers}
    new = {ns: lifecycle.deleted(previous[ns], now) for ns in deleted if ns in previous}
    return {**new, **kept}


def decide(
    settings: Settings,
    documents: Mapping[str, Mapping[str, Any]],
    recs: Mapping[str, Recommendation],
    *,
    selected: Sequence[str],
    previous: Mapping[str, lifecycle.NamespaceState],
    since: Mapping[str, datetime],
    edges: pl.DataFrame,
    activity: pl.DataFrame,
    now: datetime,
) -> dict[str, lifecycle.NamespaceState]:
    """The state of each selected namespace after this run. `documents` are the run's policy
    documents by file name (a namespace without rules has none); `edges` the screened edges
    before any pruning, since pruned evidence was still traffic."""
    newest = edges.get_column("last_seen").max() if edges.height else None
    newest_flow = newest if isinstance(newest, datetime) else None
    last_flow = namespaces.last_flows(edges)
    rhythms = rhythm.detect_all(activity)
    timing = lifecycle.Timing(
        settings.interval, settings.stabilization_period, settings.stale_namespace_period
    )
    return {
        ns: lifecycle.decide(
            previous.get(ns),
            namespace=ns,
            rules_digest=lifecycle.policy_digest(documents.get(f"{ns}.yaml")),
            rules=len(recs[ns].rules),
            learning_since=since[ns],
            last_flow=last_flow.get(ns),
            newest_flow=newest_flow,
            rhythm=rhythms.get(ns),
            now=now,
            timing=timing,
        )
        for ns in selected
    }

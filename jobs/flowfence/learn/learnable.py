"""Which edges each namespace learns from: selection, exclusion, and the namespace's own
learning window; plus the per-namespace facts the lifecycle needs (previous state, newest
flow, a digest of the rendered policy)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from flowfence.calico.evaluate import Edge, Evaluator
from flowfence.calico.policies import PolicySet
from flowfence.calico.policy_docs import load_policies
from flowfence.config.settings import Settings
from flowfence.learn import exclude, namespaces
from flowfence.learn.model import Recommendation
from flowfence.render.manifests import documents
from flowfence.state import lifecycle
from flowfence.state import tables as state

_EPOCH = datetime(1970, 1, 1)


def existing_decider(
    policy_set: PolicySet, ns_labels: Mapping[str, Mapping[str, str]], before: float
) -> exclude.DecidedBefore:
    evaluator = Evaluator(policy_set, namespaces=ns_labels)

    def decided(frame: pl.DataFrame) -> list[str | None]:
        out: list[str | None] = []
        for row in frame.iter_rows(named=True):
            verdict = evaluator.evaluate(Edge.from_row(row), row["direction"], before_order=before)
            hit = verdict.deciding
            out.append(None if hit is None else f"{hit.tier}|{hit.policy}|{hit.action}")
        return out

    return decided


def last_flows(edges: pl.DataFrame) -> dict[str, datetime]:
    """Newest flow per namespace with a workload on either side (any action)."""
    sides = [
        edges.filter(pl.col(f"{side}_type") == "wep").select(
            pl.col(f"{side}_namespace").alias("namespace"), "last_seen"
        )
        for side in ("source", "dest")
    ]
    both = pl.concat(sides).drop_nulls("namespace")
    newest = both.group_by("namespace").agg(pl.col("last_seen").max())
    return dict(newest.iter_rows())


def previous_states(prior: state.State) -> dict[str, lifecycle.NamespaceState]:
    return {
        row["namespace"]: lifecycle.NamespaceState(**row)
        for row in prior.namespaces.iter_rows(named=True)
    }


def learning_window(
    learnable: pl.DataFrame, since: Mapping[str, datetime], origin: datetime
) -> pl.DataFrame:
    """A namespace that joined after the state began learns only from evidence seen since its
    own first run's lookback: an edge last seen before is not its evidence, although the state
    holds it for the namespaces that were there at the time."""
    later = {ns: at for ns, at in since.items() if at > origin}
    if not later:
        return learnable
    windows = pl.DataFrame(
        {"namespace": list(later), "__since": list(later.values())},
        schema={"namespace": pl.String(), "__since": pl.Datetime("us")},
    )
    window = pl.col("__since")
    return (
        learnable.join(windows, on="namespace", how="left")
        .filter(window.is_null() | (pl.col("last_seen") >= window))
        .drop("__since")
    )


def digests(recs: Mapping[str, Recommendation], settings: Settings) -> dict[str, str]:
    """The lifecycle's digest of each namespace's policy, rendered with a fixed status."""
    placeholder = {ns: ("Learning", _EPOCH) for ns in recs}
    docs = documents(recs, settings, statuses=placeholder)
    return {ns: lifecycle.policy_digest(docs.get(f"{ns}.yaml")) for ns in recs}


@dataclass(frozen=True)
class Learned:
    """Selection, exclusion and rules over the screened edges."""

    selection: namespaces.SelectedNamespaces
    learnable: pl.DataFrame
    excluded: exclude.Exclusions
    since: dict[str, datetime]
    warnings: tuple[str, ...]
    policies: PolicySet | None = None  # --existing-policies, loaded once (review.py reads it)


def learn(
    settings: Settings,
    namespaces_file: Path | None,
    existing_policies: Path | None,
    good: pl.DataFrame,
    previous: Mapping[str, lifecycle.NamespaceState],
    origin: datetime,
    now: datetime,
) -> Learned:
    """Select namespaces, drop what tiers before ours decide, and keep each namespace's
    evidence inside its learning window (`previous` gives the windows of known namespaces)."""
    ns_file = namespaces.load_namespaces(namespaces_file) if namespaces_file else None
    file_labels = ns_file.labels if ns_file else None
    selection = namespaces.select_namespaces(
        namespaces.discover_namespaces(good), file_labels, settings
    )
    decider = None
    policy_set = None
    warnings: list[str] = list(ns_file.problems) if ns_file else []
    tier_orders = exclude.known_tier_orders(settings)
    if existing_policies is not None:
        policy_set = load_policies(existing_policies)
        warnings.extend(policy_set.warnings)
        decider = existing_decider(policy_set, file_labels or {}, settings.tier_order)
        # The Tier manifests tell the trace check where tiers not built into Calico sit.
        for tier in policy_set.tiers:
            if tier.name != settings.tier_name:
                tier_orders.setdefault(tier.name, tier.order)
    learnable, excluded = exclude.exclude(
        good, selection.selected, settings, tier_orders=tier_orders, decided_before=decider
    )
    since = {
        ns: previous[ns].learning_since if ns in previous else now - settings.initial_lookback
        for ns in selection.selected
    }
    learnable = learning_window(learnable, since, origin)
    return Learned(selection, learnable, excluded, since, tuple(warnings), policy_set)

"""Which edges each namespace learns from: the selected namespaces, without what the tiers
before ours decide (exclude.py, with `--existing-policies` evaluated), each inside its own
learning window."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from flowfence.calico import inventory, named_ports, vector_eval
from flowfence.calico.evaluate import Evaluator
from flowfence.calico.policies import PolicySet
from flowfence.calico.policy_docs import load_policies
from flowfence.config.settings import Settings
from flowfence.learn import exclude, namespaces
from flowfence.state import lifecycle


def existing_decider(
    policy_set: PolicySet,
    ns_labels: Mapping[str, Mapping[str, str]],
    before: float,
    ports: named_ports.NamedPorts | None = None,
) -> exclude.DecidedBefore:
    evaluator = Evaluator(policy_set, namespaces=ns_labels, named_ports=ports)

    def decided(frame: pl.DataFrame) -> pl.Series:
        # Evaluated per distinct endpoint and rule part, not per edge (vector_eval.py).
        return vector_eval.deciding(evaluator, frame, before_order=before)

    return decided


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


def still_gone(good: pl.DataFrame, deleted: Mapping[str, datetime]) -> set[str]:
    """The deleted namespaces without a flow since their deletion was seen: without
    `--namespaces`, a flow after it is all that tells a namespace came back."""
    if not deleted:
        return set()
    newest = namespaces.last_flows(good)
    return {ns for ns, at in deleted.items() if ns not in newest or newest[ns] <= at}


def _since(
    ns: str,
    previous: Mapping[str, lifecycle.NamespaceState],
    deleted: Mapping[str, datetime],
    lookback: datetime,
) -> datetime:
    """A namespace's learning window: kept while it learns; a namespace that comes back
    after its deletion learns afresh, from nothing older than the deletion."""
    if ns in previous:
        return previous[ns].learning_since
    return max(lookback, deleted[ns]) if ns in deleted else lookback


@dataclass(frozen=True)
class Selected:
    """The selected namespaces and the edges they learn from (screened, excluded, windowed)."""

    selection: namespaces.SelectedNamespaces
    learnable: pl.DataFrame
    excluded: exclude.Exclusions
    since: dict[str, datetime]
    warnings: tuple[str, ...]
    policies: PolicySet | None = None  # --existing-policies, loaded once (the review reads it)


def select(
    settings: Settings,
    namespaces_file: Path | None,
    existing_policies: Path | None,
    good: pl.DataFrame,
    previous: Mapping[str, lifecycle.NamespaceState],
    origin: datetime,
    now: datetime,
    *,
    inventory_file: Path | None = None,
    deleted: Mapping[str, datetime] | None = None,
) -> Selected:
    """Select namespaces, drop what tiers before ours decide, and keep each namespace's
    evidence inside its learning window (`previous` gives the windows of known namespaces).
    The inventory resolves named ports in the existing policies and, without a namespaces
    file, gives the namespace list and labels when it lists Namespaces. `deleted`: when the
    state saw each deleted namespace go (lifecycle.deleted)."""
    ns_file = namespaces.load_namespaces(namespaces_file) if namespaces_file else None
    inv = inventory.load_inventory(inventory_file) if inventory_file else None
    file_labels = inventory.namespace_labels(inv, ns_file.labels if ns_file else None)
    deleted = deleted or {}
    selection = namespaces.select_namespaces(
        namespaces.discover_namespaces(good),
        file_labels,
        settings,
        known=previous,
        gone=still_gone(good, deleted),
    )
    decider = None
    policy_set = None
    warnings: list[str] = list(ns_file.problems) if ns_file else []
    if inv is not None:
        warnings.extend(inventory.notes(inv, namespaces_given=ns_file is not None))
    tier_orders = exclude.known_tier_orders(settings)
    if existing_policies is not None:
        policy_set = load_policies(existing_policies)
        warnings.extend(policy_set.warnings)
        warnings.extend(named_ports.unresolved_notes(policy_set, inv))
        decider = existing_decider(
            policy_set, file_labels or {}, settings.tier_order, named_ports.NamedPorts(inv)
        )
        # The Tier manifests tell the trace check where tiers not built into Calico sit.
        for tier in policy_set.tiers:
            if tier.name != settings.tier_name:
                tier_orders.setdefault(tier.name, tier.order)
    learnable, excluded = exclude.exclude(
        good, selection.selected, settings, tier_orders=tier_orders, decided_before=decider
    )
    since = {ns: _since(ns, previous, deleted, now - settings.initial_lookback)
             for ns in selection.selected}  # fmt: skip
    learnable = learning_window(learnable, since, origin)
    return Selected(selection, learnable, excluded, since, tuple(warnings), policy_set)

"""Which replayed denials a tier outside the replayed set decided first, by the flow's own trace.

Replaying recommendations alone (or with some of the cluster's policies) leaves out tiers that
Calico evaluates before them. The flow log's trace says which tier gave the final allow: the
first `allow`/`deny` hit by index that is not the profile, from `pending_policies`, or
`enforced_policies` when there are no pending hits (learn/exclude.py reads the same trace, so
what learning left out as decided by an earlier tier is what replay reports as such). When
that tier has no policies in the replayed set and is ordered before the tier that denies in
the replay, Calico never reaches the denial: the edge was decided earlier, not denied. Tier
orders come from `learn.exclude.known_tier_orders` plus the replayed set's Tier manifests; a
tier of unknown order cannot be placed, so its edges stay denied. Each distinct trace is
parsed once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import polars as pl

from flowfence.calico.hits import parse_hit
from flowfence.calico.policies import order_key

_EMPTY = pl.lit([], dtype=pl.List(pl.String))
TRACE = "__logged_trace"


@dataclass(frozen=True)
class LoggedDecision:
    """The hit of the flow's own trace that decided it, in a tier the replay does not model."""

    tier: str
    order: float | None
    hit: str

    def before(self, tier: str, order: float | None) -> bool:
        """Calico evaluates this decision's tier before `tier` (order, then name)."""
        return order_key(self.order, self.tier) < order_key(order, tier)


def logged_trace() -> pl.Expr:
    """The trace a row's decision is read from: pending hits, else enforced ones."""
    pending = pl.col("pending_policies").fill_null(_EMPTY)
    enforced = pl.col("enforced_policies").fill_null(_EMPTY)
    return pl.when(pending.list.len() > 0).then(pending).otherwise(enforced).alias(TRACE)


def decision(
    trace: list[str], replayed: Collection[str], orders: Mapping[str, float | None]
) -> LoggedDecision | None:
    """The logged decision of `trace` when its tier is outside `replayed` (tiers with policies
    in the replayed set) and of known order; None otherwise, or when any hit is malformed."""
    parsed = [(h, t) for t in trace if isinstance(t, str) and (h := parse_hit(t)) is not None]
    if len(parsed) != len(trace):
        return None
    for hit, text in sorted(parsed, key=lambda p: p[0].index):
        if hit.action == "pass":
            continue
        if hit.is_profile or hit.tier in replayed or hit.tier not in orders:
            return None
        return LoggedDecision(hit.tier, orders[hit.tier], text)
    return None

"""Which edges the engine learns from, and which a tier evaluated before ours already decided.

Learnable: an `allow` edge reported by the workload endpoint whose namespace gets a policy:
egress when `reporter == 'src'`, `source_type == 'wep'` and the source namespace is selected;
ingress when `reporter == 'dst'`, `dest_type == 'wep'` and the destination namespace is selected.

A learnable edge is excluded when its policy trace (`pending_policies`, or `enforced_policies`
when there are no pending hits) shows that a tier ordered *before* the recommendation tier gave
the final allow or deny: that tier decides the traffic whatever our policy says, so a rule for
it would be dead weight (allow) or contradict it (deny). Staged hits count like enforced ones,
as in Calico's pending trace. Unlike Calico Enterprise, which learns only profile-allowed flows,
flows decided by a tier *after* ours (e.g. `default`) or by the profile are learned: once our
tier ends in Deny they would be dropped before reaching that tier. Hits of our own tier (a
previous staged recommendation) never exclude.

Tier orders are not in the trace; the caller passes them (`known_tier_orders` gives Calico's
built-in ones and the operator's `allow-tigera`/`calico-system`, plus `tierOrders` from the
config). A deciding tier with no known order is flagged and learned by default, so nothing is
lost; `unknownTiers: exclude` excludes it instead. A trace with a malformed hit is treated
the same way. Each distinct trace is parsed once: traces repeat across edges far more than
they vary.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import polars as pl

from flowfence.calico.hits import PolicyHit, parse_hit
from flowfence.calico.names import sample
from flowfence.calico.policies import BUILTIN_TIERS, OPERATOR_TIERS
from flowfence.config.settings import Settings

# Calico's built-in tiers and the operator's tier for Calico's own components (policies.py).
BUILTIN_TIER_ORDERS: Mapping[str, float | None] = MappingProxyType(
    {t.name: t.order for t in (*BUILTIN_TIERS, *OPERATOR_TIERS)}
)

ALLOWED_BEFORE = "allowed by an earlier tier"
DENIED_BEFORE = "denied by an earlier tier"
UNKNOWN_TIER = "tier with unknown order"
MALFORMED = "malformed policy trace"
EXISTING_POLICY = "decided by an existing policy"

NOT_ALLOWED = "action is not allow"
FORWARDED = "reporter is not src or dst"
NOT_WORKLOAD = "reporting endpoint is not a workload"
NOT_SELECTED = "namespace not selected"

DecidedBefore = Callable[[pl.DataFrame], "pl.Series | Sequence[str | None]"]

_EMPTY = pl.lit([], dtype=pl.List(pl.String))


@dataclass(frozen=True)
class Tally:
    edges: int
    flows: int
    bytes: int


@dataclass(frozen=True)
class Exclusions:
    """`excluded`: edges removed, per (reason, policy). `flagged`: edges learned but worth a look
    (unknown tier order, malformed trace), per (reason, policy or sample). `not_learnable`:
    edges that were never candidates, per reason."""

    excluded: Mapping[tuple[str, str], Tally] = field(default_factory=dict)
    flagged: Mapping[tuple[str, str], Tally] = field(default_factory=dict)
    not_learnable: Mapping[str, Tally] = field(default_factory=dict)

    @property
    def total_excluded(self) -> Tally:
        return Tally(
            sum(t.edges for t in self.excluded.values()),
            sum(t.flows for t in self.excluded.values()),
            sum(t.bytes for t in self.excluded.values()),
        )


@dataclass(frozen=True)
class Verdict:
    """What one trace says: exclude (with reason), flag (learned, with reason) or neither."""

    excluded: str | None = None
    flagged: str | None = None
    policy: str | None = None


def known_tier_orders(settings: Settings) -> dict[str, float | None]:
    """Calico's built-in tier orders, overridden and extended by the config's `tierOrders`."""
    return {**BUILTIN_TIER_ORDERS, **settings.tier_orders}


def decide(
    hits: Sequence[PolicyHit | None],
    raw: Sequence[str],
    settings: Settings,
    tier_orders: Mapping[str, float | None],
) -> Verdict:
    """The verdict for one parsed trace (`None` entries are hits that failed to parse)."""
    strict = settings.unknown_tiers == "exclude"
    for text, hit in zip(raw, hits, strict=True):
        if hit is None:
            return (
                Verdict(MALFORMED, None, sample(text))
                if strict
                else Verdict(None, MALFORMED, sample(text))
            )
    ours = (settings.tier_order, settings.tier_name)
    for hit in sorted((h for h in hits if h is not None), key=lambda h: h.index):
        if hit.tier == settings.tier_name or hit.action == "pass":
            continue
        if hit.is_profile:
            return Verdict()
        if hit.tier not in tier_orders:
            if strict:
                return Verdict(UNKNOWN_TIER, None, hit.policy)
            return Verdict(None, UNKNOWN_TIER, hit.policy)
        order = tier_orders[hit.tier]
        if (float("inf") if order is None else order, hit.tier) < ours:
            return Verdict(
                ALLOWED_BEFORE if hit.action == "allow" else DENIED_BEFORE, None, hit.policy
            )
        return Verdict()
    return Verdict()


def _tallies(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return frame.group_by(keys).agg(
        pl.len().alias("edges"),
        pl.col("flows").sum().cast(pl.Int64),
        pl.col("bytes").sum().cast(pl.Int64),
    )


def _to_map(frame: pl.DataFrame, reason: str, policy: str) -> dict[tuple[str, str], Tally]:
    rows = _tallies(frame, [reason, policy]).iter_rows(named=True)
    out = {(r[reason], r[policy]): Tally(r["edges"], r["flows"], r["bytes"]) for r in rows}
    return dict(sorted(out.items()))


def _by_reason(frame: pl.DataFrame, reason: str) -> dict[str, Tally]:
    rows = _tallies(frame, [reason]).iter_rows(named=True)
    return dict(sorted((r[reason], Tally(r["edges"], r["flows"], r["bytes"])) for r in rows))


def _learnable(edges: pl.DataFrame, selected: Collection[str]) -> pl.DataFrame:
    chosen = list(selected)
    egress = (
        (pl.col("reporter") == "src")
        & (pl.col("source_type") == "wep")
        & pl.col("source_namespace").is_in(chosen).fill_null(False)
    )
    ingress = (
        (pl.col("reporter") == "dst")
        & (pl.col("dest_type") == "wep")
        & pl.col("dest_namespace").is_in(chosen).fill_null(False)
    )
    side_type = (
        pl.when(pl.col("reporter") == "src")
        .then(pl.col("source_type"))
        .otherwise(pl.col("dest_type"))
    )
    why_not = (
        pl.when(pl.col("action") != "allow")
        .then(pl.lit(NOT_ALLOWED))
        .when(~pl.col("reporter").is_in(["src", "dst"]))
        .then(pl.lit(FORWARDED))
        .when(side_type != "wep")
        .then(pl.lit(NOT_WORKLOAD))
        .when(~(egress | ingress))
        .then(pl.lit(NOT_SELECTED))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    return edges.with_columns(
        why_not.alias("__why_not"),
        pl.when(egress).then(pl.lit("egress")).otherwise(pl.lit("ingress")).alias("direction"),
        pl.when(egress)
        .then(pl.col("source_namespace"))
        .otherwise(pl.col("dest_namespace"))
        .alias("namespace"),
    )


def exclude(
    edges: pl.DataFrame,
    selected: Collection[str],
    settings: Settings,
    tier_orders: Mapping[str, float | None] | None = None,
    decided_before: DecidedBefore | None = None,
) -> tuple[pl.DataFrame, Exclusions]:
    """Learnable edges (with `direction` and `namespace` columns) and the exclusion counts.

    `decided_before`, when given, receives the learnable edges that survived the trace check
    and returns per edge the name of the existing policy that decides it first, or None (the
    evaluator over `--existing-policies`); those edges are excluded as EXISTING_POLICY.
    """
    orders = known_tier_orders(settings) if tier_orders is None else dict(tier_orders)
    # The wide edges are copied once, by the one filter that keeps the learnable edges no
    # trace excludes; the tallies and verdicts work on a narrow frame of the columns they need.
    marked = _learnable(edges, selected)
    pending = pl.col("pending_policies").fill_null(_EMPTY)
    trace = (
        pl.when(pending.list.len() > 0)
        .then(pending)
        .otherwise(pl.col("enforced_policies").fill_null(_EMPTY))
    )
    narrow = marked.select("__why_not", trace.alias("__trace"), "flows", "bytes")
    learnable = pl.col("__why_not").is_null()
    not_learnable = _by_reason(narrow.filter(~learnable), "__why_not")
    traces = narrow.filter(learnable).get_column("__trace").unique().to_list()
    verdicts = _verdicts(traces, settings, orders)
    marks = narrow.join(verdicts, on="__trace", how="left", maintain_order="left")
    excluded = learnable & pl.col("__excluded").is_not_null()
    flagged = _to_map(
        marks.filter(
            learnable & pl.col("__excluded").is_null() & pl.col("__flagged").is_not_null()
        ),
        "__flagged",
        "__policy",
    )
    excluded_map = _to_map(marks.filter(excluded), "__excluded", "__policy")
    kept = marked.filter(marks.select(learnable & ~excluded).to_series()).drop("__why_not")
    if decided_before is not None and kept.height:
        kept, existing = _apply_existing(kept, decided_before)
        excluded_map = dict(sorted({**excluded_map, **existing}.items()))
    exclusions = Exclusions(
        MappingProxyType(excluded_map), MappingProxyType(flagged), MappingProxyType(not_learnable)
    )
    return kept, exclusions


def _verdicts(
    traces: list[list[str]], settings: Settings, orders: Mapping[str, float | None]
) -> pl.DataFrame:
    cache: dict[str, PolicyHit | None] = {}
    rows: list[tuple[list[str], str | None, str | None, str | None]] = []
    for trace in traces:
        hits = []
        for text in trace:
            if text not in cache:
                cache[text] = parse_hit(text) if isinstance(text, str) else None
            hits.append(cache[text])
        v = decide(hits, [str(t) for t in trace], settings, orders)
        rows.append((trace, v.excluded, v.flagged, v.policy))
    schema: dict[str, pl.DataType] = {
        "__trace": pl.List(pl.String),
        "__excluded": pl.String(),
        "__flagged": pl.String(),
        "__policy": pl.String(),
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def _apply_existing(
    kept: pl.DataFrame, decided_before: DecidedBefore
) -> tuple[pl.DataFrame, dict[tuple[str, str], Tally]]:
    deciding = decided_before(kept)
    series = pl.Series("__existing", deciding, dtype=pl.String)
    if series.len() != kept.height:
        raise ValueError(f"decided_before returned {series.len()} values for {kept.height} edges")
    marks = kept.select("flows", "bytes").with_columns(
        series, pl.lit(EXISTING_POLICY).alias("__reason")
    )
    existing = _to_map(marks.filter(pl.col("__existing").is_not_null()), "__reason", "__existing")
    return kept.filter(series.is_null()), existing

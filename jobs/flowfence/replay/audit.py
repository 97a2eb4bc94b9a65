"""The staged-policy audit: replay allowed edges through a policy set, compute a report model.

Every edge the flow log recorded as allowed is evaluated where Calico would evaluate it: a
source-reported edge as egress at its source, a destination-reported edge as ingress at its
destination, only when that endpoint is a pod or host endpoint (forwarded and network-side
edges have no policy point of their own). Staged policies are previewed as enforced.

The report counts, per policy, the flows and bytes it allows, denies and passes (every hit of
a trace counts, so a Pass and the later decision are both recorded), and lists the edges that
would now be denied although the log shows them allowed, worst first. Two kinds of edges are
listed apart from the denials, and neither counts as one (`--fail-on-deny` ignores them):
- undetermined: the peer is a `net` whose address the log aggregated away (`pvt`, `pub`),
  and the policies treat addresses of its class differently (calico/address_class.py);
- decided earlier: the flow's own trace shows a tier the replayed set has no policies for,
  ordered before the denying tier, gave the final verdict (replay/earlier.py).
Pure: a Polars frame of edges and a PolicySet in, a frozen ReplayReport out; rendering lives
in `replay/render.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import polars as pl

from flowfence.calico import vector_eval
from flowfence.calico.evaluate import LOCAL_TYPES, PROFILE_TIER, Edge, Endpoint, Evaluator, Hit
from flowfence.calico.named_ports import NamedPorts
from flowfence.calico.policies import Direction, PolicySet
from flowfence.calico.verdict import EDGE_FIELDS
from flowfence.core.errors import ConfigError
from flowfence.flows.edges import sort_by_key
from flowfence.learn.exclude import BUILTIN_TIER_ORDERS
from flowfence.replay import earlier

_DIRECTION: dict[str, Direction] = {"src": "egress", "dst": "ingress"}
_ROW = "__edge"  # row number in the edges frame


@dataclass(frozen=True)
class PolicyTally:
    """Flows and bytes one policy (or one tier's default action, or a profile) decided."""

    tier: str
    policy: str
    end_of_tier: bool = False
    allowed_flows: int = 0
    allowed_bytes: int = 0
    denied_flows: int = 0
    denied_bytes: int = 0
    passed_flows: int = 0
    passed_bytes: int = 0
    edges: int = 0


@dataclass(frozen=True)
class DeniedEdge:
    """An edge the log shows allowed that the policy set would deny (`hit`), might deny
    (undetermined: `hit` empty, `possible` the outcomes its address class gets), or would deny
    but for the earlier tier whose hit in the logged trace, `decided_by`, decides it first."""

    direction: Direction
    reporter: str
    source: Endpoint
    dest: Endpoint
    dest_port: int | None
    proto: str | None
    dest_service: str | None
    flows: int
    bytes: int
    first_seen: datetime | None
    last_seen: datetime | None
    hit: str
    trace: tuple[str, ...]
    logged_policies: tuple[str, ...]
    possible: tuple[str, ...] = ()
    decided_by: str | None = None


@dataclass(frozen=True)
class ReplaySummary:
    edges: int
    allowed_edges: int
    evaluated_edges: int
    skipped_edges: int
    evaluated_flows: int
    evaluated_bytes: int
    denied_edges: int
    denied_flows: int
    denied_bytes: int
    undetermined_edges: int = 0
    undetermined_flows: int = 0
    undetermined_bytes: int = 0
    decided_earlier_edges: int = 0
    decided_earlier_flows: int = 0
    decided_earlier_bytes: int = 0


@dataclass(frozen=True)
class ReplayReport:
    tier: str | None
    summary: ReplaySummary
    policies: tuple[PolicyTally, ...]
    denied: tuple[DeniedEdge, ...]
    warnings: tuple[str, ...]
    undetermined: tuple[DeniedEdge, ...] = ()
    decided_earlier: tuple[DeniedEdge, ...] = ()

    @property
    def would_deny(self) -> bool:
        return bool(self.denied)


def _zero() -> dict[str, list[int]]:
    return {"allow": [0, 0], "deny": [0, 0], "pass": [0, 0]}


@dataclass
class _Counter:
    """Mutable accumulator for one PolicyTally: [flows, bytes] per hit action."""

    edges: int = 0
    counts: dict[str, list[int]] = field(default_factory=_zero)

    def add(self, action: str, flows: int, nbytes: int, edges: int = 1) -> None:
        self.edges += edges
        self.counts[action][0] += flows
        self.counts[action][1] += nbytes


def compute(
    edges: pl.DataFrame,
    policies: PolicySet,
    *,
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
    tier: str | None = None,
    tier_orders: Mapping[str, float | None] | None = None,
    named_ports: NamedPorts | None = None,
) -> ReplayReport:
    """Replay `edges` (EDGE_SCHEMA) through `policies`, staged policies previewed as enforced.

    tier: report only that tier's policies and the denials it decides (ConfigError if the
    policy set has no such tier). tier_orders: where tiers outside the set sit, for the
    decided-earlier check (`learn.exclude.known_tier_orders`; Calico's and the operator's
    tiers by default); the set's own Tier manifests fill in the rest. named_ports: the
    inventory's named ports (named_ports.py).
    """
    if tier is not None and policies.tier(tier) is None:
        known = ", ".join(t.name for t in policies.tiers)
        raise ConfigError(f"--tier {tier!r}: no such tier (known: {known})")
    evaluator = Evaluator(policies, namespaces=namespaces, staged=True, named_ports=named_ports)
    tallies: dict[tuple[str, str, bool], _Counter] = {}
    for t in evaluator.tiers:
        for p in t.policies:
            if tier is None or t.name == tier:
                tallies[(t.name, p.hit_name, False)] = _Counter()
    allowed = pl.col("action") == "allow"
    direction = pl.col("reporter").replace_strict(_DIRECTION, default=None)
    local_type = (
        pl.when(pl.col("reporter") == "src")
        .then(pl.col("source_type"))
        .otherwise(pl.col("dest_type"))
    )
    # Only what evaluation and the tallies read, not the policy traces (the widest columns):
    # every copy the evaluation makes of its frame is a copy of these. The listed edges are
    # taken whole from `edges` by row number afterwards.
    applies = (
        edges.lazy()
        .with_row_index(_ROW)
        .filter(allowed & direction.is_not_null() & local_type.is_in(sorted(LOCAL_TYPES)))
        .select(_ROW, *EDGE_FIELDS, "flows", "bytes", direction.alias("direction"))
        .collect()
    )
    # The evaluator's verdict per edge, computed per distinct part (vector_eval.py).
    ids, verdicts = vector_eval.verdicts(evaluator, applies)
    per_class = (
        applies.select("flows", "bytes")
        .with_columns(ids.alias("__class"))
        .group_by("__class")
        .agg(pl.len().alias("edges"), pl.col("flows").sum(), pl.col("bytes").sum())
        .sort("__class")
    )
    for cls, n, flows, nbytes in per_class.iter_rows():
        for hit in verdicts[cls].hits:
            if tier is None or hit.tier == tier:
                key = (hit.tier, hit.policy, hit.end_of_tier)
                tallies.setdefault(key, _Counter()).add(hit.action, int(flows), int(nbytes), n)
    flagged = [
        i
        for i, v in enumerate(verdicts)
        if v.undetermined
        or (v.action == "deny" and v.deciding and (tier is None or v.deciding.tier == tier))
    ]
    picked = applies.select(_ROW, "direction", ids.alias("__class")).filter(
        pl.col("__class").is_in(flagged)
    )
    # In key order, so that listed edges tied on every field the report sorts by keep one
    # order whatever order the edges came in (edges.aggregate(ordered=False)).
    marked = sort_by_key(
        edges[picked.get_column(_ROW)].with_columns(
            picked.get_column("direction"), picked.get_column("__class"), earlier.logged_trace()
        )
    )
    orders = {**(BUILTIN_TIER_ORDERS if tier_orders is None else tier_orders)}
    for t in policies.tiers:
        orders.setdefault(t.name, t.order)
    replayed = {t.name for t in policies.tiers if t.policies}
    own = {t.name: t.order for t in policies.tiers}
    logged = {
        tuple(trace): earlier.decision(trace, replayed, orders)
        for trace in marked.get_column(earlier.TRACE).unique().to_list()
    }
    denied, undetermined, decided_earlier = [], [], []
    for row in marked.iter_rows(named=True):
        verdict = verdicts[row["__class"]]
        edge = Edge.from_row(row)
        if verdict.undetermined:
            undetermined.append(
                _denied(row, edge, row["direction"], None, (), possible=verdict.possible)
            )
            continue
        hit = verdict.deciding
        assert hit is not None
        entry = _denied(row, edge, row["direction"], hit, verdict.trace)
        first = logged[tuple(row[earlier.TRACE])]
        if first is not None and first.before(hit.tier, own[hit.tier]):
            decided_earlier.append(replace(entry, decided_by=first.hit))
        else:
            denied.append(entry)
    allowed_edges = int(edges.select(allowed.sum()).item()) if edges.height else 0
    evaluated = applies.height
    flows_total = int(applies.get_column("flows").sum()) if evaluated else 0
    bytes_total = int(applies.get_column("bytes").sum()) if evaluated else 0
    for listed in (denied, undetermined, decided_earlier):
        listed.sort(key=_worst_first)
    order = {t.name: i for i, t in enumerate(policies.tiers)}
    rows = sorted(
        (_tally(key, counter) for key, counter in tallies.items()),
        key=lambda t: (t.tier == PROFILE_TIER, order.get(t.tier, len(order)), t.tier, t.policy,
                       t.end_of_tier),
    )  # fmt: skip
    summary = ReplaySummary(
        edges=edges.height,
        allowed_edges=allowed_edges,
        evaluated_edges=evaluated,
        skipped_edges=allowed_edges - evaluated,
        evaluated_flows=flows_total,
        evaluated_bytes=bytes_total,
        denied_edges=len(denied),
        denied_flows=sum(d.flows for d in denied),
        denied_bytes=sum(d.bytes for d in denied),
        undetermined_edges=len(undetermined),
        undetermined_flows=sum(d.flows for d in undetermined),
        undetermined_bytes=sum(d.bytes for d in undetermined),
        decided_earlier_edges=len(decided_earlier),
        decided_earlier_flows=sum(d.flows for d in decided_earlier),
        decided_earlier_bytes=sum(d.bytes for d in decided_earlier),
    )
    return ReplayReport(
        tier, summary, tuple(rows), tuple(denied), policies.warnings, tuple(undetermined),
        tuple(decided_earlier),
    )  # fmt: skip


def _tally(key: tuple[str, str, bool], counter: _Counter) -> PolicyTally:
    counts = counter.counts
    return PolicyTally(
        tier=key[0],
        policy=key[1],
        end_of_tier=key[2],
        allowed_flows=counts["allow"][0],
        allowed_bytes=counts["allow"][1],
        denied_flows=counts["deny"][0],
        denied_bytes=counts["deny"][1],
        passed_flows=counts["pass"][0],
        passed_bytes=counts["pass"][1],
        edges=counter.edges,
    )


def _denied(
    row: Mapping[str, object],
    edge: Edge,
    direction: Direction,
    hit: Hit | None,
    trace: tuple[str, ...],
    *,
    possible: tuple[str, ...] = (),
) -> DeniedEdge:
    """The listed edge: denied by `hit` with `trace`, or undetermined (no hit; `possible`, the
    outcomes its address class gets)."""
    service = None
    if edge.dest_service_name:
        service = f"{edge.dest_service_namespace or '-'}/{edge.dest_service_name}"
    logged = row.get("enforced_policies") or ()
    assert isinstance(logged, list | tuple)
    first, last = row.get("first_seen"), row.get("last_seen")
    return DeniedEdge(
        direction=direction,
        reporter=str(row["reporter"]),
        source=edge.source,
        dest=edge.dest,
        dest_port=edge.dest_port,
        proto=edge.proto,
        dest_service=service,
        flows=int(str(row["flows"])),
        bytes=int(str(row["bytes"])),
        first_seen=first if isinstance(first, datetime) else None,
        last_seen=last if isinstance(last, datetime) else None,
        hit="" if hit is None else str(hit),
        trace=trace,
        logged_policies=tuple(str(p) for p in logged),
        possible=possible,
    )


def _endpoint_key(e: Endpoint) -> tuple[str, str, str, str, tuple[str, ...]]:
    return (e.type, e.namespace or "", e.name or "", e.ip or "", e.labels)


def _worst_first(d: DeniedEdge) -> tuple[object, ...]:
    return (
        -d.flows,
        -d.bytes,
        d.direction,
        _endpoint_key(d.source),
        _endpoint_key(d.dest),
        d.dest_port if d.dest_port is not None else -1,
        d.proto or "",
        d.dest_service or "",
        d.hit,
    )

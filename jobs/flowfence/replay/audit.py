"""The staged-policy audit: replay allowed edges through a policy set, compute a report model.

Every edge the flow log recorded as allowed is evaluated where Calico would evaluate it: a
source-reported edge as egress at its source, a destination-reported edge as ingress at its
destination, only when that endpoint is a pod or host endpoint (forwarded and network-side
edges have no policy point of their own). Staged policies are previewed as enforced.

The report counts, per policy, the flows and bytes it allows, denies and passes (every hit of
a trace counts, so a Pass and the later decision are both recorded), and lists the edges that
would now be denied although the log shows them allowed, worst first. Pure: a Polars frame of
edges and a PolicySet in, a frozen ReplayReport out; rendering lives in `replay_render.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from flowfence.calico.evaluate import PROFILE_TIER, Edge, Endpoint, Evaluator, Hit
from flowfence.calico.policies import Direction, PolicySet
from flowfence.core.errors import ConfigError

_DIRECTION: dict[str, Direction] = {"src": "egress", "dst": "ingress"}


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
    """An edge the log shows allowed that the policy set would deny."""

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


@dataclass(frozen=True)
class ReplayReport:
    tier: str | None
    summary: ReplaySummary
    policies: tuple[PolicyTally, ...]
    denied: tuple[DeniedEdge, ...]
    warnings: tuple[str, ...]

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

    def add(self, action: str, flows: int, nbytes: int) -> None:
        self.edges += 1
        self.counts[action][0] += flows
        self.counts[action][1] += nbytes


def compute(
    edges: pl.DataFrame,
    policies: PolicySet,
    *,
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
    tier: str | None = None,
) -> ReplayReport:
    """Replay `edges` (EDGE_SCHEMA) through `policies`, staged policies previewed as enforced.

    tier: report only that tier's policies and the denials it decides (ConfigError if the
    policy set has no such tier).
    """
    if tier is not None and policies.tier(tier) is None:
        known = ", ".join(t.name for t in policies.tiers)
        raise ConfigError(f"--tier {tier!r}: no such tier (known: {known})")
    evaluator = Evaluator(policies, namespaces=namespaces, staged=True)
    tallies: dict[tuple[str, str, bool], _Counter] = {}
    for t in evaluator.tiers:
        for p in t.policies:
            if tier is None or t.name == tier:
                tallies[(t.name, p.hit_name, False)] = _Counter()
    denied: list[DeniedEdge] = []
    allowed_edges = evaluated = flows_total = bytes_total = 0
    for row in edges.filter(pl.col("action") == "allow").iter_rows(named=True):
        allowed_edges += 1
        direction = _DIRECTION.get(row["reporter"])
        edge = Edge.from_row(row)
        if direction is None or not evaluator.applies(edge, direction):
            continue
        evaluated += 1
        flows, nbytes = int(row["flows"]), int(row["bytes"])
        flows_total += flows
        bytes_total += nbytes
        verdict = evaluator.evaluate(edge, direction)
        for hit in verdict.hits:
            if tier is None or hit.tier == tier:
                key = (hit.tier, hit.policy, hit.end_of_tier)
                tallies.setdefault(key, _Counter()).add(hit.action, flows, nbytes)
        deciding = verdict.deciding
        if verdict.action == "deny" and deciding and (tier is None or deciding.tier == tier):
            denied.append(_denied(row, edge, direction, deciding, verdict.trace))
    denied.sort(key=_worst_first)
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
    )
    return ReplayReport(tier, summary, tuple(rows), tuple(denied), policies.warnings)


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
    hit: Hit,
    trace: tuple[str, ...],
) -> DeniedEdge:
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
        hit=str(hit),
        trace=trace,
        logged_policies=tuple(str(p) for p in logged),
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

"""Drift: what an accepted (frozen) policy no longer covers of the traffic flowfence learns.

Two ways, for the two places the frozen rules can come from:

- `drift` compares rule models: which learned rules no accepted rule covers (same direction and
  protocol, ports within, the peer's namespaces, network set, service or domains within, every
  address of the learned nets inside the accepted nets and outside their holes);
- `uncovered` evaluates the learnable edges against the frozen policy's model (a PolicySet
  built from its documents, or the enforced policy found among `--existing-policies`, see
  `enforced_in_cluster`) with flowfence's Calico evaluator: an edge is drift when the policy
  selects its endpoint and no rule matches.

Both are conservative: a learned rule only partly covered is drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl

from flowfence.calico import cidr
from flowfence.calico.evaluate import Edge, Evaluator
from flowfence.calico.policies import PolicyKind, PolicySet, Tier
from flowfence.learn.model import Rule


def _within(inner: cidr.Network, outer: cidr.Network) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _nets_cover(accepted: Rule, learned: Rule) -> bool:
    """Every address the learned rule admits is admitted by the accepted rule."""
    if not learned.nets or not accepted.nets:
        return False
    a_nets = [cidr.network(n) for n in accepted.nets]
    a_not = [cidr.network(n) for n in accepted.not_nets]
    l_not = [cidr.network(n) for n in learned.not_nets]
    for net in map(cidr.network, learned.nets):
        if not any(_within(net, a) for a in a_nets):
            return False
        for hole in a_not:
            # Two CIDRs overlap only when one holds the other; the overlap must be a hole the
            # learned rule has too, or the accepted rule denies part of what was learned.
            overlap = hole if _within(hole, net) else net if _within(net, hole) else None
            if overlap is not None and not any(_within(overlap, x) for x in l_not):
                return False
    return True


def _ports_cover(accepted: Rule, learned: Rule) -> bool:
    if not accepted.ports:
        return True
    if not learned.ports:
        return False
    return all(any(a.lo <= p.lo and p.hi <= a.hi for a in accepted.ports) for p in learned.ports)


def covers(accepted: Rule, learned: Rule) -> bool:
    """Whether the accepted rule admits every flow the learned rule was built from."""
    if accepted.direction != learned.direction or accepted.protocol != learned.protocol:
        return False
    if not _ports_cover(accepted, learned):
        return False
    if learned.scope == "Namespace":
        return accepted.scope == "Namespace" and set(learned.namespaces) <= set(accepted.namespaces)
    if learned.scope == "NetworkSet":
        a, b = accepted.netset, learned.netset
        return a is not None and b is not None and (a.namespace, a.name) == (b.namespace, b.name)
    if learned.scope == "Service":
        return accepted.service is not None and accepted.service == learned.service
    if learned.scope == "Domains" and not learned.nets:
        return accepted.scope == "Domains" and set(learned.domains) <= set(accepted.domains)
    return _nets_cover(accepted, learned)


def drift(accepted: Iterable[Rule], learned: Iterable[Rule]) -> tuple[Rule, ...]:
    """The learned rules no accepted rule covers: new traffic the frozen policy would deny."""
    frozen = tuple(accepted)
    return tuple(r for r in learned if not any(covers(a, r) for a in frozen))


def enforced_in_cluster(existing: PolicySet | None, tier: str) -> dict[str, PolicySet]:
    """Namespaces with an enforced Calico NetworkPolicy in our tier among --existing-policies,
    each with a PolicySet holding just that tier and policy (the drift base)."""
    if existing is None or (found := existing.tier(tier)) is None:
        return {}
    enforced = [p for p in found.policies if p.kind == PolicyKind.NP and p.namespace]
    out: dict[str, PolicySet] = {}
    for ns in sorted({str(p.namespace) for p in enforced}):
        mine = tuple(p for p in enforced if p.namespace == ns)
        out[ns] = PolicySet(tiers=(Tier(found.name, found.order, found.default_action, mine),))
    return out


def uncovered(
    policies: PolicySet,
    edges: pl.DataFrame,
    tier: str,
    *,
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
) -> pl.DataFrame:
    """The learnable edges (EDGE_SCHEMA + `direction`) that a frozen policy does not cover.

    `policies` hold the accepted or enforced policy and its Tier; each edge is evaluated as
    Calico would in its direction, and it is drift when the policy selected its endpoint but no
    rule matched (the end of our tier). A direction the policy does not restrict (not in its
    `types`) is not drift: that traffic stays allowed.
    """
    evaluator = Evaluator(policies, namespaces=namespaces, staged=True)
    keep: list[bool] = []
    for row in edges.iter_rows(named=True):
        edge, direction = Edge.from_row(row), row["direction"]
        if not evaluator.applies(edge, direction):
            keep.append(False)
            continue
        ours = next((h for h in evaluator.evaluate(edge, direction).hits if h.tier == tier), None)
        keep.append(ours is not None and ours.end_of_tier)
    return edges.filter(pl.Series(keep, dtype=pl.Boolean())) if edges.height else edges

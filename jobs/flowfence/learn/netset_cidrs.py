"""Network-set peers narrowed to the sets' own CIDRs, for the `kubernetes` flavor.

A Kubernetes NetworkPolicy cannot select a Calico (Global)NetworkSet, so without more
knowledge its rule is widened to every address outside the cluster (render/kubernetes.py).
When `--existing-policies` holds the set itself, its CIDRs are exactly the addresses the
flows went to, and the rule names them instead. A set the policy folder does not hold keeps
the widened rule (the report's Risks name it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from flowfence.calico import cidr
from flowfence.calico.policies import NetworkSet
from flowfence.learn.model import Recommendation, Rule, sort_rules

SetKey = tuple[str | None, str]  # (namespace or None for a GlobalNetworkSet, name)


def set_cidrs(network_sets: Iterable[NetworkSet]) -> dict[SetKey, tuple[str, ...]]:
    """Each set's CIDRs, collapsed (a set without CIDRs is left out: nothing to narrow to)."""
    out: dict[SetKey, tuple[str, ...]] = {}
    for s in network_sets:
        nets = cidr.collapse(str(n) for n in s.nets)
        if nets:
            out[(s.namespace, s.name)] = nets
    return out


def _narrow(rule: Rule, sets: Mapping[SetKey, tuple[str, ...]]) -> Rule:
    ref = rule.netset
    if ref is None or (ref.namespace, ref.name) not in sets:
        return rule
    nets = sets[(ref.namespace, ref.name)]
    named = f"network set {ref.name} named by its CIDRs from --existing-policies"
    note = "; ".join(n for n in (rule.note, named) if n)
    return replace(rule, netset=replace(ref, cidrs=nets), note=note)


def narrow(
    recs: Mapping[str, Recommendation], sets: Mapping[SetKey, tuple[str, ...]]
) -> dict[str, Recommendation]:
    """`recs` with every network-set rule whose set is known carrying the set's CIDRs."""
    if not sets:
        return dict(recs)
    return {
        ns: replace(
            rec,
            egress=sort_rules(_narrow(r, sets) for r in rec.egress),
            ingress=sort_rules(_narrow(r, sets) for r in rec.ingress),
        )
        for ns, rec in recs.items()
    }

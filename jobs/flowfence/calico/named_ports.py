"""Named ports (`port: http`) resolved at a flow's destination from the inventory.

Kubernetes resolves a named port in an ingress rule against the policy's selected pods and in
an egress rule against the peer pods; Calico resolves a named destination port against the
destination endpoint. Both are the flow's destination, so a named port matches a flow when
some inventory pod that fits the destination (namespace, aggregated name, labels; `PodGroup.fits`)
has a container port of that name and the flow's protocol whose number is the flow's port.
Without an inventory, or at a destination that is not a pod, a named port matches nothing;
`unresolved_notes` says how many rules that leaves unmatchable, so a user sees why.

Named ports in `notPorts` stay unresolved (such a rule never matches, policy_rules.py).
"""

from __future__ import annotations

from collections import defaultdict

from flowfence.calico.inventory import Inventory, NamedPort, PodGroup
from flowfence.calico.policies import PolicySet
from flowfence.calico.policy_rules import PortMatch, Rule, flow_protocol
from flowfence.calico.verdict import Edge, Endpoint

MAX_LISTED = 5


class NamedPorts:
    """Resolves named ports per destination endpoint; `NamedPorts(None)`: nothing resolves."""

    def __init__(self, inventory: Inventory | None) -> None:
        self.inventory = inventory
        self._by_namespace: dict[str, list[PodGroup]] = defaultdict(list)
        for group in inventory.pods if inventory is not None else ():
            self._by_namespace[group.namespace].append(group)
        self._resolved: dict[Endpoint, frozenset[NamedPort]] = {}

    def matches(self, ports: PortMatch, edge: Edge | None) -> bool:
        """Whether the flow's destination port is in `ports`, by number or by a name the
        destination's pods give that number (for the flow's protocol)."""
        port = edge.dest_port if edge is not None else None
        if ports.matches(port):
            return True
        if not ports.named or edge is None or port is None:
            return False
        proto = flow_protocol(edge.proto)
        wanted = frozenset(ports.named)
        return any(
            p.port == port and p.protocol == proto and p.name in wanted for p in self.at(edge.dest)
        )

    def at(self, endpoint: Endpoint) -> frozenset[NamedPort]:
        """The named ports of every inventory pod that fits `endpoint` (none unless a pod)."""
        found = self._resolved.get(endpoint)
        if found is None:
            found = frozenset()
            if endpoint.type == "wep" and endpoint.namespace is not None:
                found = frozenset(
                    p
                    for g in self._by_namespace.get(endpoint.namespace, ())
                    if g.fits(endpoint.name, endpoint.labels)
                    for p in g.ports
                )
            self._resolved[endpoint] = found
        return found

    def signature(self, endpoint: Endpoint) -> tuple[NamedPort, ...]:
        """What matching reads of an endpoint (edge classes must not mix endpoints whose
        named ports differ)."""
        return tuple(sorted(self.at(endpoint))) if self.inventory is not None else ()


def _named_rules(policies: PolicySet) -> list[tuple[str, str, Rule, tuple[str, ...]]]:
    found = []
    for policy in policies.policies():
        for direction in ("ingress", "egress"):
            for rule in policy.rules(direction):
                names = tuple(
                    n
                    for entity in (rule.source, rule.destination)
                    for match in (entity.ports, entity.not_ports)
                    if match is not None
                    for n in match.named
                )
                if names:
                    found.append((policy.hit_name, direction, rule, names))
    return found


def unresolved_notes(policies: PolicySet, inventory: Inventory | None) -> tuple[str, ...]:
    """One warning counting the rules whose named ports cannot resolve: all of them without an
    inventory; with one, those whose names (for the rule's protocol) no inventory pod has, and
    any in notPorts or a source (flow logs carry no source port)."""
    offered = (
        {(p.name, p.protocol) for g in inventory.pods for p in g.ports} if inventory else set()
    )
    unresolved: list[str] = []
    for hit_name, direction, rule, names in _named_rules(policies):
        in_dest = rule.destination.ports.named if rule.destination.ports is not None else ()
        bad = [n for n in names if n not in in_dest or (n, rule.protocol) not in offered]
        if bad:
            unresolved.append(f"{hit_name} {direction} rule {rule.index} ({', '.join(bad)})")
    if not unresolved:
        return ()
    listed = "; ".join(unresolved[:MAX_LISTED])
    more = f"; and {len(unresolved) - MAX_LISTED} more" if len(unresolved) > MAX_LISTED else ""
    why = (
        "no inventory pod has a container port of that name and protocol"
        if inventory is not None
        else "give --inventory (`kubectl get pods -A -o json`) to resolve them"
    )
    return (
        f"{len(unresolved)} rules with named ports that cannot be resolved match no traffic "
        f"by those ports ({why}): {listed}{more}",
    )

"""Calico's policy evaluation for one distinct edge in one direction.

Egress is evaluated at the source endpoint, ingress at the destination, and only where that
endpoint is a workload (`wep`) or host endpoint (`hep`). Tiers run by order (ties by name);
inside a tier, the policies that select the endpoint for that direction run by order then
name; the first matching Allow or Deny rule decides, Pass jumps to the next tier, Log goes on.
A tier where some policy selected the endpoint but none decided applies its defaultAction
(hit rule index -1, naming the first selecting policy as Calico's end-of-tier hit does); a tier
where no policy selected it is skipped. When every tier passed, the profile allows: the
namespace profile `kns.<ns>` for a pod, `projectcalico-default-allow` for a host endpoint.

What the flow log tells us about each side, and so what a rule can match:
- pod labels are the flow's labels (for aggregated flows, those every pod shares) plus
  `projectcalico.org/namespace` and `projectcalico.org/orchestrator: k8s`; the service account
  is known only if the flow labels carry `projectcalico.org/serviceaccount` (and `pcsa.*` for
  its labels), otherwise serviceAccounts rules do not match;
- a network-set peer (`ns`) has the set's labels from the model (if loaded) plus the flow's;
- a `net` peer has its IP: it matches `nets`, and a selector when any (Global)NetworkSet that
  contains the IP is selected (Calico matches selectors by the IP sets of all selected sets);
- pod and network-set IPs are aggregated away, so `nets` never match them (`notNets` do);
- a `net` peer without an address is the class of addresses its label (`pvt`, `pub`) stands
  for, evaluated at one address per interval its rules' CIDRs cannot split (address_class.py):
  the verdict they share, or undetermined;
- only the destination port is known: source `ports` never match, source `notPorts` do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from flowfence.calico import address_class
from flowfence.calico.address_class import IPAddress, overlaps, parse_ip, within
from flowfence.calico.named_ports import NamedPorts
from flowfence.calico.policies import Direction, Policy, PolicySet, Tier
from flowfence.calico.policy_rules import EntityRule, IPNetwork, Rule, flow_protocol
from flowfence.calico.selector import NAMESPACE_LABEL, Selector
from flowfence.calico.verdict import PROFILE_TIER, Edge, Endpoint, Hit, HitAction, Verdict

__all__ = [
    "PROFILE_TIER",
    "Edge",
    "Endpoint",
    "Evaluator",
    "Hit",
    "HitAction",
    "Verdict",
    "namespace_labels",
    "parse_ip",
    "parse_labels",
]

ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
SERVICE_ACCOUNT_PREFIX = "pcsa."
HEP_PROFILE = "pro:projectcalico-default-allow"
LOCAL_TYPES = frozenset({"wep", "hep"})


@dataclass(frozen=True)
class _Entity:
    """One identity a side may present: namespace (None if global) and labels."""

    namespace: str | None
    labels: Mapping[str, str]


@dataclass(frozen=True)
class _Side:
    candidates: tuple[_Entity, ...]
    ip: IPAddress | None = None
    set_nets: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class _Match:
    """What rule matching needs from one edge, resolved once per evaluation."""

    edge: Edge
    proto: int | None
    src: _Side
    dst: _Side


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key:
            out[key] = value
    return out


def namespace_labels(name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Labels a Namespace presents to namespaceSelectors (Calico adds the name labels)."""
    return {**(extra or {}), "projectcalico.org/name": name, "kubernetes.io/metadata.name": name}


class Evaluator:
    """Evaluates edges against one PolicySet; caches per endpoint, compiles nothing per edge.

    staged: preview staged policies as enforced (Set/Learn; Delete removes the enforced policy
    of the same name); False evaluates the enforced policies only. namespaces: labels per
    namespace (from `load_namespaces`), merged over any Namespace manifests in the set.
    named_ports: resolves named ports at a flow's destination (none resolve without it).
    """

    def __init__(
        self,
        policies: PolicySet,
        *,
        namespaces: Mapping[str, Mapping[str, str]] | None = None,
        staged: bool = True,
        named_ports: NamedPorts | None = None,
    ) -> None:
        self.policies = policies
        self._ports = named_ports or NamedPorts(None)
        self.tiers: tuple[Tier, ...] = policies.effective(staged=staged)
        self._ns_extra = {**policies.namespaces, **(namespaces or {})}
        self._ns_labels: dict[str, dict[str, str]] = {}
        self._sides: dict[Endpoint, _Side] = {}
        self._selecting: dict[
            tuple[str, str | None, tuple[str, ...], Direction],
            tuple[tuple[Tier, tuple[Policy, ...]], ...],
        ] = {}
        self._verdicts: dict[tuple[Edge, Direction, float | None], Verdict] = {}

    @staticmethod
    def applies(edge: Edge, direction: Direction) -> bool:
        return edge.local(direction).type in LOCAL_TYPES

    def evaluate(
        self, edge: Edge, direction: Direction, *, before_order: float | None = None
    ) -> Verdict:
        """The verdict for `edge` in `direction`; with before_order, only tiers ordered below it.

        Raises ValueError when the local endpoint is not a wep/hep (no policy applies there).
        """
        if not self.applies(edge, direction):
            raise ValueError(f"no {direction} policy applies at a {edge.local(direction).type!r}")
        key = (edge, direction, before_order)
        verdict = self._verdicts.get(key)
        if verdict is None:
            remote = edge.dest if direction == "egress" else edge.source
            spans = address_class.peer_class(remote.type, remote.name, remote.ip)
            if spans is None:
                verdict = self._evaluate(edge, direction, before_order)
            else:
                selecting = self._selected(edge.local(direction), direction)
                cuts = address_class.cuts(selecting, direction, self.policies.network_sets)
                at = address_class.representatives(spans, cuts)
                verdict = address_class.class_verdict(
                    at, lambda ip: self.evaluate(_at(edge, direction, ip), direction,
                                                 before_order=before_order),
                )  # fmt: skip
            self._verdicts[key] = verdict
        return verdict

    def _evaluate(self, edge: Edge, direction: Direction, before: float | None) -> Verdict:
        hits: list[Hit] = []
        match = _Match(
            edge, flow_protocol(edge.proto), self._side(edge.source), self._side(edge.dest)
        )
        for tier, selecting in self._selected(edge.local(direction), direction):
            if before is not None and (tier.order is None or tier.order >= before):
                return Verdict(direction, None, tuple(hits))
            outcome = self._run_tier(tier, selecting, direction, match, len(hits))
            hits.append(outcome)
            if outcome.action != "pass":
                return Verdict(direction, outcome.action, tuple(hits))
        if before is not None:
            return Verdict(direction, None, tuple(hits))
        local = edge.local(direction)
        profile = f"pro:kns.{local.namespace}" if local.type == "wep" else HEP_PROFILE
        hits.append(Hit(len(hits), PROFILE_TIER, profile, "allow", 0))
        return Verdict(direction, "allow", tuple(hits))

    def _run_tier(
        self,
        tier: Tier,
        selecting: tuple[Policy, ...],
        direction: Direction,
        match: _Match,
        index: int,
    ) -> Hit:
        for policy in selecting:
            for rule in policy.rules(direction):
                if rule.action == "Log" or not self._rule_matches(rule, policy, match):
                    continue
                action: HitAction = (
                    "allow"
                    if rule.action == "Allow"
                    else ("deny" if rule.action == "Deny" else "pass")
                )
                return Hit(index, tier.name, policy.hit_name, action, rule.index)
        end: HitAction = "deny" if tier.default_action == "Deny" else "pass"
        return Hit(index, tier.name, selecting[0].hit_name, end, -1)

    # -- which policies apply to the local endpoint ------------------------------------------

    def _selected(
        self, endpoint: Endpoint, direction: Direction
    ) -> tuple[tuple[Tier, tuple[Policy, ...]], ...]:
        # Name and IP do not change which policies select a pod or host; labels do.
        key = (endpoint.type, endpoint.namespace, endpoint.labels, direction)
        found = self._selecting.get(key)
        if found is None:
            entity = self._side(endpoint).candidates[0]
            is_wep = endpoint.type == "wep"
            found = tuple(
                (tier, chosen)
                for tier in self.tiers
                if (
                    chosen := tuple(
                        p
                        for p in tier.policies
                        if direction in p.types and self._selects(p, entity, is_wep)
                    )
                )
            )
            self._selecting[key] = found
        return found

    def _selects(self, policy: Policy, entity: _Entity, is_wep: bool) -> bool:
        if policy.kind.namespaced and (not is_wep or entity.namespace != policy.namespace):
            return False
        if not policy.selector.matches(entity.labels):
            return False
        if policy.namespace_selector is not None and not self._ns_match(
            policy.namespace_selector, entity
        ):
            return False
        sa = policy.service_account_selector
        return sa is None or _service_account_match(frozenset(), sa, entity)

    # -- rule matching ------------------------------------------------------------------------

    def _rule_matches(self, rule: Rule, policy: Policy, match: _Match) -> bool:
        if rule.unmatchable:
            return False
        proto, src, dst = match.proto, match.src, match.dst
        if rule.protocol is not None and proto != rule.protocol:
            return False
        if rule.not_protocol is not None and proto == rule.not_protocol:
            return False
        if rule.ip_version is not None and any(
            side.ip is not None and side.ip.version != rule.ip_version for side in (src, dst)
        ):
            return False
        return self._entity_matches(rule.source, src, policy, None) and self._entity_matches(
            rule.destination, dst, policy, match.edge
        )

    def _entity_matches(
        self, rule: EntityRule, side: _Side, policy: Policy, dest_edge: Edge | None
    ) -> bool:
        port = dest_edge.dest_port if dest_edge is not None else None
        if rule.ports is not None and not self._ports.matches(rule.ports, dest_edge):
            return False
        if rule.not_ports is not None and rule.not_ports.matches(port):
            return False
        if not self._side_matches(rule, side, policy):
            return False
        if rule.services is not None and (
            dest_edge is None
            or dest_edge.dest_service_name != rule.services.name
            or dest_edge.dest_service_namespace != rule.services.namespace
        ):
            return False
        return not rule.domains or (
            dest_edge is not None
            and any(p.matches(d) for p in rule.domains for d in dest_edge.dest_domains)
        )

    def _side_matches(self, rule: EntityRule, side: _Side, policy: Policy) -> bool:
        """The part of an entity rule that reads only the side (not ports, services, domains)."""
        if rule.nets and not within(side.ip, side.set_nets, rule.nets):
            return False
        if rule.not_nets and overlaps(side.ip, side.set_nets, rule.not_nets):
            return False
        if rule.selects_endpoints and not any(
            self._positive(rule, c, policy) for c in side.candidates
        ):
            return False
        return rule.not_selector is None or not any(
            rule.not_selector.matches(c.labels) for c in side.candidates
        )

    def signature(self, endpoint: Endpoint) -> tuple[object, ...]:
        """All that evaluation reads of `endpoint`: its kind, IP version, named ports, which
        policies select it and which entity rules its side matches. Edges equal but for
        endpoints of equal signatures get the same verdict, except the profile hit, which names
        the local namespace (edge_classes.py evaluates one edge per class)."""
        side = self._side(endpoint)
        is_wep = endpoint.type == "wep"
        entity = side.candidates[0] if side.candidates else None
        out: list[object] = [endpoint.type, None if side.ip is None else side.ip.version]
        out.append(self._ports.signature(endpoint))
        for tier in self.tiers:
            for policy in tier.policies:
                out.append(entity is not None and self._selects(policy, entity, is_wep))
                for direction in ("ingress", "egress"):
                    for rule in policy.rules(direction):
                        out.append(self._side_matches(rule.source, side, policy))
                        out.append(self._side_matches(rule.destination, side, policy))
        return tuple(out)

    def _positive(self, rule: EntityRule, entity: _Entity, policy: Policy) -> bool:
        # Calico scopes a rule's selector to the policy's namespace unless a namespaceSelector
        # is given (updateprocessors/rules.go); notSelector stays unscoped.
        if rule.namespace_selector is not None:
            if not self._ns_match(rule.namespace_selector, entity):
                return False
        elif policy.kind.namespaced and entity.namespace != policy.namespace:
            return False
        if rule.selector is not None and not rule.selector.matches(entity.labels):
            return False
        sa = rule.service_accounts
        return sa is None or _service_account_match(sa.names, sa.selector, entity)

    def _ns_match(self, selector: Selector, entity: _Entity) -> bool:
        if selector.uses_global:
            # global() is "no projectcalico.org/namespace label": the entity's own labels.
            return selector.matches(entity.labels)
        # Calico rewrites namespace selectors onto pcns.* labels, which only namespaced
        # entities carry (and turns all() into has(projectcalico.org/namespace)).
        if entity.namespace is None:
            return False
        labels = self._ns_labels.get(entity.namespace)
        if labels is None:
            extra = self._ns_extra.get(entity.namespace)
            labels = self._ns_labels[entity.namespace] = namespace_labels(entity.namespace, extra)
        return selector.matches(labels)

    # -- what each side of the flow presents --------------------------------------------------

    def _side(self, endpoint: Endpoint) -> _Side:
        side = self._sides.get(endpoint)
        if side is None:
            side = self._sides[endpoint] = self._resolve(endpoint)
        return side

    def _resolve(self, endpoint: Endpoint) -> _Side:
        flow_labels = parse_labels(endpoint.labels)
        ns = endpoint.namespace
        if endpoint.type in LOCAL_TYPES:
            labels = dict(flow_labels)
            if endpoint.type == "wep" and ns is not None:
                labels[NAMESPACE_LABEL] = ns
                labels[ORCHESTRATOR_LABEL] = "k8s"
            return _Side((_Entity(ns if endpoint.type == "wep" else None, labels),))
        if endpoint.type == "ns":
            known = self.policies.network_set(ns, endpoint.name) if endpoint.name else None
            labels = {**(known.label_map() if known else {}), **flow_labels}
            if ns is not None:
                labels[NAMESPACE_LABEL] = ns
            return _Side((_Entity(ns, labels),), set_nets=known.nets if known else ())
        ip = parse_ip(endpoint.ip)
        if ip is None:
            return _Side(())
        containing = tuple(
            _Entity(
                s.namespace,
                {**s.label_map(), **({NAMESPACE_LABEL: s.namespace} if s.namespace else {})},
            )
            for s in self.policies.network_sets
            if s.contains(ip)
        )
        return _Side(containing, ip=ip)


def _service_account_match(
    names: frozenset[str], selector: Selector | None, entity: _Entity
) -> bool:
    account = entity.labels.get(SERVICE_ACCOUNT_LABEL)
    if account is None:
        return False
    if names and account not in names:
        return False
    if selector is None:
        return True
    sa_labels = {
        k[len(SERVICE_ACCOUNT_PREFIX) :]: v
        for k, v in entity.labels.items()
        if k.startswith(SERVICE_ACCOUNT_PREFIX)
    }
    return selector.matches(sa_labels)


def _at(edge: Edge, direction: Direction, ip: IPAddress) -> Edge:
    """`edge` with its remote `net` peer at `ip`."""
    if direction == "egress":
        return replace(edge, dest=replace(edge.dest, ip=str(ip)))
    return replace(edge, source=replace(edge.source, ip=str(ip)))

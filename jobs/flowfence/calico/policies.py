"""The Calico policy model: tiers, policies, network sets, as one frozen PolicySet.

Built by `policy_docs.py` from manifests (`load_policies`: a folder of YAML, multi-document
files, `kind: List`) or from in-memory documents (`policy_set`, for the engine's own output).
The rule model lives in `policy_rules.py` and the Kubernetes translation in `policy_k8s.py`.

Staged policies are kept in the set as they are; `PolicySet.effective(staged=...)` gives the
tiers as Calico evaluates them: without staged policies (what the dataplane enforces today), or
previewing them (staged `Set`/`Learn` replace the enforced policy of the same name, `Delete`
removes it, `Ignore` is skipped), which is what the pending-policy trace of a flow log shows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, TypeAlias

from flowfence.calico.policy_rules import IPNetwork, Rule
from flowfence.calico.selector import Selector

Direction: TypeAlias = Literal["ingress", "egress"]
DefaultAction: TypeAlias = Literal["Deny", "Pass"]
StagedAction: TypeAlias = Literal["Set", "Learn", "Ignore", "Delete"]
STAGED_ACTIONS: tuple[StagedAction, ...] = ("Set", "Learn", "Ignore", "Delete")

DEFAULT_TIER = "default"


class PolicyKind(StrEnum):
    """Policy kinds by the short name Calico 3.32 writes in policy-hit strings."""

    NP = "np"
    GNP = "gnp"
    SNP = "snp"
    SGNP = "sgnp"
    KNP = "knp"
    SKNP = "sknp"

    @property
    def staged(self) -> bool:
        return self in (PolicyKind.SNP, PolicyKind.SGNP, PolicyKind.SKNP)

    @property
    def enforced(self) -> PolicyKind:
        """The kind a staged policy previews (itself for enforced kinds)."""
        return _ENFORCED.get(self, self)

    @property
    def namespaced(self) -> bool:
        return self not in (PolicyKind.GNP, PolicyKind.SGNP)


_ENFORCED = {PolicyKind.SNP: PolicyKind.NP, PolicyKind.SGNP: PolicyKind.GNP}
_ENFORCED[PolicyKind.SKNP] = PolicyKind.KNP


def order_key(order: float | None, name: str) -> tuple[bool, float, str]:
    """Lowest order first, no order last, ties by name: Calico's tier and policy ordering."""
    return (order is None, 0.0 if order is None else order, name)


@dataclass(frozen=True)
class Policy:
    kind: PolicyKind
    name: str
    namespace: str | None
    tier: str
    order: float | None
    selector: Selector
    types: frozenset[Direction]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    namespace_selector: Selector | None = None
    service_account_selector: Selector | None = None
    staged_action: StagedAction | None = None
    origin: str = ""

    @property
    def hit_name(self) -> str:
        """The name part of a Calico 3.32 policy-hit string, e.g. `np:ns1/policy1`."""
        if self.namespace is None:
            return f"{self.kind.value}:{self.name}"
        return f"{self.kind.value}:{self.namespace}/{self.name}"

    @property
    def identity(self) -> tuple[PolicyKind, str | None, str]:
        """What a staged policy and the enforced policy it previews have in common."""
        return (self.kind.enforced, self.namespace, self.name)

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.ingress if direction == "ingress" else self.egress

    @property
    def sort_key(self) -> tuple[bool, float, str, str, str]:
        return (*order_key(self.order, self.name), self.namespace or "", self.kind.value)


@dataclass(frozen=True)
class Tier:
    name: str
    order: float | None
    default_action: DefaultAction = "Deny"
    policies: tuple[Policy, ...] = ()

    @property
    def sort_key(self) -> tuple[bool, float, str]:
        return order_key(self.order, self.name)


# Built-in tiers of Calico 3.32 (api/pkg/apis/projectcalico/v3/tier.go, CRD CEL rules).
BUILTIN_TIERS: tuple[Tier, ...] = (
    Tier("kube-admin", 1000.0, "Pass"),
    Tier(DEFAULT_TIER, 1_000_000.0, "Deny"),
    Tier("kube-baseline", 10_000_000.0, "Pass"),
)

# The tier the Tigera operator installs for Calico's own components: `allow-tigera` until the
# operator renamed it `calico-system` (tigera/operator#4438, commit 5263316239f5), order 100
# in both (tigera/operator, pkg/render/tiers/tiers.go, `defaultTierOrder = 100.0`, at
# 40788b9b6bef9d94e77b2e0d7a5eed7e17e2364c and at 5263316239f5's parent; no defaultAction,
# so Calico's Deny). Flow logs name it in every trace it decides, while exported policy folders
# rarely define it: known out of the box, like the built-in tiers, overridable by `tierOrders`.
# Before the operator (Calico Enterprise 2.x, then "CNX") the same tier was `allow-cnx`, order
# 100 ("installs the `default` and `allow-cnx` tiers", table "allow-cnx | 100": Tigera's docs
# security/aws-security-group-integration/tier-management.md, as kept in the public repository
# dimitri-nicolo/calico, master/); 2019 flow logs in tests/calico_records name it.
OPERATOR_TIERS: tuple[Tier, ...] = (
    Tier("allow-cnx", 100.0, "Deny"),
    Tier("allow-tigera", 100.0, "Deny"),
    Tier("calico-system", 100.0, "Deny"),
)
_OPERATOR = {t.name: t for t in OPERATOR_TIERS}


@dataclass(frozen=True)
class NetworkSet:
    """A NetworkSet (namespace set) or GlobalNetworkSet (namespace None)."""

    name: str
    namespace: str | None
    labels: tuple[tuple[str, str], ...]
    nets: tuple[IPNetwork, ...]
    origin: str = ""

    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def contains(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip in net for net in self.nets)


@dataclass(frozen=True)
class PolicySet:
    tiers: tuple[Tier, ...]
    network_sets: tuple[NetworkSet, ...] = ()
    # Namespace labels from `Namespace` manifests found among the policies.
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def policies(self) -> Iterator[Policy]:
        for tier in self.tiers:
            yield from tier.policies

    def tier(self, name: str) -> Tier | None:
        return next((t for t in self.tiers if t.name == name), None)

    def network_set(self, namespace: str | None, name: str) -> NetworkSet | None:
        return next(
            (s for s in self.network_sets if s.namespace == namespace and s.name == name), None
        )

    def effective(self, *, staged: bool) -> tuple[Tier, ...]:
        """Tiers with the policies Calico would evaluate, enforced only or previewing staged."""
        if not staged:
            keep = [p for p in self.policies() if not p.kind.staged]
        else:
            staged_ids = {p.identity for p in self.policies() if p.kind.staged}
            keep = [
                p
                for p in self.policies()
                if (p.kind.staged and p.staged_action in ("Set", "Learn"))
                or (not p.kind.staged and p.identity not in staged_ids)
            ]
        kept = {id(p) for p in keep}
        return tuple(
            Tier(t.name, t.order, t.default_action, tuple(p for p in t.policies if id(p) in kept))
            for t in self.tiers
        )


def build(
    tiers: Iterable[Tier],
    policies: Iterable[Policy],
    network_sets: Iterable[NetworkSet] = (),
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
    warnings: Iterable[str] = (),
) -> PolicySet:
    """Assemble a PolicySet: built-in tiers unless redefined, policies sorted into their tiers.

    A policy naming a tier that is not defined gets that tier implicitly (no order, Deny) and
    a warning, since Calico would have refused the policy; the operator's tier (OPERATOR_TIERS)
    is known instead, since the operator creates it and exports seldom include it.
    """
    notes = list(warnings)
    by_name = {t.name: t for t in BUILTIN_TIERS}
    by_name.update({t.name: t for t in tiers})
    members: dict[str, list[Policy]] = {name: [] for name in by_name}
    for policy in policies:
        if policy.tier not in by_name and (known := _OPERATOR.get(policy.tier)) is not None:
            by_name[policy.tier] = known
            members[policy.tier] = []
        elif policy.tier not in by_name:
            notes.append(f"{policy.origin}: tier {policy.tier!r} is not defined; assumed last")
            by_name[policy.tier] = Tier(policy.tier, None)
            members[policy.tier] = []
        members[policy.tier].append(policy)
    ordered = sorted(by_name.values(), key=lambda t: t.sort_key)
    return PolicySet(
        tiers=tuple(
            Tier(
                t.name,
                t.order,
                t.default_action,
                tuple(sorted(members[t.name], key=lambda p: p.sort_key)),
            )
            for t in ordered
        ),
        network_sets=tuple(sorted(network_sets, key=lambda s: (s.namespace or "", s.name))),
        namespaces=dict(namespaces or {}),
        warnings=tuple(notes),
    )

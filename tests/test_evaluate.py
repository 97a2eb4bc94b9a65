"""Calico evaluation semantics, one table row per point, plus Hypothesis invariants."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import calico_manifests
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flowfence.calico.evaluate import Edge, Endpoint, Evaluator, Verdict
from flowfence.calico.policies import Direction
from flowfence.calico.policy_docs import policy_set


def pod(ns: str, *labels: str, name: str = "pod-*") -> Endpoint:
    return Endpoint("wep", ns, name, None, tuple(sorted(labels)))


def net(ip: str, name: str = "pub") -> Endpoint:
    return Endpoint("net", None, name, ip)


def netset(name: str, ns: str | None = None, *labels: str) -> Endpoint:
    return Endpoint("ns", ns, name, None, tuple(labels))


def host(*labels: str) -> Endpoint:
    return Endpoint("hep", None, "node-1", None, tuple(labels))


WEB = pod("ns1", "app=web")
DB = pod("ns1", "app=db")
WEB2 = pod("ns2", "app=web")

TIER1 = (
    "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: tier1}\nspec: {order: 100}\n"
)


CORP = (
    "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n"
    "metadata: {name: corp, labels: {zone: corp}}\nspec: {nets: [10.20.0.0/16]}\n"
)


DMZ = (
    "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n"
    "metadata: {name: dmz, labels: {zone: dmz}}\nspec: {nets: [10.20.3.0/24]}\n"
)


def np(name: str, spec: str, ns: str = "ns1", kind: str = "NetworkPolicy") -> str:
    meta = f"{{name: {name}, namespace: {ns}}}" if "Global" not in kind else f"{{name: {name}}}"
    body = "\n".join("  " + line for line in spec.strip().splitlines())
    return f"---\napiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {meta}\nspec:\n{body}\n"


def gnp(name: str, spec: str) -> str:
    return np(name, spec, kind="GlobalNetworkPolicy")


def evaluate(
    manifests: str,
    edge: Edge,
    direction: Direction,
    *,
    before: float | None = None,
    staged: bool = True,
    namespaces: dict[str, dict[str, str]] | None = None,
) -> Verdict:
    ps = policy_set([d for d in yaml.safe_load_all(manifests) if d])
    return Evaluator(ps, staged=staged, namespaces=namespaces).evaluate(
        edge, direction, before_order=before
    )


@dataclass
class Case:
    id: str
    manifests: str
    edge: Edge
    direction: Direction
    trace: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


PROFILE1 = "|__PROFILE__|pro:kns.ns1|allow|0"

CASES = [
    Case(
        "no policy: namespace profile allows",
        "",
        Edge(WEB, DB, 5432, "tcp"),
        "ingress",
        ("0" + PROFILE1,),
    ),
    Case(
        "first matching allow decides, hit names tier/kind/ns/name/rule",
        TIER1
        + np(
            "p1",
            """
tier: tier1
selector: app == 'db'
ingress:
  - {action: Deny, protocol: UDP}
  - {action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [5432]}}
""",
        ),
        Edge(WEB, DB, 5432, "tcp"),
        "ingress",
        ("0|tier1|np:ns1/p1|allow|1",),
    ),
    Case(
        "no rule matches: end of tier deny names the first selecting policy",
        TIER1
        + np("a", "tier: tier1\norder: 1\ningress: [{action: Allow, protocol: UDP}]")
        + np("b", "tier: tier1\norder: 2\ningress: [{action: Allow, protocol: UDP}]"),
        Edge(WEB, DB, 5432, "tcp"),
        "ingress",
        ("0|tier1|np:ns1/a|deny|-1",),
    ),
    Case(
        "Pass skips the rest of its tier (a later Deny-all is never reached)",
        TIER1
        + np("a", "tier: tier1\norder: 1\ningress: [{action: Pass}]")
        + np("b", "tier: tier1\norder: 2\ningress: [{action: Deny}]"),
        Edge(WEB, DB, 5432, "tcp"),
        "ingress",
        ("0|tier1|np:ns1/a|pass|0", "1" + PROFILE1),
    ),
    Case(
        "Log continues to the next rule",
        np("p", "ingress: [{action: Log}, {action: Deny}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|deny|1",),
    ),
    Case(
        "bare selector of a namespaced policy only matches its own namespace",
        np("p", "ingress: [{action: Allow, source: {selector: app == 'web'}}]"),
        Edge(WEB2, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|deny|-1",),
    ),
    Case(
        "same selector, same namespace: allowed",
        np("p", "ingress: [{action: Allow, source: {selector: app == 'web'}}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|allow|0",),
    ),
    Case(
        "namespaceSelector widens the selector to other namespaces",
        np(
            "p",
            """
ingress:
  - action: Allow
    source: {selector: app == 'web', namespaceSelector: projectcalico.org/name == 'ns2'}
""",
        ),
        Edge(WEB2, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|allow|0",),
    ),
    Case(
        "namespaceSelector uses labels from the namespaces file",
        np("p", "ingress: [{action: Allow, source: {namespaceSelector: team == 'blue'}}]"),
        Edge(WEB2, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|allow|0",),
        {"namespaces": {"ns2": {"team": "blue"}}},
    ),
    Case(
        "a global policy's bare selector matches every namespace",
        gnp(
            "g",
            "selector: app == 'db'\ningress: [{action: Allow, source: {selector: app == 'web'}}]",
        ),
        Edge(WEB2, DB, 80, "tcp"),
        "ingress",
        ("0|default|gnp:g|allow|0",),
    ),
    Case(
        "global() matches a GlobalNetworkSet peer",
        np(
            "p",
            "egress: [{action: Allow, destination: {namespaceSelector: global(),"
            " selector: role == 'dns'}}]",
        ),
        Edge(WEB, netset("dns-servers", None, "role=dns"), 53, "udp"),
        "egress",
        ("0|default|np:ns1/p|allow|0",),
    ),
    Case(
        "global() does not match a namespaced network set",
        np(
            "p",
            "egress: [{action: Allow, destination: {namespaceSelector: global(),"
            " selector: role == 'dns'}}]",
        ),
        Edge(WEB, netset("dns-servers", "ns1", "role=dns"), 53, "udp"),
        "egress",
        ("0|default|np:ns1/p|deny|-1",),
    ),
    Case(
        "network set membership by IP, labels from the model",
        CORP
        + np(
            "p",
            "egress: [{action: Allow, destination: {namespaceSelector: global(),"
            " selector: zone == 'corp'}}]",
        ),
        Edge(WEB, net("10.20.3.4", "pvt"), 443, "tcp"),
        "egress",
        ("0|default|np:ns1/p|allow|0",),
    ),
    Case(
        "an IP in two network sets matches a selector that picks either",
        CORP + DMZ + gnp("g", "egress: [{action: Allow, destination: {selector: zone == 'dmz'}}]"),
        Edge(WEB, net("10.20.3.4", "pvt"), 443, "tcp"),
        "egress",
        ("0|default|gnp:g|allow|0",),
    ),
    Case(
        "an IP in two network sets is excluded when either matches notSelector",
        CORP
        + DMZ
        + gnp("g", "egress: [{action: Allow, destination: {notSelector: zone == 'corp'}}]"),
        Edge(WEB, net("10.20.3.4", "pvt"), 443, "tcp"),
        "egress",
        ("0|default|gnp:g|deny|-1",),
    ),
    Case(
        "an IP outside every network set matches no selector",
        CORP + gnp("g", "egress: [{action: Allow, destination: {selector: zone == 'corp'}}]"),
        Edge(WEB, net("10.21.3.4", "pvt"), 443, "tcp"),
        "egress",
        ("0|default|gnp:g|deny|-1",),
    ),
    Case(
        "an empty tier is skipped",
        TIER1,
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0" + PROFILE1,),
    ),
    Case(
        "a tier whose policies do not select the endpoint is skipped",
        TIER1 + np("p", "tier: tier1\nselector: app == 'other'\ningress: [{action: Deny}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0" + PROFILE1,),
    ),
    Case(
        "a tier with defaultAction Pass passes at its end",
        TIER1.replace("{order: 100}", "{order: 100, defaultAction: Pass}")
        + np("p", "tier: tier1\ningress: [{action: Allow, protocol: UDP}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|tier1|np:ns1/p|pass|-1", "1" + PROFILE1),
    ),
    Case(
        "order ties break by name (a before b)",
        np("b", "order: 5\ningress: [{action: Allow}]")
        + np("a", "order: 5\ningress: [{action: Deny}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/a|deny|0",),
    ),
    Case(
        "lower order first, no order last",
        np("a", "ingress: [{action: Deny}]") + np("z", "order: 5\ningress: [{action: Allow}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/z|allow|0",),
    ),
    Case(
        "tier order ties break by name",
        TIER1
        + TIER1.replace("tier1", "tier0")
        + np("p1", "tier: tier1\ningress: [{action: Allow}]")
        + np("p0", "tier: tier0\ningress: [{action: Deny}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|tier0|np:ns1/p0|deny|0",),
    ),
    Case(
        "derived types: an egress-only policy does not apply to ingress",
        np("p", "egress: [{action: Deny}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0" + PROFILE1,),
    ),
    Case(
        "derived types: a policy without rules isolates ingress",
        np("p", "selector: all()"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|deny|-1",),
    ),
    Case(
        "derived types: a policy without rules does not isolate egress",
        np("p", "selector: all()"),
        Edge(WEB, DB, 80, "tcp"),
        "egress",
        ("0" + PROFILE1,),
    ),
    Case(
        "notPorts",
        np(
            "p",
            "ingress: [{action: Deny, protocol: TCP, destination: {notPorts: [22]}},"
            " {action: Allow}]",
        ),
        Edge(WEB, DB, 22, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|allow|1",),
    ),
    Case(
        "port ranges",
        np("p", "ingress: [{action: Allow, protocol: TCP, destination: {ports: ['8000:8100']}}]"),
        Edge(WEB, DB, 8100, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|allow|0",),
    ),
    Case(
        "port outside the range",
        np("p", "ingress: [{action: Allow, protocol: TCP, destination: {ports: ['8000:8100']}}]"),
        Edge(WEB, DB, 8101, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|deny|-1",),
    ),
    Case(
        "notNets",
        gnp("g", "egress: [{action: Deny, destination: {notNets: [10.0.0.0/8]}}, {action: Allow}]"),
        Edge(WEB, net("10.9.9.9", "pvt"), 443, "tcp"),
        "egress",
        ("0|default|gnp:g|allow|1",),
    ),
    Case(
        "nets",
        gnp("g", "egress: [{action: Deny, destination: {nets: [10.0.0.0/8]}}, {action: Allow}]"),
        Edge(WEB, net("10.9.9.9", "pvt"), 443, "tcp"),
        "egress",
        ("0|default|gnp:g|deny|0",),
    ),
    Case(
        "notSelector",
        np("p", "ingress: [{action: Allow, source: {notSelector: app == 'web'}}, {action: Deny}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|deny|1",),
    ),
    Case(
        "notProtocol",
        np("p", "ingress: [{action: Deny, notProtocol: TCP}, {action: Allow, protocol: tcp}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|allow|1",),
    ),
    Case(
        "protocol given as a number matches the flow's name",
        np("p", "ingress: [{action: Allow, protocol: 17}]"),
        Edge(WEB, DB, 53, "udp"),
        "ingress",
        ("0|default|np:ns1/p|allow|0",),
    ),
    Case(
        "icmp match is ignored: the rule matches any ICMP",
        np("p", "ingress: [{action: Allow, protocol: ICMP, icmp: {type: 8}}]"),
        Edge(WEB, DB, None, "icmp"),
        "ingress",
        ("0|default|np:ns1/p|allow|0",),
    ),
    Case(
        "named ports never match",
        np("p", "ingress: [{action: Allow, protocol: TCP, destination: {ports: [http]}}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|deny|-1",),
    ),
    Case(
        "services match the flow's destination service",
        np("p", "egress: [{action: Allow, destination: {services: {name: api, namespace: ns2}}}]"),
        Edge(WEB, WEB2, 8080, "tcp", "ns2", "api"),
        "egress",
        ("0|default|np:ns1/p|allow|0",),
    ),
    Case(
        "services default to the policy's namespace",
        np("p", "egress: [{action: Allow, destination: {services: {name: api}}}]"),
        Edge(WEB, WEB2, 8080, "tcp", "ns2", "api"),
        "egress",
        ("0|default|np:ns1/p|deny|-1",),
    ),
    Case(
        "domains: wildcard covers one or more labels",
        np("p", "egress: [{action: Allow, destination: {domains: ['*.example.com']}}]"),
        Edge(WEB, net("1.2.3.4"), 443, "tcp", dest_domains=("a.b.example.com",)),
        "egress",
        ("0|default|np:ns1/p|allow|0",),
    ),
    Case(
        "domains: the wildcard needs at least one label",
        np("p", "egress: [{action: Allow, destination: {domains: ['*.example.com']}}]"),
        Edge(WEB, net("1.2.3.4"), 443, "tcp", dest_domains=("example.com",)),
        "egress",
        ("0|default|np:ns1/p|deny|-1",),
    ),
    Case(
        "serviceAccounts match the flow's service-account label",
        np("p", "ingress: [{action: Allow, source: {serviceAccounts: {names: [web-sa]}}}]"),
        Edge(pod("ns1", "app=web", "projectcalico.org/serviceaccount=web-sa"), DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|allow|0",),
    ),
    Case(
        "serviceAccounts without flow labels do not match",
        np("p", "ingress: [{action: Allow, source: {serviceAccounts: {names: [web-sa]}}}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|deny|-1",),
    ),
    Case(
        "k8s NetworkPolicy: allowed peer and port in the default tier",
        """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: ns1}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
""",
        Edge(WEB, DB, 5432, "tcp"),
        "ingress",
        ("0|default|knp:ns1/db|allow|0",),
    ),
    Case(
        "k8s NetworkPolicy: other port is isolated by the default tier",
        """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: ns1}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
""",
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|knp:ns1/db|deny|-1",),
    ),
    Case(
        "k8s NetworkPolicy runs before unordered Calico policies in the default tier",
        np("calico", "ingress: [{action: Deny}]")
        + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: all, namespace: ns1}
spec: {podSelector: {}, ingress: [{}]}
""",
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|knp:ns1/all|allow|0",),
    ),
    Case(
        "staged Set replaces the enforced policy of the same name",
        np("p", "ingress: [{action: Allow}]")
        + np("p", "stagedAction: Set\ningress: [{action: Deny}]", kind="StagedNetworkPolicy"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|snp:ns1/p|deny|0",),
    ),
    Case(
        "staged Ignore is skipped",
        np("s", "stagedAction: Ignore\ningress: [{action: Deny}]", kind="StagedNetworkPolicy"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0" + PROFILE1,),
    ),
    Case(
        "staged Delete removes the enforced policy",
        np("p", "ingress: [{action: Deny}]")
        + np("p", "stagedAction: Delete", kind="StagedNetworkPolicy"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0" + PROFILE1,),
    ),
    Case(
        "staged=False evaluates enforced policies only",
        np("p", "ingress: [{action: Allow}]")
        + np("p", "stagedAction: Learn\ningress: [{action: Deny}]", kind="StagedNetworkPolicy"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|default|np:ns1/p|allow|0",),
        {"staged": False},
    ),
    Case(
        "before_order: a deciding tier below the order decides",
        TIER1 + np("p", "tier: tier1\ningress: [{action: Allow}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0|tier1|np:ns1/p|allow|0",),
        {"before": 10000},
    ),
    Case(
        "before_order: tiers at or after the order are not evaluated (undecided)",
        np("p", "ingress: [{action: Deny}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        (),
        {"before": 10000},
    ),
    Case(
        "host endpoints: namespaced policies never select them, global ones do",
        np("p", "selector: all()\ningress: [{action: Deny}]")
        + gnp("g", "selector: role == 'node'\ningress: [{action: Allow, protocol: TCP}]"),
        Edge(WEB, host("role=node"), 10250, "tcp"),
        "ingress",
        ("0|default|gnp:g|allow|0",),
    ),
    Case(
        "host endpoints fall through to the default-allow profile",
        "",
        Edge(host(), WEB, 80, "tcp"),
        "egress",
        ("0|__PROFILE__|pro:projectcalico-default-allow|allow|0",),
    ),
    Case(
        "a global policy's namespaceSelector limits the endpoints it selects",
        gnp("g", "namespaceSelector: projectcalico.org/name == 'ns2'\ningress: [{action: Deny}]"),
        Edge(WEB, DB, 80, "tcp"),
        "ingress",
        ("0" + PROFILE1,),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_semantics(case: Case) -> None:
    verdict = evaluate(case.manifests, case.edge, case.direction, **case.kwargs)
    assert verdict.trace == case.trace
    decided = verdict.deciding
    if case.trace:
        assert decided is not None and str(decided) == case.trace[-1]
        assert verdict.action == case.trace[-1].split("|")[3]
    else:
        assert verdict.action is None and decided is None


def test_no_policy_applies_at_a_network_peer() -> None:
    evaluator = Evaluator(policy_set([]))
    edge = Edge(net("1.1.1.1"), WEB, 80, "tcp")
    assert not evaluator.applies(edge, "egress")
    with pytest.raises(ValueError, match="no egress policy applies"):
        evaluator.evaluate(edge, "egress")


def test_edge_from_row() -> None:
    row = {
        "source_type": "wep", "source_namespace": "ns1", "source_name_aggr": "web-*",
        "source_ip": None, "source_labels": ["app=web"],
        "dest_type": "net", "dest_namespace": None, "dest_name_aggr": "pub",
        "dest_ip": "8.8.8.8", "dest_labels": None, "dest_port": 53, "proto": "udp",
        "dest_service_namespace": None, "dest_service_name": None,
        "dest_domains": ["dns.google"],
    }  # fmt: skip
    edge = Edge.from_row(row)
    assert edge == Edge(
        pod("ns1", "app=web", name="web-*"), net("8.8.8.8"), 53, "udp", dest_domains=("dns.google",)
    )


# -- Hypothesis: invariants over random policy sets ------------------------------------------

NAMESPACES = ("ns1", "ns2")
APPS = ("web", "db", "cache")
SELECTORS = (
    "all()",
    "app == 'web'",
    "app == 'db'",
    "app != 'db'",
    "has(app)",
    "app in {'web', 'cache'}",
)
ACTIONS = ("Allow", "Deny", "Pass", "Log")


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"action": draw(st.sampled_from(ACTIONS))}
    if draw(st.booleans()):
        rule["protocol"] = draw(st.sampled_from(("TCP", "UDP")))
        if draw(st.booleans()):
            rule["destination"] = {"ports": [draw(st.sampled_from((80, 443, "5000:6000")))]}
    if draw(st.booleans()):
        peer: dict[str, Any] = {"selector": draw(st.sampled_from(SELECTORS))}
        if draw(st.booleans()):
            peer["namespaceSelector"] = (
                f"projectcalico.org/name == '{draw(st.sampled_from(NAMESPACES))}'"
            )
        rule["source"] = peer
    return rule


@st.composite
def manifests(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name},
         "spec": {"order": order, "defaultAction": draw(st.sampled_from(("Deny", "Pass")))}}
        for name, order in (("t1", 100), ("t2", 200))
    ]  # fmt: skip
    for i in range(draw(st.integers(0, 6))):
        namespaced = draw(st.booleans())
        spec: dict[str, Any] = {
            "tier": draw(st.sampled_from(("t1", "t2", "default"))),
            "selector": draw(st.sampled_from(SELECTORS)),
            "ingress": draw(st.lists(rules(), max_size=3)),
            "egress": draw(st.lists(rules(), max_size=3)),
        }
        order = draw(st.sampled_from((None, 1, 2)))
        if order is not None:
            spec["order"] = order
        namespace = draw(st.sampled_from(NAMESPACES)) if namespaced else None
        out.append(calico_manifests.policy(i, spec, namespace))
    return out


@st.composite
def edges(draw: st.DrawFn) -> Edge:
    def endpoint() -> Endpoint:
        return pod(draw(st.sampled_from(NAMESPACES)), f"app={draw(st.sampled_from(APPS))}")

    return Edge(
        endpoint(),
        endpoint(),
        draw(st.sampled_from((80, 443, 5432))),
        draw(st.sampled_from(("tcp", "udp"))),
    )


DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")


def verdicts(docs: list[dict[str, Any]], sample: list[Edge]) -> list[Verdict]:
    evaluator = Evaluator(policy_set(docs))
    return [evaluator.evaluate(e, d) for e in sample for d in DIRECTIONS]


FIRST_TIER = {"apiVersion": "projectcalico.org/v3", "kind": "Tier",
              "metadata": {"name": "first"}, "spec": {"order": 1}}  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(manifests(), st.lists(edges(), min_size=1, max_size=5))
def test_allow_all_in_a_first_tier_allows_everything(
    docs: list[dict[str, Any]], sample: list[Edge]
) -> None:
    allow_all = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                 "metadata": {"name": "allow-all"},
                 "spec": {"tier": "first", "ingress": [{"action": "Allow"}],
                          "egress": [{"action": "Allow"}]}}  # fmt: skip
    for verdict in verdicts([*docs, FIRST_TIER, allow_all], sample):
        assert verdict.trace == ("0|first|gnp:allow-all|allow|0",)


@settings(max_examples=60, deadline=None)
@given(manifests(), st.lists(edges(), min_size=1, max_size=5))
def test_a_tier_selecting_nothing_changes_nothing(
    docs: list[dict[str, Any]], sample: list[Edge]
) -> None:
    blind = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
             "metadata": {"name": "blind"},
             "spec": {"tier": "first", "selector": "has(no-such-label)",
                      "ingress": [{"action": "Deny"}], "egress": [{"action": "Deny"}]}}  # fmt: skip
    assert verdicts([*docs, FIRST_TIER, blind], sample) == verdicts(docs, sample)


@settings(max_examples=60, deadline=None)
@given(manifests(), st.lists(edges(), min_size=1, max_size=5), st.lists(rules(), max_size=3))
def test_pass_only_tiers_are_transparent(
    docs: list[dict[str, Any]], sample: list[Edge], extra: list[dict[str, Any]]
) -> None:
    passing = [{**r, "action": "Pass"} for r in extra]
    tier = {**FIRST_TIER, "spec": {"order": 1, "defaultAction": "Pass"}}
    pass_all = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                "metadata": {"name": "pass"},
                "spec": {"tier": "first", "types": ["Ingress", "Egress"],
                         "ingress": passing, "egress": passing}}  # fmt: skip
    before = verdicts(docs, sample)
    after = verdicts([*docs, tier, pass_all], sample)
    for old, new in zip(before, after, strict=True):
        assert new.action == old.action
        assert new.hits[0].policy == "gnp:pass" and new.hits[0].action == "pass"
        # The rest of the trace is the old one, each hit one position later.
        assert [(h.tier, h.policy, h.action, h.rule) for h in new.hits[1:]] == [
            (h.tier, h.policy, h.action, h.rule) for h in old.hits
        ]


@settings(max_examples=60, deadline=None)
@given(manifests(), st.lists(edges(), min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_deterministic_and_independent_of_document_order(
    docs: list[dict[str, Any]], sample: list[Edge], rnd: random.Random
) -> None:
    shuffled = list(docs)
    rnd.shuffle(shuffled)
    assert verdicts(shuffled, sample) == verdicts(docs, sample)

"""Network peers whose address the log aggregated away (`pvt`, `pub`): evaluated as the class of
addresses Felix's label stands for, with an undetermined verdict where the class splits."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowfence.calico import address_class, cidr
from flowfence.calico.evaluate import Edge, Endpoint, Evaluator, Verdict
from flowfence.calico.policies import Direction
from flowfence.calico.policy_docs import policy_set

WEB = Endpoint("wep", "ns1", "web-*", None, ("app=web",))
PVT = Endpoint("net", None, "pvt", None)
PUB = Endpoint("net", None, "pub", None)
API = "apiVersion"
V3 = "projectcalico.org/v3"


def egress_policy(*rules: dict[str, Any], tier: str = "default") -> list[dict[str, Any]]:
    """One namespaced policy selecting every pod of ns1, ending in the tier's Deny."""
    return [
        {API: V3, "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "ns1"},
         "spec": {"tier": tier, "selector": "all()", "types": ["Egress", "Ingress"],
                  "egress": list(rules), "ingress": list(rules)}},
    ]  # fmt: skip


def allow_to(nets: tuple[str, ...] = (), not_nets: tuple[str, ...] = ()) -> dict[str, Any]:
    peer: dict[str, Any] = {}
    if nets:
        peer["nets"] = list(nets)
    if not_nets:
        peer["notNets"] = list(not_nets)
    return {"action": "Allow", "destination": peer}


def verdict(docs: list[dict[str, Any]], peer: Endpoint, direction: Direction = "egress") -> Verdict:
    edge = Edge(WEB, peer, 443, "tcp") if direction == "egress" else Edge(peer, WEB, 443, "tcp")
    return Evaluator(policy_set(docs)).evaluate(edge, direction)


def test_a_private_peer_without_address_matches_a_rule_covering_all_of_rfc1918() -> None:
    # flowfence's own private fallback rule. main: a `nets` rule never matched a peer without
    # an address, so this was the end-of-tier deny.
    v = verdict(egress_policy(allow_to(cidr.RFC1918)), PVT)
    assert (v.action, v.trace, v.undetermined) == ("allow", ("0|default|np:ns1/p|allow|0",), False)
    # Listed in another order, split into smaller blocks or inside a wider one: the same.
    for nets in (("192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/13", "172.24.0.0/13"),
                 ("0.0.0.0/0",)):  # fmt: skip
        assert verdict(egress_policy(allow_to(nets)), PVT).action == "allow"


def test_a_public_peer_without_address_is_all_of_felixs_pub() -> None:
    # Felix labels every address but RFC 1918 `pub`: also 169.254.169.254 (cloud metadata),
    # 100.64.0.0/10 and IPv6. flowfence's own public fallback leaves those out, so the log
    # cannot say the flow is allowed: undetermined (the run lists it under Risks, may-cut).
    fallback = allow_to(("0.0.0.0/0",), cidr.exclusions(4, ()))
    v = verdict(egress_policy(fallback), PUB)
    assert (v.action, v.possible) == (None, ("allow", "deny"))
    assert verdict(egress_policy(allow_to(("0.0.0.0/0",))), PUB).undetermined  # IPv6 is pub
    assert verdict(egress_policy(allow_to(("0.0.0.0/0", "::/0"))), PUB).action == "allow"
    # The fallback excludes the private blocks: a `pvt` peer is all denied, a determined deny.
    denied = verdict(egress_policy(fallback), PVT)
    assert (denied.action, denied.trace) == ("deny", ("0|default|np:ns1/p|deny|-1",))


def test_a_deny_of_the_metadata_service_is_never_read_as_allow() -> None:
    # A common hardening policy: deny the metadata address, allow everything else. A `pub`
    # peer without an address may be that address. Before, `pub` meant public IPv4 alone
    # (no link-local), and this replayed as a determined allow.
    metadata = {"action": "Deny", "destination": {"nets": ["169.254.169.254/32"]}}
    v = verdict(egress_policy(metadata, allow_to(("0.0.0.0/0", "::/0"))), PUB)
    assert (v.action, v.possible) == (None, ("allow", "deny"))
    v6 = {"action": "Deny", "destination": {"nets": ["::/0"]}}
    assert verdict(egress_policy(v6, allow_to(("0.0.0.0/0",))), PUB).undetermined


@pytest.mark.parametrize(
    ("rule", "peer"),
    [
        (allow_to(("10.0.0.0/8",)), PVT),  # one private block of three
        (allow_to(("10.20.0.0/16", "192.168.0.0/16")), PVT),
        (allow_to(("8.8.8.0/24",)), PUB),  # one public block
        (allow_to((), ("10.0.0.0/8",)), PVT),  # notNets cutting the class: main said allow
        (allow_to(cidr.RFC1918), Endpoint("net", None, None, None)),  # no label: any address
    ],
)
def test_a_rule_covering_part_of_the_class_is_undetermined_not_deny(
    rule: dict[str, Any], peer: Endpoint
) -> None:
    for direction in ("egress", "ingress"):
        if direction == "ingress":
            rule = {**rule, "source": rule["destination"]}
            del rule["destination"]
        v = verdict(egress_policy(rule), peer, direction)
        assert (v.action, v.hits, v.possible) == (None, (), ("allow", "deny")), direction
        assert v.undetermined and v.deciding is None


def test_an_address_is_still_itself() -> None:
    # A `pvt` peer whose address the log kept is that address, not the class.
    docs = egress_policy(allow_to(("10.0.0.0/8",)))
    assert verdict(docs, Endpoint("net", None, "pvt", "10.1.2.3")).action == "allow"
    assert verdict(docs, Endpoint("net", None, "pvt", "192.168.1.1")).action == "deny"


def test_before_a_tier_the_class_may_be_partly_undecided() -> None:
    docs = [
        {API: V3, "kind": "Tier", "metadata": {"name": "early"},
         "spec": {"order": 10, "defaultAction": "Pass"}},
        *egress_policy(allow_to(("10.0.0.0/8",)), tier="early"),
    ]  # fmt: skip
    evaluator = Evaluator(policy_set(docs))
    edge = Edge(WEB, PVT, 443, "tcp")
    # Before the early tier nothing decides; after it, 10/8 is allowed and the rest passes on.
    assert evaluator.evaluate(edge, "egress", before_order=10).hits == ()
    v = evaluator.evaluate(edge, "egress", before_order=100)
    assert (v.action, v.possible, v.deciding) == (None, ("allow", "none"), None)


# -- Hypothesis: the class verdict against the verdicts of its addresses ------------------------

POOL = (
    "10.0.0.0/8", "10.20.0.0/16", "172.16.0.0/12", "172.20.0.0/14", "192.168.0.0/16",
    "192.168.7.0/24", "0.0.0.0/0", "8.8.8.0/24", "100.64.0.0/10", "169.254.0.0/16",
    "128.0.0.0/1", "::/0", "fc00::/7", "2001:db8::/32",
)  # fmt: skip
CLASSES = {"pvt": address_class.PRIVATE, "pub": address_class.PUBLIC, "-": address_class.ANY}


@st.composite
def class_rules(draw: st.DrawFn) -> dict[str, Any]:
    peer: dict[str, Any] = {}
    if draw(st.booleans()):
        peer["nets"] = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=3))
    if draw(st.booleans()):
        peer["notNets"] = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=2))
    if draw(st.booleans()):
        peer["selector"] = "zone == 'corp'"
    return {"action": draw(st.sampled_from(("Allow", "Deny", "Pass"))), "destination": peer}


@st.composite
def class_policies(draw: st.DrawFn) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {API: V3, "kind": "Tier", "metadata": {"name": "t1"},
         "spec": {"order": 1, "defaultAction": draw(st.sampled_from(("Deny", "Pass")))}},
        {API: V3, "kind": "GlobalNetworkSet",
         "metadata": {"name": "corp", "labels": {"zone": "corp"}},
         "spec": {"nets": draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=2))}},
    ]  # fmt: skip
    for i in range(draw(st.integers(1, 3))):
        docs.append(
            {API: V3, "kind": "GlobalNetworkPolicy", "metadata": {"name": f"p{i}"},
             "spec": {"tier": draw(st.sampled_from(("t1", "default"))), "order": i,
                      "selector": "all()", "types": ["Egress"],
                      "egress": draw(st.lists(class_rules(), max_size=3))}}
        )  # fmt: skip
    return docs


def witnesses(spans: tuple[address_class.Span, ...]) -> list[str]:
    """Addresses at every edge of the class and of every pool CIDR that fall in the class:
    each interval no CIDR splits starts at one of them (found without address_class)."""
    points: set[tuple[int, int]] = set()
    for net in (ipaddress.ip_network(n) for n in POOL):
        low, high = int(net.network_address), int(net.broadcast_address)
        points |= {(net.version, x) for x in (low - 1, low, high, high + 1)}
    for version, first, last in spans:
        points |= {(version, first), (version, last)}
    inside = sorted(
        (v, x) for v, x in points if any(v == sv and f <= x <= la for sv, f, la in spans)
    )
    return [
        str(ipaddress.IPv4Address(x) if v == 4 else ipaddress.IPv6Address(x)) for v, x in inside
    ]


def at(spans: tuple[address_class.Span, ...], draw_index: int, offset: int) -> str:
    version, first, last = spans[draw_index % len(spans)]
    value = first + offset % (last - first + 1)
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return str(make(value))


@settings(max_examples=150, deadline=None)
@given(
    class_policies(),
    st.sampled_from(sorted(CLASSES)),
    st.lists(st.tuples(st.integers(0, 10), st.integers(0, 2**128)), min_size=1, max_size=8),
)
def test_a_class_verdict_is_what_every_address_of_the_class_gets(
    docs: list[dict[str, Any]], label: str, picks: list[tuple[int, int]]
) -> None:
    evaluator = Evaluator(policy_set(docs))
    name = None if label == "-" else label
    whole = evaluator.evaluate(Edge(WEB, Endpoint("net", None, name, None), 443, "tcp"), "egress")
    spans = CLASSES[label]
    addresses = witnesses(spans) + [at(spans, i, o) for i, o in picks]
    seen = {
        evaluator.evaluate(Edge(WEB, Endpoint("net", None, name, a), 443, "tcp"), "egress").action
        for a in addresses
    }
    if whole.undetermined:
        # Never a guess: the class really is split, both ways.
        assert whole.action is None and set(whole.possible) == seen == {"allow", "deny"}
    else:
        # Never allow (or deny) when some address of the class would get the other outcome.
        assert seen == {whole.action}

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowfence.calico import cidr
from flowfence.calico.selector import parse
from flowfence.config.settings import Settings
from flowfence.flows.edges import EDGE_SCHEMA
from flowfence.learn import fold, rules
from flowfence.learn.model import (
    ANY_PORT,
    ENTERPRISE_SELECTOR,
    PRIVATE_FALLBACK,
    PUBLIC_FALLBACK,
    SCOPES,
    PortRange,
    Recommendation,
    Rule,
)
from flowfence.render.manifests import namespace_selector

SCHEMA = {**EDGE_SCHEMA, "direction": pl.String(), "namespace": pl.String()}
T0 = datetime(2026, 10, 1, 8, 0, 0)
BASE = Settings(
    cluster_cidrs=("10.244.0.0/16", "fd00:10::/56"), private_cidr_cap=4, public_cidr_cap=4
)


def edge(**kw: Any) -> dict[str, Any]:
    """One learnable edge: an egress flow from a `shop` pod unless overridden."""
    row: dict[str, Any] = dict.fromkeys(SCHEMA)
    row.update(
        reporter="src",
        action="allow",
        source_type="wep",
        source_namespace="shop",
        source_name_aggr="web-*",
        source_labels=[],
        dest_labels=[],
        dest_domains=[],
        enforced_policies=[],
        pending_policies=["0|__PROFILE__|pro:kns.shop|allow|0"],
        proto="tcp",
        first_seen=T0,
        last_seen=T0 + timedelta(hours=1),
        flows=1,
        bytes=100,
        packets=2,
        days=1,
        rows=1,
        direction="egress",
        namespace="shop",
    )
    row.update(kw)
    return row


def ingress(**kw: Any) -> dict[str, Any]:
    base = {
        "reporter": "dst",
        "direction": "ingress",
        "dest_type": "wep",
        "dest_namespace": "shop",
        "dest_name_aggr": "web-*",
        "source_namespace": None,
        "source_name_aggr": None,
    }
    return edge(**{**base, **kw})


def to_ns(peer: str, port: int | None, proto: str = "tcp", **kw: Any) -> dict[str, Any]:
    return edge(
        dest_type="wep",
        dest_namespace=peer,
        dest_name_aggr="x-*",
        dest_port=port,
        proto=proto,
        **kw,
    )


def to_net(
    name: str, ip: str | None, port: int | None, proto: str = "tcp", **kw: Any
) -> dict[str, Any]:
    return edge(dest_type="net", dest_name_aggr=name, dest_ip=ip, dest_port=port, proto=proto, **kw)


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA)


def build(
    rows: list[dict[str, Any]], s: Settings = BASE, namespaces: tuple[str, ...] = ("shop",)
) -> dict[str, Recommendation]:
    return rules.build(frame(rows), namespaces, s)


def only(rec: Recommendation, scope: str, direction: str = "egress") -> list[Rule]:
    return [r for r in (rec.egress if direction == "egress" else rec.ingress) if r.scope == scope]


def allows(rule: Rule, *, peer_ns: str | None = None, proto: str, port: int | None) -> bool:
    """Does `rule` admit traffic to namespace `peer_ns` with `proto`/`port`?"""
    if rule.protocol != proto:
        return False
    if peer_ns is not None and peer_ns not in rule.namespaces:
        return False
    return not rule.ports or (port is not None and any(port in p for p in rule.ports))


# --- peers ------------------------------------------------------------------------------------


def test_namespace_rule_merges_contiguous_ports_and_sums_evidence() -> None:
    rows = [to_ns("db", p, flows=p, bytes=1, days=p % 3 + 1) for p in (80, 81, 82, 443)]
    rows[0]["first_seen"] = T0 - timedelta(days=2)
    rows[3]["last_seen"] = T0 + timedelta(days=5)
    (rule,) = build(rows)["shop"].egress
    assert rule.scope == "Namespace" and rule.namespaces == ("db",) and rule.action == "Allow"
    assert rule.ports == (PortRange(80, 82), PortRange(443, 443))
    assert [str(p) for p in rule.ports] == ["80:82", "443"]
    ev = rule.evidence
    assert ev.first_seen == T0 - timedelta(days=2)
    assert ev.last_seen == T0 + timedelta(days=5)
    assert (ev.flows, ev.bytes, ev.edges, ev.days) == (80 + 81 + 82 + 443, 4, 4, 3)


def test_one_rule_per_peer_and_protocol() -> None:
    rows = [to_ns("db", 5432), to_ns("db", 53, "udp"), to_ns("cache", 6379), to_ns("db", 5433)]
    egress = build(rows)["shop"].egress
    got = [(r.namespaces, r.protocol, tuple(map(str, r.ports))) for r in egress]
    # Sorted by protocol, then ports, then peer (Calico's order).
    assert got == [
        (("db",), "TCP", ("5432:5433",)),
        (("cache",), "TCP", ("6379",)),
        (("db",), "UDP", ("53",)),
    ]


def test_intra_namespace_traffic_allows_or_passes() -> None:
    rows = [to_ns("shop", 8080), to_ns("db", 5432)]
    allowed = build(rows)["shop"].egress
    assert {r.namespaces[0]: r.action for r in allowed} == {"shop": "Allow", "db": "Allow"}
    passed = build(rows, replace(BASE, intra_namespace_pass=True))["shop"].egress
    assert {r.namespaces[0]: r.action for r in passed} == {"shop": "Pass", "db": "Allow"}


def test_ingress_rules_use_the_source_as_peer() -> None:
    rows = [
        ingress(
            source_type="wep", source_namespace="frontend", source_name_aggr="fe-*", dest_port=8080
        )
    ]
    rec = build(rows)["shop"]
    assert rec.egress == ()
    (rule,) = rec.ingress
    assert (
        rule.direction == "ingress"
        and rule.namespaces == ("frontend",)
        and rule.ports == (PortRange(8080, 8080),)
    )


def test_network_set_selected_by_its_own_labels() -> None:
    rows = [
        edge(
            dest_type="ns",
            dest_name_aggr="corp",
            dest_namespace=None,
            dest_port=22,
            dest_labels=["env=prod", "projectcalico.org/name=corp", "team=net"],
        ),
        edge(
            dest_type="ns",
            dest_name_aggr="corp",
            dest_namespace=None,
            dest_port=23,
            dest_labels=["env=prod", "projectcalico.org/name=corp"],
        ),
        edge(
            dest_type="ns",
            dest_name_aggr="vpn",
            dest_namespace="ops",
            dest_port=443,
            dest_labels=["kind=vpn"],
        ),
    ]
    corp, vpn = only(build(rows)["shop"], "NetworkSet")
    assert corp.netset is not None and vpn.netset is not None
    # Labels seen on every flow to the set, without Calico's implicit ones.
    assert corp.netset.labels == (("env", "prod"),) and corp.netset.namespace is None
    assert corp.ports == (PortRange(22, 23),) and ENTERPRISE_SELECTOR not in corp.flags
    assert vpn.netset.namespace == "ops" and vpn.netset.labels == (("kind", "vpn"),)


def test_network_set_without_labels_falls_back_to_enterprise_names_and_is_flagged() -> None:
    rows = [
        edge(
            dest_type="ns",
            dest_name_aggr="corp",
            dest_port=22,
            dest_labels=["projectcalico.org/kind=NetworkSet"],
        )
    ]
    (rule,) = build(rows)["shop"].egress
    assert rule.netset is not None and rule.netset.labels == ()
    assert ENTERPRISE_SELECTOR in rule.flags and "Enterprise" in rule.note


def test_domains_drop_cluster_names_and_group_by_port_set() -> None:
    rows = [
        to_net(
            "pub", "1.1.1.1", 443, dest_domains=["api.example.com", "web.shop.svc.cluster.local"]
        ),
        to_net("pub", "1.1.1.2", 443, dest_domains=["cdn.example.com"]),
        to_net("pub", "1.1.1.2", 80, dest_domains=["cdn.example.com"]),
        to_net("pub", "1.1.1.3", 80, dest_domains=["svc.cluster.local"]),  # nothing left: Public
    ]
    rec = build(rows)["shop"]
    domains = only(rec, "Domains")
    assert [(r.domains, tuple(map(str, r.ports))) for r in domains] == [
        (("cdn.example.com",), ("80", "443")),
        (("api.example.com",), ("443",)),
    ]
    assert all(r.nets == () for r in domains)
    (public,) = only(rec, "Public")
    assert public.nets == ("1.1.1.3/32",) and public.ports == (PortRange(80, 80),)


def test_domains_on_oss_calico_name_the_observed_addresses() -> None:
    rows = [
        to_net("pub", "1.1.1.1", 443, dest_domains=["api.example.com"]),
        to_net("pub", "1.1.1.2", 443, dest_domains=["api.example.com", "alt.example.com"]),
        to_net("pub", "2606:4700::1", 443, dest_domains=["api.example.com"]),
        to_net("pub", None, 443, dest_domains=["lost.example.com"]),  # no address: Public fallback
    ]
    rec = build(rows, replace(BASE, flavor="calico"))["shop"]
    v4, v6 = only(rec, "Domains")
    assert v4.nets == ("1.1.1.1/32", "1.1.1.2/32") and v4.domains == (
        "alt.example.com",
        "api.example.com",
    )
    assert v6.nets == ("2606:4700::1/128",) and v6.domains == ("api.example.com",)
    (fallback,) = only(rec, "Public")
    assert PUBLIC_FALLBACK in fallback.flags


def test_service_rules_carry_no_ports() -> None:
    rows = [
        to_net("pub", None, 8443, dest_service_name="payments", dest_service_namespace="billing")
    ]
    (rule,) = build(rows)["shop"].egress
    assert rule.scope == "Service" and rule.ports == () and rule.nets == ()
    assert rule.service is not None and (rule.service.namespace, rule.service.name) == (
        "billing",
        "payments",
    )
    k8s = build(rows, replace(BASE, flavor="kubernetes"))["shop"].egress
    assert [r.scope for r in k8s] == ["Public"] and k8s[0].ports == (PortRange(8443, 8443),)


def test_portless_protocols_get_no_ports() -> None:
    rows = [
        to_ns("db", 0, "icmp"),
        to_ns("db", 7, "47"),
        to_ns("db", None, "icmpv6"),
        to_ns("db", 9, "gre"),
    ]
    egress = build(rows)["shop"].egress
    assert [(r.protocol, r.ports) for r in egress] == [("47", ()), ("ICMP", ()), ("ICMPv6", ())]


def test_tcp_without_a_port_allows_any_port_and_is_flagged() -> None:
    (rule,) = build([to_ns("db", None), to_ns("db", 80)])["shop"].egress
    assert rule.ports == () and ANY_PORT in rule.flags


def test_ipv4_and_ipv6_are_split() -> None:
    rows = [to_net("pub", "8.8.8.8", 53, "udp"), to_net("pub", "2001:4860:4860::8888", 53, "udp")]
    rules_ = build(rows)["shop"].egress
    assert [r.nets for r in rules_] == [("8.8.8.8/32",), ("2001:4860:4860::8888/128",)]
    for r in rules_:
        assert len({ipaddress.ip_network(n).version for n in r.nets}) == 1


def test_private_addresses_aggregate_within_the_cap() -> None:
    rows = [to_net("pvt", f"10.1.{i}.{j}", 5432) for i in range(8) for j in (3, 9)]
    (rule,) = build(rows)["shop"].egress
    assert rule.scope == "Private" and len(rule.nets) <= BASE.private_cidr_cap
    assert all(cidr.covers(rule.nets, f"10.1.{i}.{j}") for i in range(8) for j in (3, 9))
    assert not set(rule.nets) & set(cidr.RFC1918)
    exact = build(rows, replace(BASE, private_cidr_cap=64))["shop"].egress[0]
    assert len(exact.nets) == 16 and all(n.endswith("/32") for n in exact.nets)


def test_private_peers_are_grouped_by_port_set_not_crossed() -> None:
    rows = [to_net("pvt", "10.0.0.5", 5432), to_net("pvt", "10.9.0.7", 6379)]
    got = [(r.nets, tuple(map(str, r.ports))) for r in build(rows)["shop"].egress]
    assert got == [(("10.0.0.5/32",), ("5432",)), (("10.9.0.7/32",), ("6379",))]


def test_private_without_addresses_falls_back_to_rfc1918_and_is_flagged() -> None:
    (rule,) = build([to_net("pvt", None, 5432)])["shop"].egress
    assert rule.nets == cidr.RFC1918 and PRIVATE_FALLBACK in rule.flags and rule.note


def test_public_past_the_cap_falls_back_with_not_nets() -> None:
    rows = [to_net("pub", f"203.0.113.{i * 7}", 443) for i in range(10)]
    rows += [to_net("pub", f"2001:db8:{i}::1", 443) for i in range(6)]
    v4, v6 = build(rows)["shop"].egress
    assert v4.nets == ("0.0.0.0/0",) and PUBLIC_FALLBACK in v4.flags
    assert set(v4.not_nets) >= {*cidr.RFC1918, "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16"}
    assert cidr.covers(v4.not_nets, "10.244.1.1")  # the cluster CIDR (inside 10/8 here)
    # fd00:10::/56 (the v6 cluster CIDR) lies inside fc00::/7 and collapses into it.
    assert v6.nets == ("::/0",) and set(v6.not_nets) == {"::1/128", "fc00::/7", "fe80::/10"}
    assert cidr.covers(v6.not_nets, "fd00:10::1")
    assert PUBLIC_FALLBACK in build(rows)["shop"].flags
    assert v4.ports == (PortRange(443, 443),) and "exceed" in v4.note


def test_public_cluster_cidrs_outside_private_space_are_excluded() -> None:
    s = replace(BASE, cluster_cidrs=("100.96.0.0/12", "198.18.0.0/15"))
    (rule,) = build([to_net("pub", None, 443)], s)["shop"].egress
    assert "198.18.0.0/15" in rule.not_nets and cidr.covers(rule.not_nets, "100.96.0.1")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.none(),
                st.integers(1, 250).map(lambda i: f"198.51.100.{i}"),
                st.integers(1, 50).map(lambda i: f"2001:db8::{i:x}"),
            ),
            st.sampled_from([22, 80, 443, None]),
            st.sampled_from(["tcp", "udp", "icmp"]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_public_ingress_is_never_port_only(peers: list[tuple[str | None, int | None, str]]) -> None:
    rows = [
        ingress(
            source_type="net", source_name_aggr="pub", source_ip=ip, dest_port=port, proto=proto
        )
        for ip, port, proto in peers
    ]
    rec = build(rows)["shop"]
    assert rec.ingress
    for rule in rec.ingress:
        assert rule.scope == "Public" and rule.nets
        if set(rule.nets) & {"0.0.0.0/0", "::/0"}:
            assert PUBLIC_FALLBACK in rule.flags
            fam = rule.family
            for inside in (
                ("10.244.0.1", "192.168.3.3", "172.20.0.1", "100.64.0.9")
                if fam == 4
                else ("fd00:10::5", "fc00::1")
            ):
                assert cidr.covers(rule.not_nets, inside)
    for ip, port, proto in peers:
        matching = [
            r
            for r in rec.ingress
            if allows(r, proto=proto.upper(), port=port if proto != "icmp" else None)
        ]
        assert matching, (ip, port, proto)
        if ip is not None:
            assert any(cidr.covers(r.nets, ip) for r in matching)


def test_scope_order_then_protocol_then_ports() -> None:
    rows = [
        to_net("pub", "9.9.9.9", 53, "udp"),
        to_net("pvt", "10.0.0.1", 80),
        edge(dest_type="ns", dest_name_aggr="corp", dest_port=22, dest_labels=["a=b"]),
        to_ns("db", 5432),
        to_ns("db", 53, "udp"),
        to_ns("a", 6000),
        to_net("pub", None, 443, dest_service_name="svc", dest_service_namespace="x"),
        to_net("pub", "1.1.1.1", 443, dest_domains=["a.example.com"]),
    ]
    egress = build(rows)["shop"].egress
    assert [r.scope for r in egress] == [
        "Domains",
        "Service",
        "Namespace",
        "Namespace",
        "Namespace",
        "NetworkSet",
        "Private",
        "Public",
    ]
    assert [SCOPES.index(r.scope) for r in egress] == sorted(SCOPES.index(r.scope) for r in egress)
    ns_rules = only(build(rows)["shop"], "Namespace")
    assert [(r.protocol, r.ports[0].lo) for r in ns_rules] == [
        ("TCP", 5432),
        ("TCP", 6000),
        ("UDP", 53),
    ]


def test_other_namespaces_are_ignored_and_empty_ones_kept() -> None:
    rows = [to_ns("db", 80), to_ns("db", 81, namespace="other", source_namespace="other")]
    recs = build(rows, namespaces=("shop", "quiet"))
    assert sorted(recs) == ["quiet", "shop"]
    assert recs["quiet"].rules == () and len(recs["shop"].egress) == 1


def test_unsupported_peers_are_flagged_not_ruled() -> None:
    rows = [edge(dest_type="hep", dest_name_aggr="node-1", dest_port=10250), to_ns("db", 80)]
    rec = build(rows)["shop"]
    assert [r.scope for r in rec.egress] == ["Namespace"] and rules.UNSUPPORTED_PEERS in rec.flags


def test_protocols_calico_cannot_write_are_unsupported() -> None:
    rec = build([to_ns("db", 80, proto=None), to_ns("db", 80, proto="0")])["shop"]
    assert rec.rules == () and rules.UNSUPPORTED_PEERS in rec.flags


def test_empty_input() -> None:
    assert build([], namespaces=("shop",)) == {"shop": Recommendation(namespace="shop")}
    assert build([to_ns("db", 80)], namespaces=()) == {}


def test_build_is_independent_of_row_order() -> None:
    rows = [to_ns(f"p{i % 5}", 8000 + i) for i in range(20)] + [
        to_net("pvt", f"10.0.{i}.1", 443) for i in range(9)
    ]
    assert build(rows) == build(rows[::-1]) == build(rows[7:] + rows[:7])


# --- hostile values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [
        to_ns("Bad_NS", 80),
        to_ns("db' || all() || '", 80),
        edge(dest_type="ns", dest_name_aggr="corp", dest_port=22, dest_labels=["env=a'b"]),
        edge(dest_type="ns", dest_name_aggr="../etc", dest_port=22),
        to_net("pub", "1.1.1.1", 443, dest_domains=["evil domain.com"]),
        to_net("pub", None, 443, dest_service_name="Svc\n", dest_service_namespace="x"),
        to_net("pvt", "10.0.0.1; rm -rf /", 443),
    ],
)
def test_hostile_values_never_reach_a_rule(row: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build([row])


def test_hostile_requested_namespace_is_rejected() -> None:
    with pytest.raises(ValueError):
        build([to_ns("db", 80)], namespaces=("shop", "kube-system\n"))


# --- maxRules folding -------------------------------------------------------------------------


def test_folding_thirty_peer_namespaces_fits_and_keeps_every_flow() -> None:
    peers = [f"peer-{i:02d}" for i in range(30)]
    observed = [(p, "TCP", 8000 + i) for i, p in enumerate(peers)]
    observed += [(p, "UDP", 53) for p in peers[:10]]
    rows = [to_ns(p, port, proto.lower()) for p, proto, port in observed]
    rec = build(rows, replace(BASE, max_rules=20))["shop"]
    assert len(rec.egress) <= 20
    for peer, proto, port in observed:
        assert any(allows(r, peer_ns=peer, proto=proto, port=port) for r in rec.egress), (
            peer,
            port,
        )
    assert rec.folded and all("fold" in note for note in rec.folded)
    assert not any(f.startswith(fold.OVER_MAX_RULES) for f in rec.flags)


def test_identical_ports_fold_without_widening() -> None:
    peers = [f"peer-{i:02d}" for i in range(25)]
    rows = [to_ns(p, 443) for p in peers] + [to_ns("solo", 22)]
    rec = build(rows, replace(BASE, max_rules=5))["shop"]
    assert len(rec.egress) == 2
    wide = next(r for r in rec.egress if len(r.namespaces) > 1)
    assert wide.namespaces == tuple(peers) and wide.ports == (PortRange(443, 443),)
    assert "folded" in wide.flags and wide.note


def test_a_fold_too_long_for_one_selector_is_split_within_the_crd_limit() -> None:
    """Calico Enterprise's CRDs cap a namespaceSelector at 1024 characters: 300 peers on one
    port fold into as few rules as fit, each selector within the cap, every peer kept."""
    peers = [f"team-{i:04d}" for i in range(300)]
    rows = [to_ns(p, 8080) for p in peers] + [to_ns("solo", 22)]
    rec = build(rows, replace(BASE, max_rules=8))["shop"]
    wide = [r for r in rec.egress if len(r.namespaces) > 1]
    # 300 names of 9 characters: 3,900 characters of names and quotes, at least four selectors
    assert len(wide) == len(fold.selector_chunks(peers)) in (4, 5)
    assert all(len(namespace_selector(r.namespaces)) <= fold.MAX_SELECTOR for r in wide)
    assert sorted(ns for r in wide for ns in r.namespaces) == peers
    assert all(r.ports == (PortRange(8080, 8080),) for r in wide)
    assert sum(r.evidence.edges for r in wide) == 300
    assert not any(f.startswith(fold.OVER_MAX_RULES) for f in rec.flags)
    assert any(f"into {len(wide)} (one selector is too long)" in n for n in rec.folded)


def test_domains_and_private_rules_fold() -> None:
    rows = [
        to_net("pub", "1.1.1.1", 8000 + i, dest_domains=[f"d{i}.example.com"]) for i in range(6)
    ]
    rows += [to_net("pvt", f"10.0.{i}.1", 9000 + i) for i in range(6)]
    rec = build(rows, replace(BASE, max_rules=2))["shop"]
    assert len(rec.egress) == 2
    dom, pvt = rec.egress
    assert (
        dom.scope == "Domains" and len(dom.domains) == 6 and dom.ports == (PortRange(8000, 8005),)
    )
    assert pvt.scope == "Private" and len(pvt.nets) <= BASE.private_cidr_cap
    assert all(cidr.covers(pvt.nets, f"10.0.{i}.1") for i in range(6))


def test_unfoldable_direction_is_kept_whole_and_flagged() -> None:
    rows = [
        edge(dest_type="ns", dest_name_aggr=f"set-{i}", dest_port=22, dest_labels=[f"n=s{i}"])
        for i in range(6)
    ]
    rec = build(rows, replace(BASE, max_rules=3))["shop"]
    assert len(rec.egress) == 6
    assert f"{fold.OVER_MAX_RULES}:egress" in rec.flags
    assert any("exceed maxRules" in note for note in rec.folded)


def test_a_direction_that_cannot_fit_is_not_widened() -> None:
    rows = [
        edge(dest_type="ns", dest_name_aggr=f"set-{i}", dest_port=22, dest_labels=[f"n=s{i}"])
        for i in range(6)
    ]
    rows += [to_ns("a", 80), to_ns("b", 81), to_ns("c", 81)]
    rec = build(rows, replace(BASE, max_rules=3))["shop"]
    ns_rules = only(rec, "Namespace")
    # b and c share their ports (lossless fold); a keeps its own port, nothing was widened.
    assert [(r.namespaces, tuple(map(str, r.ports))) for r in ns_rules] == [
        (("a",), ("80",)),
        (("b", "c"), ("81",)),
    ]
    assert f"{fold.OVER_MAX_RULES}:egress" in rec.flags


def test_any_port_rules_are_not_folded_into_port_rules() -> None:
    rows = [to_ns(f"p{i}", 8000 + i) for i in range(4)] + [
        to_ns("wide", None),
        to_ns("wide2", None),
    ]
    rec = build(rows, replace(BASE, max_rules=2))["shop"]
    assert len(rec.egress) == 2
    ported, anyport = sorted(rec.egress, key=lambda r: not r.ports)
    assert ported.namespaces == ("p0", "p1", "p2", "p3") and ported.ports == (
        PortRange(8000, 8003),
    )
    assert anyport.namespaces == ("wide", "wide2") and anyport.ports == ()


_dns_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(st.lists(_dns_labels, min_size=1, max_size=30, unique=True), _dns_labels)
@settings(max_examples=200, deadline=None)
def test_namespace_selectors_parse_and_select_exactly_their_namespaces(
    names: list[str], other: str
) -> None:
    """namespace_selector is not parsed back at run time: any list of namespace names must give
    a selector that parses and selects those namespaces and no other."""
    parsed = parse(namespace_selector(tuple(names)))
    assert all(parsed.matches({"projectcalico.org/name": n}) for n in names)
    assert parsed.matches({"projectcalico.org/name": other}) == (other in names)
    assert not parsed.matches({})

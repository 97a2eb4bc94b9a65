"""Properties of the whole engine over generated topologies, checked with the Calico evaluator.

Each example writes a small raw flow log (pod-to-pod connections with both reporters, public and
private peers with addresses, domains, DNS decided by the platform tier), runs
`pipeline.compute`, loads the rendered manifests (behind `fixtures/policies` when those are the
existing policies) into `evaluate.Evaluator`, and checks:

(a) every learned flow is allowed, decided in the recommendation tier (or, for a flow a tier
    before ours decides, by that tier);
(b) a namespace pair, protocol or port that was never observed is denied, on the egress and
    on the ingress side, by the end of the recommendation tier;
(c) an address that was never observed, public or private, is denied, unless the namespace has
    a public rule flagged `public-fallback` (then it is allowed, and the report says so).

The recommendations are StagedNetworkPolicies with stagedAction Learn; the evaluator previews
them as enforced, as Calico's pending-policy trace does.
"""

from __future__ import annotations

import ipaddress
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import yaml
from conftest import FLOW_NOW, FLOW_START, REPO, FlowLog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowfence.calico.evaluate import Edge, Endpoint, Evaluator, Verdict
from flowfence.calico.policies import PolicySet
from flowfence.calico.policy_docs import load_policies
from flowfence.config.settings import Settings
from flowfence.fixtures.generate import generate
from flowfence.flows import edges, sources
from flowfence.learn.model import PUBLIC_FALLBACK, Rule
from flowfence.run import pipeline

Direction = Literal["egress", "ingress"]

TIER = "namespace-isolation"
EXISTING = REPO / "fixtures" / "policies"
NOW = datetime.fromisoformat(FLOW_NOW)
NAMESPACES = ("alpha", "beta", "gamma", "delta")
GHOST = "omega"  # never in any flow
PORTS = (80, 443, 5432, 8080, 8081, 9090)
PROBE_PORTS = (*PORTS, 31337)
# At most 8 distinct private addresses in all (the default privateCidrCap): no aggregation.
# Spaced so that each has unobserved neighbours.
PRIVATE_POOL = (
    "10.1.0.2", "10.1.0.6", "10.1.0.9", "10.1.7.20",
    "10.200.3.3", "172.16.4.4", "192.168.5.10", "192.168.5.14",
)  # fmt: skip
PUBLIC_POOL = tuple(f"52.{i // 8}.{i % 8}.{3 * i + 1}" for i in range(24))
PROBE_ADDRESSES = {"pvt": ("10.99.99.99", "172.31.250.250"), "pub": ("9.9.9.9", "198.18.0.1")}
DOMAINS = ("api.example.com", "cdn.example.net", "hooks.test.org")

SLOW = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class PodFlow:
    src: str
    dst: str
    proto: str
    port: int | None


@dataclass(frozen=True)
class NetFlow:
    ns: str
    direction: Direction
    kind: Literal["pvt", "pub"]
    ip: str
    proto: str
    port: int | None
    domain: str | None = None


def _port(proto: str, port: int) -> int | None:
    return None if proto == "icmp" else port


pod_flows = st.builds(
    lambda src, dst, proto, port: PodFlow(src, dst, proto, _port(proto, port)),
    st.sampled_from(NAMESPACES),
    st.sampled_from(NAMESPACES),
    st.sampled_from(("tcp", "tcp", "udp", "sctp", "icmp")),
    st.sampled_from(PORTS),
)


def net_flows(kind: Literal["pvt", "pub"], pool: tuple[str, ...]) -> st.SearchStrategy[NetFlow]:
    return st.builds(
        lambda ns, direction, ip, proto, port: NetFlow(
            ns, direction, kind, ip, proto, _port(proto, port)
        ),
        st.sampled_from(NAMESPACES),
        st.sampled_from(("egress", "ingress")),
        st.sampled_from(pool),
        st.sampled_from(("tcp", "tcp", "udp", "icmp")),
        st.sampled_from(PORTS),
    )


domain_flows = st.builds(
    lambda ns, ip, domain, port: NetFlow(ns, "egress", "pub", ip, "tcp", port, domain),
    st.sampled_from(NAMESPACES),
    st.sampled_from(PUBLIC_POOL),
    st.sampled_from(DOMAINS),
    st.sampled_from((443, 8443)),
)


@st.composite
def crowds(draw: st.DrawFn) -> list[NetFlow]:
    """Sometimes more public clients of one namespace than publicCidrCap (16): fallback."""
    if not draw(st.booleans()):
        return []
    ns = draw(st.sampled_from(NAMESPACES))
    ips = draw(st.lists(st.sampled_from(PUBLIC_POOL), min_size=17, max_size=20, unique=True))
    return [NetFlow(ns, "ingress", "pub", ip, "tcp", 443) for ip in ips]


@dataclass(frozen=True)
class Topology:
    pods: list[PodFlow]
    nets: list[NetFlow]
    dns: list[str]  # namespaces resolving names through kube-system (platform decides)


topologies = st.builds(
    lambda pods, pvt, pub, doms, crowd, dns: Topology(pods, pvt + pub + doms + crowd, dns),
    st.lists(pod_flows, min_size=1, max_size=8),
    st.lists(net_flows("pvt", PRIVATE_POOL), max_size=4),
    st.lists(net_flows("pub", PUBLIC_POOL), max_size=5),
    st.lists(domain_flows, max_size=3),
    crowds(),
    st.lists(st.sampled_from(NAMESPACES), max_size=2, unique=True),
)


# --- from the topology to rows, edges and observations ---------------------------------------


def pod(ns: str) -> Endpoint:
    return Endpoint("wep", ns, f"{ns}-app-*", None, (f"app={ns}",))


def net(kind: str, ip: str) -> Endpoint:
    return Endpoint("net", None, kind, ip)


COREDNS = Endpoint("wep", "kube-system", "coredns-*", None, ("k8s-app=kube-dns",))
DNS_TRACE = ["0|platform|platform.allow-dns|allow|0"]


def rows(flowlog: FlowLog, topo: Topology) -> Iterator[dict[str, Any]]:
    for i, f in enumerate(topo.pods):
        yield from flowlog.pair(
            at=i,
            source_namespace=f.src,
            source_name_aggr=f"{f.src}-app-*",
            source_labels=[f"app={f.src}"],
            dest_namespace=f.dst,
            dest_name_aggr=f"{f.dst}-app-*",
            dest_labels=[f"app={f.dst}"],
            proto=f.proto,
            dest_port=f.port,
        )
    for i, n in enumerate(topo.nets):
        local = {"namespace": n.ns, "name_aggr": f"{n.ns}-app-*", "labels": [f"app={n.ns}"]}
        remote = {"type": "net", "namespace": "-", "name_aggr": n.kind, "ip": n.ip, "labels": []}
        src, dst = (local, remote) if n.direction == "egress" else (remote, local)
        fields = {f"source_{k}": v for k, v in src.items()} | {
            f"dest_{k}": v for k, v in dst.items()
        }
        yield flowlog.row(
            at=i,
            **fields,
            reporter="src" if n.direction == "egress" else "dst",
            proto=n.proto,
            dest_port=n.port,
            dest_domains=[n.domain] if n.domain else [],
        )
    for ns in topo.dns:
        yield flowlog.row(
            source_namespace=ns,
            source_name_aggr=f"{ns}-app-*",
            source_labels=[f"app={ns}"],
            dest_namespace="kube-system",
            dest_name_aggr="coredns-*",
            dest_labels=["k8s-app=kube-dns"],
            proto="udp",
            dest_port=53,
            policies=DNS_TRACE,
        )


def learned_edges(topo: Topology) -> Iterator[tuple[Direction, Edge]]:
    """Every flow the engine may learn from, as the evaluator's edges."""
    for f in topo.pods:
        edge = Edge(pod(f.src), pod(f.dst), f.port, f.proto)
        yield "egress", edge
        yield "ingress", edge
    for n in topo.nets:
        domains = (n.domain,) if n.domain else ()
        if n.direction == "egress":
            yield (
                "egress",
                Edge(pod(n.ns), net(n.kind, n.ip), n.port, n.proto, dest_domains=domains),
            )
        else:
            yield "ingress", Edge(net(n.kind, n.ip), pod(n.ns), n.port, n.proto)


Peer = tuple[str, str]  # ("ns", name) or (pvt|pub, ip)
Observed = dict[tuple[str, Direction], set[tuple[Peer, str, int | None]]]


def observed(topo: Topology) -> Observed:
    seen: Observed = defaultdict(set)
    for f in topo.pods:
        seen[(f.src, "egress")].add((("ns", f.dst), f.proto, f.port))
        seen[(f.dst, "ingress")].add((("ns", f.src), f.proto, f.port))
    for n in topo.nets:
        seen[(n.ns, n.direction)].add(((n.kind, n.ip), n.proto, n.port))
    return seen


@dataclass
class World:
    """One computed example: the topology, the run's result and an evaluator over it."""

    topo: Topology
    flavor: str
    existing: bool
    computation: pipeline.Computation
    evaluator: Evaluator = field(init=False)

    def __post_init__(self) -> None:
        self.evaluator = Evaluator(self.policy_set())

    def policy_set(self) -> PolicySet:
        docs = [
            yaml.safe_load(data)
            for name, data in sorted(self.computation.files.items())
            if not name.endswith("kustomization.yaml")
        ]
        return load_policies(EXISTING if self.existing else None, extra_docs=docs)

    def has_rules(self, ns: str, direction: Direction) -> bool:
        rec = self.computation.recommendations.get(ns)
        return rec is not None and bool(rec.egress if direction == "egress" else rec.ingress)

    def deciding_rule(self, verdict: Verdict) -> Rule | None:
        """The recommendation rule that decided `verdict` (None: not one of ours)."""
        hit = verdict.deciding
        if hit is None or hit.tier != TIER or hit.end_of_tier:
            return None
        ns = hit.policy.partition("/")[2].removeprefix(f"{TIER}.")
        rec = self.computation.recommendations[ns]
        return (rec.egress if verdict.direction == "egress" else rec.ingress)[hit.rule]


def compute(flowlog: FlowLog, topo: Topology, flavor: str, existing: bool) -> World:
    with tempfile.TemporaryDirectory() as tmp:
        path = flowlog.write(Path(tmp) / "flows.parquet", rows(flowlog, topo))
        request = pipeline.RunRequest(
            flows=path,
            out=Path(tmp) / "out",
            settings=replace(Settings(), flavor=flavor, max_rules=10_000),  # type: ignore[arg-type]
            now=NOW,
            existing_policies=EXISTING if existing else None,
        )
        return World(topo, flavor, existing, pipeline.compute(request))


def _show(edge: Edge, direction: Direction, verdict: Verdict) -> str:
    return f"{direction} {edge} -> {verdict.action} via {verdict.trace}"


def assert_denied_by_us(world: World, edge: Edge, direction: Direction) -> None:
    verdict = world.evaluator.evaluate(edge, direction)
    hit = verdict.deciding
    assert verdict.action == "deny", _show(edge, direction, verdict)
    assert hit is not None and hit.tier == TIER and hit.end_of_tier, _show(edge, direction, verdict)


def _between(
    local: Endpoint, remote: Endpoint, direction: Direction, port: int | None, proto: str
) -> Edge:
    if direction == "egress":
        return Edge(local, remote, port, proto)
    return Edge(remote, local, port, proto)


def _probes() -> Iterator[tuple[str, int | None]]:
    for proto in ("tcp", "udp"):
        for port in PROBE_PORTS:
            yield proto, port
    yield "icmp", None


def _neighbours(ip: str) -> tuple[str, str]:
    address = ipaddress.ip_address(ip)
    return str(address - 1), str(address + 1)


# --- the properties ---------------------------------------------------------------------------


def check_learned_flows_allowed(world: World) -> None:
    """(a)"""
    last_tier = "default" if world.flavor == "kubernetes" else TIER
    for direction, edge in learned_edges(world.topo):
        verdict = world.evaluator.evaluate(edge, direction)
        assert verdict.action == "allow", _show(edge, direction, verdict)
        assert verdict.deciding is not None and verdict.deciding.tier == last_tier
    for ns in world.topo.dns:
        edge = Edge(pod(ns), COREDNS, 53, "udp")
        verdict = world.evaluator.evaluate(edge, "egress")
        assert verdict.action == "allow", _show(edge, "egress", verdict)
        if world.existing:  # the platform tier decides DNS; nothing of ours is needed for it
            assert verdict.deciding is not None and verdict.deciding.tier == "platform"
            assert all(
                "kube-system" not in r.namespaces
                for r in world.computation.recommendations[ns].rules
            )


def check_unobserved_pairs_denied(world: World, seen: Observed) -> None:
    """(b)"""
    for ns in NAMESPACES:
        for direction in ("egress", "ingress"):
            if not world.has_rules(ns, direction):
                continue
            for peer in (*NAMESPACES, GHOST):
                for proto, port in _probes():
                    if (("ns", peer), proto, port) in seen[(ns, direction)]:
                        continue
                    assert_denied_by_us(
                        world, _between(pod(ns), pod(peer), direction, port, proto), direction
                    )


def check_unobserved_addresses_denied(world: World, seen: Observed) -> None:
    """(c) and the port half of (b) for address peers."""
    for (ns, direction), entries in seen.items():
        if not world.has_rules(ns, direction):
            continue
        for kind in ("pvt", "pub"):
            known = {peer[1] for peer, _, _ in entries if peer[0] == kind}
            candidates = set(PROBE_ADDRESSES[kind]) | known
            candidates |= {n for ip in known for n in _neighbours(ip)}
            for ip in sorted(candidates):
                for proto, port in _probes():
                    if ((kind, ip), proto, port) in entries:
                        continue
                    edge = _between(pod(ns), net(kind, ip), direction, port, proto)
                    verdict = world.evaluator.evaluate(edge, direction)
                    if kind == "pub" and verdict.action == "allow":
                        # Only a flagged fallback may admit an unobserved public address.
                        rule = world.deciding_rule(verdict)
                        assert rule is not None, _show(edge, direction, verdict)
                        assert PUBLIC_FALLBACK in rule.flags, _show(edge, direction, verdict)
                        continue
                    assert_denied_by_us(world, edge, direction)


def check_fallback_is_reported(world: World) -> None:
    report = world.computation.report
    for entry in report.namespaces:
        rec = world.computation.recommendations[entry.namespace]
        flagged = sum(PUBLIC_FALLBACK in r.flags for r in rec.rules)
        assert flagged == sum(PUBLIC_FALLBACK in r.flags for r in entry.rules)


@SLOW
@given(
    topo=topologies,
    flavor=st.sampled_from(("calico-enterprise", "calico")),
    existing=st.booleans(),
)
def test_recommendations_allow_exactly_what_was_observed(
    flowlog: FlowLog, topo: Topology, flavor: str, existing: bool
) -> None:
    world = compute(flowlog, topo, flavor, existing)
    seen = observed(topo)
    check_learned_flows_allowed(world)
    check_unobserved_pairs_denied(world, seen)
    check_unobserved_addresses_denied(world, seen)
    check_fallback_is_reported(world)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topo=topologies, existing=st.booleans())
def test_kubernetes_flavor_allows_every_learned_flow(
    flowlog: FlowLog, topo: Topology, existing: bool
) -> None:
    check_learned_flows_allowed(compute(flowlog, topo, "kubernetes", existing))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    namespaces=st.integers(min_value=4, max_value=12),
    flavor=st.sampled_from(("calico-enterprise", "calico")),
)
def test_synthetic_topology_learned_edges_are_allowed(
    seed: int, namespaces: int, flavor: str
) -> None:
    """(a) over the generator's synthetic cluster, whose traces come from fixtures/policies."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "flows"
        generate(
            "synthetic", out, seed=seed, rows=1500, namespaces=namespaces, start=FLOW_START, hours=1
        )
        s = replace(Settings(), flavor=flavor, max_rules=10_000)  # type: ignore[arg-type]
        request = pipeline.RunRequest(out, Path(tmp) / "out", s, NOW, existing_policies=EXISTING)
        computation = pipeline.compute(request)
        con = duckdb.connect()
        try:
            sources.bind_flows(con, out)
            frame = edges.aggregate(con)
        finally:
            con.close()
    docs = [
        yaml.safe_load(d)
        for n, d in computation.files.items()
        if not n.endswith("kustomization.yaml")
    ]
    evaluator = Evaluator(load_policies(EXISTING, extra_docs=docs))
    checked = 0
    for row in frame.filter(frame["action"] == "allow").iter_rows(named=True):
        direction: Direction = "egress" if row["reporter"] == "src" else "ingress"
        local = row["source_type" if direction == "egress" else "dest_type"]
        ns = row["source_namespace" if direction == "egress" else "dest_namespace"]
        if local != "wep" or ns not in computation.recommendations:
            continue
        edge = Edge.from_row(row)
        verdict = evaluator.evaluate(edge, direction)
        assert verdict.action == "allow", _show(edge, direction, verdict)
        checked += 1
        # Nothing from a namespace never seen, on the same port, gets through.
        if direction == "ingress":
            ghost = replace(edge, source=pod(GHOST))
        else:
            ghost = replace(edge, dest=pod(GHOST))
        if world_has(computation, ns, direction):
            verdict = evaluator.evaluate(ghost, direction)
            assert verdict.action == "deny" and verdict.deciding is not None, _show(
                ghost, direction, verdict
            )
    assert checked > 0


def world_has(computation: pipeline.Computation, ns: str, direction: Direction) -> bool:
    rec = computation.recommendations[ns]
    return bool(rec.egress if direction == "egress" else rec.ingress)

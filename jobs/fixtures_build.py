"""Building blocks of the fixture topologies: pods on nodes, and the flows between them.

`platform()` and `shared_flows()` are the namespaces and traffic every topology has (CoreDNS,
monitoring, the database and its nightly backup). Public addresses come from the documentation
ranges (RFC 5737) so the fixtures never name a real host's address.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from flowfence.fixtures_topology import Endpoint, Flow, Proto, Service

PUBLIC_CLIENTS = "203.0.113."  # ingress from the internet
PUBLIC_SERVERS = "198.51.100."  # SaaS APIs reached by domain
PARTNER_NETS = "192.0.2."  # network sets: partners .0/25, ad exchanges .128/25
PRIVATE_HOSTS = "10.20.0."  # outside the cluster, inside the company network


@dataclass(frozen=True)
class Workload:
    namespace: str
    name: str  # aggregated pod name, e.g. cart-7d9f8c6b5-*
    app: str
    port: int
    port_name: str
    pods: tuple[Endpoint, ...]
    service: bool = True

    def svc(self) -> Service | None:
        if not self.service:
            return None
        return Service(self.namespace, self.app, self.port_name, self.port)


class Cluster:
    """Places pods on nodes and hands out pod IPs, deterministically."""

    def __init__(self, hosts: tuple[str, ...], rng: random.Random) -> None:
        self.hosts = hosts
        self.rng = rng
        self._next_ip = [10] * len(hosts)
        self._next_host = 0

    def workload(
        self,
        namespace: str,
        app: str,
        port: int,
        port_name: str,
        *,
        replicas: int = 1,
        extra_labels: tuple[str, ...] = (),
        service: bool = True,
        name: str | None = None,
    ) -> Workload:
        digest = "".join(self.rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(9))
        aggr = name or f"{app}-{digest}-*"
        labels = tuple(sorted({f"app={app}", *extra_labels}))
        pods = []
        for _ in range(replicas):
            h = self._next_host % len(self.hosts)
            self._next_host += 1
            ip = f"192.168.{h + 1}.{self._next_ip[h]}"
            self._next_ip[h] += 1
            pods.append(Endpoint("wep", namespace, aggr, labels, ip, self.hosts[h]))
        return Workload(namespace, aggr, app, port, port_name, tuple(pods), service)


def connect(
    src: Workload,
    dst: Workload,
    weight: float,
    *,
    proto: Proto = "tcp",
    port: int | None = None,
    via_service: bool = True,
    nightly_hour: int | None = None,
    bytes_per_flow: float = 2000.0,
) -> list[Flow]:
    """Pod-to-pod flows for every (source pod, destination pod), sharing `weight`."""
    pairs = [(s, d) for s in src.pods for d in dst.pods]
    service = dst.svc() if via_service and proto != "icmp" else None
    dport = None if proto == "icmp" else (port if port is not None else dst.port)
    return [
        Flow(
            s,
            d,
            proto,
            dport,
            weight / len(pairs),
            service=service,
            nightly_hour=nightly_hour,
            bytes_per_flow=bytes_per_flow,
        )
        for s, d in pairs
    ]


def egress(
    src: Workload,
    dst: Endpoint,
    weight: float,
    *,
    proto: Proto = "tcp",
    port: int | None,
    domains: tuple[str, ...] = (),
    nightly_hour: int | None = None,
    bytes_per_flow: float = 2000.0,
) -> list[Flow]:
    """Flows from every pod of `src` to an endpoint outside the cluster (net or ns)."""
    return [
        Flow(
            s,
            dst,
            proto,
            port,
            weight / len(src.pods),
            domains=domains,
            nightly_hour=nightly_hour,
            bytes_per_flow=bytes_per_flow,
        )
        for s in src.pods
    ]


def ingress(src: Endpoint, dst: Workload, weight: float, *, service: Service | None) -> list[Flow]:
    """Flows from outside the cluster to every pod of `dst` (only the dst row exists)."""
    return [
        Flow(src, d, "tcp", dst.port, weight / len(dst.pods), service=service) for d in dst.pods
    ]


def net(kind: str, ip: str) -> Endpoint:
    return Endpoint("net", None, kind, (), ip, None)


def platform(c: Cluster) -> dict[str, Workload]:
    """The namespaces every topology shares: DNS, monitoring, the database and the backup job."""
    return {
        "coredns": c.workload(
            "kube-system",
            "coredns",
            53,
            "dns",
            replicas=2,
            extra_labels=("k8s-app=kube-dns",),
            name="coredns-5d78c9869d-*",
        ),
        "prometheus": c.workload(
            "monitoring", "prometheus", 9090, "web", replicas=2, name="prometheus-k8s-*"
        ),
        "grafana": c.workload("monitoring", "grafana", 3000, "http"),
        "blackbox": c.workload("monitoring", "blackbox-exporter", 9115, "http"),
        "postgres": c.workload("postgres", "postgres", 5432, "postgres", name="postgres-*"),
        "backup": c.workload(
            "batch",
            "db-backup",
            0,
            "-",
            service=False,
            name="db-backup-*",
            extra_labels=("job-name=db-backup",),
        ),
    }


def dns(
    w: Workload,
    coredns: Workload,
    weight: float,
    *,
    tcp: bool = False,
    nightly_hour: int | None = None,
) -> list[Flow]:
    """DNS from every pod of `w` to every CoreDNS pod through the kube-dns Service."""
    pairs = [(s, d) for s in w.pods for d in coredns.pods]
    each = weight / len(pairs)
    flows = [
        Flow(
            s,
            d,
            "udp",
            53,
            each,
            service=Service("kube-system", "kube-dns", "dns", 53),
            bytes_per_flow=80,
            response_ratio=2.0,
            nightly_hour=nightly_hour,
        )
        for s, d in pairs
    ]
    if tcp:
        flows += [
            Flow(
                s,
                d,
                "tcp",
                53,
                each / 20,
                service=Service("kube-system", "kube-dns", "dns-tcp", 53),
                bytes_per_flow=300,
                response_ratio=3.0,
                nightly_hour=nightly_hour,
            )
            for s, d in pairs
        ]
    return flows


def shared_flows(p: dict[str, Workload], scraped: list[Workload]) -> list[Flow]:
    """DNS upstream, scraping, dashboards, ICMP probes and the nightly backup."""
    flows: list[Flow] = []
    flows += egress(
        p["coredns"], net("pvt", PRIVATE_HOSTS + "2"), 1.0, proto="udp", port=53, bytes_per_flow=90
    )
    for w in (*scraped, p["postgres"]):
        flows += connect(p["prometheus"], w, 0.4, port=9102, via_service=False, bytes_per_flow=600)
    flows += connect(p["grafana"], p["prometheus"], 0.5)
    for w in (p["prometheus"], p["grafana"], p["blackbox"]):
        flows += dns(w, p["coredns"], 0.3)
    flows += egress(
        p["blackbox"],
        net("pvt", PRIVATE_HOSTS + "1"),
        0.2,
        proto="icmp",
        port=None,
        bytes_per_flow=64,
    )
    backup = p["backup"]
    flows += dns(backup, p["coredns"], 1.0, nightly_hour=2)
    flows += connect(backup, p["postgres"], 1.0, nightly_hour=2, bytes_per_flow=5e6)
    flows += egress(
        backup, net("pvt", PRIVATE_HOSTS + "50"), 1.0, port=22, nightly_hour=2, bytes_per_flow=5e7
    )
    return flows

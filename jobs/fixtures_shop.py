"""The two fixture topologies: `demo` (a small shop) and `synthetic` (N namespaces, Zipf skew).

Both return a tuple of logical `Flow`s; `fixtures_gen` turns flows into raw flow-log rows.
"""

from __future__ import annotations

import random

from flowfence.fixtures_build import (
    PARTNER_NETS,
    PRIVATE_HOSTS,
    PUBLIC_CLIENTS,
    PUBLIC_SERVERS,
    Cluster,
    connect,
    dns,
    egress,
    ingress,
    net,
    platform,
    shared_flows,
)
from flowfence.fixtures_topology import METADATA_IP, METADATA_PORT, Endpoint, Flow, Service


def demo(seed: int) -> tuple[Flow, ...]:
    """A small online shop: one namespace per microservice plus platform namespaces."""
    c = Cluster(("node-1", "node-2", "node-3"), random.Random(seed))
    p = platform(c)
    w = {
        "frontend": c.workload("frontend", "frontend", 443, "https", replicas=2),
        "cart": c.workload("cart", "cart", 7070, "grpc"),
        "checkout": c.workload("checkout", "checkout", 5050, "grpc"),
        "payment": c.workload("payment", "payment", 50051, "grpc"),
        "catalog": c.workload("catalog", "catalog", 3550, "grpc", replicas=2),
        "shipping": c.workload("shipping", "shipping", 50051, "grpc"),
        "email": c.workload("email", "email", 8080, "http"),
        "recommendation": c.workload("recommendation", "recommendation", 8080, "http"),
        "ads": c.workload("ads", "ads", 9555, "grpc"),
        "currency": c.workload("currency", "currency", 7000, "grpc"),
        "redis": c.workload("redis", "redis", 6379, "redis", name="redis-master-*"),
    }
    calls: dict[str, dict[str, float]] = {
        "frontend": {
            "cart": 5,
            "catalog": 8,
            "checkout": 2,
            "recommendation": 4,
            "ads": 3,
            "currency": 6,
            "shipping": 1,
        },
        "checkout": {
            "cart": 2,
            "payment": 1.5,
            "shipping": 1.5,
            "email": 1,
            "currency": 2,
            "catalog": 2,
        },
        "cart": {"redis": 6},
        "recommendation": {"catalog": 3},
    }
    flows: list[Flow] = []
    for src, targets in calls.items():
        for dst, weight in targets.items():
            flows += connect(w[src], w[dst], weight)
    flows += connect(w["catalog"], p["postgres"], 4)
    flows += connect(w["ads"], p["postgres"], 0.2)  # allowed at the source, denied at postgres
    for i, weight in enumerate((3.0, 1.5, 1.0, 0.8, 0.5, 0.4, 0.3, 0.2)):
        flows += ingress(
            net("pub", f"{PUBLIC_CLIENTS}{10 + i}"),
            w["frontend"],
            weight,
            service=Service("frontend", "frontend-external", "https", 443),
        )
    flows += egress(w["recommendation"], net("pub", METADATA_IP), 0.1, port=METADATA_PORT)
    flows += egress(
        w["payment"], net("pub", PUBLIC_SERVERS + "20"), 1.5, port=443, domains=("api.stripe.com",)
    )
    flows += egress(
        w["email"], net("pub", PUBLIC_SERVERS + "40"), 1.0, port=587, domains=("smtp.sendgrid.net",)
    )
    flows += egress(
        w["currency"],
        net("pub", PUBLIC_SERVERS + "60"),
        0.3,
        port=443,
        domains=("www.ecb.europa.eu", "www.ecb.europa.eu.edgekey.net"),
    )
    partners = Endpoint("ns", None, "partner-apis", ("partner=true",), PARTNER_NETS + "10")
    flows += egress(w["shipping"], partners, 1.0, port=443)
    exchanges = Endpoint("ns", "ads", "ad-exchanges", ("role=ad-exchange",), PARTNER_NETS + "140")
    flows += egress(w["ads"], exchanges, 1.0, port=443)
    for host in ("11", "12"):
        flows += egress(w["shipping"], net("pvt", PRIVATE_HOSTS + host), 0.8, port=5432)
    flows += connect(p["blackbox"], w["frontend"], 0.3, proto="icmp")
    for name, workload in w.items():
        flows += dns(
            workload,
            p["coredns"],
            2.0 if name in calls else 0.8,
            tcp=name in ("frontend", "checkout"),
        )
    flows += dns(p["postgres"], p["coredns"], 0.2)
    flows += shared_flows(p, list(w.values()))
    return tuple(flows)


def synthetic(namespaces: int, seed: int) -> tuple[Flow, ...]:
    """`namespaces` application namespaces with Zipf-skewed traffic between them."""
    rng = random.Random(seed)
    hosts = tuple(f"node-{i:02d}" for i in range(1, 21))
    c = Cluster(hosts, rng)
    p = platform(c)
    apps = [
        c.workload(
            f"ns-{i:04d}",
            "api",
            rng.choice((8080, 8443, 9090, 50051, 3000, 6379)),
            "http",
            replicas=rng.choice((1, 1, 2)),
        )
        for i in range(namespaces)
    ]
    flows: list[Flow] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(6 * namespaces):
        pair = (rng.randrange(namespaces), rng.randrange(namespaces))
        if pair in seen:
            continue
        seen.add(pair)
        # Rank by first appearance: 1/rank^1.2 gives a few hot pairs and a long tail.
        flows += connect(apps[pair[0]], apps[pair[1]], 10.0 / len(seen) ** 1.2)
    picks = rng.sample(range(namespaces), max(1, namespaces // 10))
    for k, i in enumerate(picks):
        app = apps[i]
        variant = k % 4
        if variant == 0:
            flows += ingress(
                net("pub", f"{PUBLIC_CLIENTS}{10 + k % 200}"), app, 0.3, service=app.svc()
            )
        elif variant == 1:
            flows += egress(
                app,
                net("pub", f"{PUBLIC_SERVERS}{10 + k % 200}"),
                0.2,
                port=443,
                domains=(f"api.vendor-{k}.example.com",),
            )
        elif variant == 2:
            flows += egress(app, net("pvt", f"{PRIVATE_HOSTS}{100 + k % 150}"), 0.2, port=5432)
        else:
            partners = Endpoint("ns", None, "partner-apis", ("partner=true",), PARTNER_NETS + "10")
            flows += egress(app, partners, 0.2, port=443)
        flows += connect(app, p["postgres"], 0.1)
        if k % 5 == 0:  # a library probing the cloud metadata service: denied at the source
            flows += egress(app, net("pub", METADATA_IP), 0.02, port=METADATA_PORT)
    for app in apps:
        flows += dns(app, p["coredns"], 0.05)
    flows += shared_flows(p, apps[: min(namespaces, 50)])
    return tuple(flows)

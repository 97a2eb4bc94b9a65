"""The model behind the fixture generator: endpoints, logical flows and their policy traces.

A `Flow` is one logical connection kind (source endpoint, destination endpoint, port, proto).
It becomes one raw row per reporter: `src` when the source is a pod, `dst` when the destination
is a pod, exactly as Felix reports it. The policy trace of each row is derived here from a small
hard-coded model of the existing policy set in `fixtures/policies/`, so the traces and the
manifests cannot disagree:

- tier `platform` (order 100, defaultAction Pass)
  - `platform.allow-dns` (order 10): every pod, egress; allows UDP 53 (rule 0) and TCP 53
    (rule 1) to `k8s-app == 'kube-dns'` in kube-system. Being the first policy that selects
    every pod for egress, it names the end-of-tier pass (-1) of any other egress.
  - `platform.block-metadata` (order 20): every pod, egress; denies TCP 80 to the cloud
    metadata address 169.254.169.254 (rule 0).
  - `platform.protect-postgres`: `app == 'postgres'` in namespace postgres, ingress; denies TCP
    from namespace `ads` (rule 0); anything else passes (-1).
- tier `default`: NetworkPolicy `monitoring/allow-scrape` selects `app == 'prometheus'` for
  egress and allows TCP 9102 to every namespace (rule 0).
- anything left over is allowed by the namespace profile.

Rows reported by a node running Calico 3.32 (`Endpoint.host` in `NEW_FORMAT_HOSTS`) spell the
hits in the 3.32 `kind:` form; all other nodes use the older form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EndpointType = Literal["wep", "net", "ns"]
Proto = Literal["tcp", "udp", "icmp"]
Action = Literal["allow", "deny"]
Reporter = Literal["src", "dst"]
HitKind = Literal["gnp", "np", "profile"]
HitAction = Literal["allow", "deny", "pass"]

# Nodes whose Felix writes the Calico 3.32 hit syntax (a cluster in the middle of an upgrade).
NEW_FORMAT_HOSTS = frozenset({"node-3", "node-07", "node-11", "node-15", "node-19"})

DNS_PORT = 53
SCRAPE_PORT = 9102
POSTGRES_NS = "postgres"
UNTRUSTED_NS = "ads"
METADATA_IP, METADATA_PORT = "169.254.169.254", 80


@dataclass(frozen=True)
class Endpoint:
    type: EndpointType
    namespace: str | None  # None is written as '-'
    name: str  # the aggregated name: pod prefix, network set name, or pub/pvt
    labels: tuple[str, ...] = ()
    ip: str | None = None
    host: str | None = None  # the node, for pods only

    @property
    def app(self) -> str | None:
        for label in self.labels:
            if label.startswith("app="):
                return label[4:]
        return None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    port_name: str
    port: int


@dataclass(frozen=True)
class Hit:
    tier: str
    kind: HitKind
    name: str  # stored policy name; the namespace for a profile
    action: HitAction
    rule: int
    namespace: str | None = None

    def render(self, index: int, new_format: bool) -> str:
        if self.kind == "profile":
            part = f"pro:kns.{self.name}" if new_format else f"__PROFILE__.kns.{self.name}"
        elif self.kind == "gnp":
            part = f"gnp:{self.name}" if new_format else self.name
        elif new_format:
            part = f"np:{self.namespace}/{self.name}"
        else:
            part = f"{self.namespace}/{self.tier}.{self.name}"
        return f"{index}|{self.tier}|{part}|{self.action}|{self.rule}"


@dataclass(frozen=True)
class Flow:
    src: Endpoint
    dst: Endpoint
    proto: Proto
    port: int | None  # None for ICMP
    weight: float  # relative rate among continuous flows
    service: Service | None = None
    domains: tuple[str, ...] = ()
    bytes_per_flow: float = 2000.0  # mean request bytes of one connection
    response_ratio: float = 4.0  # response bytes / request bytes
    nightly_hour: int | None = None  # set: happens once a day at HH:00, never otherwise

    def reporters(self) -> tuple[Reporter, ...]:
        out: list[Reporter] = []
        if self.src.type == "wep":
            out.append("src")
        if self.dst.type == "wep":
            out.append("dst")
        return tuple(out)


def _profile(ns: str | None) -> Hit:
    return Hit("__PROFILE__", "profile", ns or "-", "allow", 0)


def trace(flow: Flow, reporter: Reporter) -> tuple[Hit, ...]:
    """The hits Felix would log for `flow` seen by `reporter`, given fixtures/policies/."""
    if reporter == "src":
        src = flow.src
        if (
            flow.dst.namespace == "kube-system"
            and "k8s-app=kube-dns" in flow.dst.labels
            and flow.port == DNS_PORT
            and flow.proto in ("udp", "tcp")
        ):
            return (
                Hit(
                    "platform",
                    "gnp",
                    "platform.allow-dns",
                    "allow",
                    0 if flow.proto == "udp" else 1,
                ),
            )
        if flow.dst.ip == METADATA_IP and flow.proto == "tcp" and flow.port == METADATA_PORT:
            return (Hit("platform", "gnp", "platform.block-metadata", "deny", 0),)
        passed = Hit("platform", "gnp", "platform.allow-dns", "pass", -1)
        if src.namespace == "monitoring" and src.app == "prometheus":
            if flow.proto == "tcp" and flow.port == SCRAPE_PORT and flow.dst.type == "wep":
                return (passed, Hit("default", "np", "allow-scrape", "allow", 0, "monitoring"))
            raise ValueError("prometheus egress other than scrape would be denied by allow-scrape")
        return (passed, _profile(src.namespace))
    dst = flow.dst
    if dst.namespace == POSTGRES_NS and dst.app == "postgres":
        name = "platform.protect-postgres"
        if flow.proto == "tcp" and flow.src.namespace == UNTRUSTED_NS:
            return (Hit("platform", "gnp", name, "deny", 0),)
        return (Hit("platform", "gnp", name, "pass", -1), _profile(dst.namespace))
    return (_profile(dst.namespace),)


def render_trace(hits: tuple[Hit, ...], host: str | None) -> tuple[str, ...]:
    new_format = host in NEW_FORMAT_HOSTS
    return tuple(hit.render(i, new_format) for i, hit in enumerate(hits))


def verdict(hits: tuple[Hit, ...]) -> Action:
    return "deny" if hits[-1].action == "deny" else "allow"

"""The vectorised evaluation (calico/vector_eval.py, vector_sides.py, selector_expr.py) against
the reference evaluator: on random policy sets and random edges, every edge gets exactly the
verdict `Evaluator.evaluate` gives it alone, and the replay report built on it is the one a
per-edge reference evaluation builds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import calico_manifests
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_edge_classes import SETS, frame
from test_selector import LABELS, TREES

from flowfence.calico import vector_eval
from flowfence.calico.evaluate import Edge, Endpoint, Evaluator
from flowfence.calico.inventory import parse_inventory
from flowfence.calico.named_ports import NamedPorts
from flowfence.calico.policies import Direction
from flowfence.calico.policy_docs import policy_set
from flowfence.calico.selector import Selector
from flowfence.calico.selector_expr import to_expr
from flowfence.calico.verdict import Verdict
from flowfence.flows.edges import EDGE_SCHEMA
from flowfence.replay import audit
from flowfence.replay import render as replay_render

NAMESPACES = ("ns1", "ns2", "ns3")
NS_LABELS = {"ns1": {"team": "a"}, "ns2": {"team": "b"}}
SELECTORS = ("all()", "app == 'web'", "app != 'db'", "has(app)", "zone == 'corp'", "has(zone)",
             "app in {'web', 'db'}", "app not in {'cache'}", "app starts with 'we'", "!has(zone)",
             "global()", "projectcalico.org/namespace == 'ns2'")  # fmt: skip
NS_SELECTORS = ("projectcalico.org/name == 'ns1'", "all()", "global()", "team == 'a'",
                "projectcalico.org/name in {'ns1', 'ns2'}", "!has(team)")  # fmt: skip
IPS = ("10.20.3.7", "10.20.9.1", "10.30.0.1", "198.51.100.7", "198.51.100.200", "2001:db8::1",
       "192.0.2.9", "garbage", " 10.20.3.7")  # fmt: skip
NETS = ("10.20.0.0/16", "10.20.3.0/24", "198.51.100.0/25", "0.0.0.0/0", "2001:db8::/32")
ACTIONS = ("Allow", "Deny", "Pass", "Log")
SA = "projectcalico.org/serviceaccount"
INVENTORY = {"apiVersion": "v1", "kind": "List", "items": [
    {"kind": "Pod", "metadata": {"name": f"{app}-0", "namespace": ns, "labels": {"app": app}},
     "spec": {"containers": [{"ports": [{"name": "http", "containerPort": port,
                                         "protocol": "TCP"}]}]}}
    for ns, app, port in (("ns1", "web", 80), ("ns2", "web", 443), ("ns1", "db", 5432))
]}  # fmt: skip


def _one_in(draw: st.DrawFn, n: int) -> bool:
    return draw(st.integers(0, n - 1)) == 0


@st.composite
def remote(draw: st.DrawFn, destination: bool) -> dict[str, Any]:
    """The peer's entity: what most rules constrain."""
    out: dict[str, Any] = {}
    if destination and _one_in(draw, 6):
        return {"domains": [draw(st.sampled_from(("api.example.com", "*.example.com")))]}
    if destination and _one_in(draw, 8):
        return {"services": {"name": "web", "namespace": draw(st.sampled_from(NAMESPACES))}}
    if _one_in(draw, 3):
        out["selector"] = draw(st.sampled_from(SELECTORS))
    if _one_in(draw, 4):
        out["namespaceSelector"] = draw(st.sampled_from(NS_SELECTORS))
    if _one_in(draw, 6):
        out["notSelector"] = draw(st.sampled_from(SELECTORS))
    if _one_in(draw, 8):
        sa: dict[str, Any] = {}
        if draw(st.booleans()):
            sa["names"] = draw(st.lists(st.sampled_from(("sa1", "sa2")), min_size=1, unique=True))
        if draw(st.booleans()):
            sa["selector"] = draw(st.sampled_from(("role == 'x'", "has(role)", "all()")))
        out["serviceAccounts"] = sa
    if _one_in(draw, 4):
        out["nets"] = draw(st.lists(st.sampled_from(NETS), min_size=1, max_size=2, unique=True))
    if _one_in(draw, 6):
        out["notNets"] = [draw(st.sampled_from(NETS))]
    return out


@st.composite
def local(draw: st.DrawFn) -> dict[str, Any]:
    """The selected endpoint's own entity: mostly empty, as in real policies."""
    if _one_in(draw, 12):
        return {"services": {"name": "web", "namespace": "ns1"}}
    out: dict[str, Any] = {}
    if _one_in(draw, 4):
        out["selector"] = draw(st.sampled_from(SELECTORS))
    if _one_in(draw, 8):
        out["notSelector"] = draw(st.sampled_from(SELECTORS))
    if _one_in(draw, 12):
        out["nets"] = [draw(st.sampled_from(NETS))]
    return out


@st.composite
def rules(draw: st.DrawFn, egress: bool) -> dict[str, Any]:
    rule: dict[str, Any] = {"action": draw(st.sampled_from(ACTIONS))}
    src, dst = (
        (draw(local()), draw(remote(True))) if egress else (draw(remote(False)), draw(local()))
    )
    ports = False
    if "services" not in dst and "domains" not in dst:
        if _one_in(draw, 3):
            dst["ports"] = [draw(st.sampled_from((80, 443, "5000:6000", 53, "http")))]
        if _one_in(draw, 5):
            dst["notPorts"] = [draw(st.sampled_from((80, "400:500", "http", 53, 443)))]
        ports = "ports" in dst or "notPorts" in dst
    if "services" not in src and _one_in(draw, 15):
        src["ports"] = [80]
        ports = True
    if src.get("services") and not egress:
        src.pop("services")
    for side, entity in (("source", src), ("destination", dst)):
        if entity:
            rule[side] = entity
    if ports or draw(st.booleans()):
        rule["protocol"] = draw(st.sampled_from(("TCP", "UDP")))
    elif _one_in(draw, 4):
        rule["notProtocol"] = draw(st.sampled_from(("TCP", "UDP", 1)))
    if _one_in(draw, 6):
        rule["ipVersion"] = draw(st.sampled_from((4, 6)))
    if "domains" in dst:
        rule["action"] = "Allow"
    return rule


@st.composite
def manifests(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name},
         "spec": {**order, "defaultAction": draw(st.sampled_from(("Deny", "Pass")))}}
        for name, order in (("t1", {"order": 100}), ("t2", {"order": 200}), ("t3", {}))
    ]  # fmt: skip
    out += SETS
    for i in range(draw(st.integers(1, 6))):
        namespaced = draw(st.booleans())
        spec: dict[str, Any] = {
            "tier": draw(st.sampled_from(("t1", "t2", "t3", "default"))),
            "selector": draw(st.sampled_from(SELECTORS)),
            "ingress": draw(st.lists(rules(False), max_size=4)),
            "egress": draw(st.lists(rules(True), max_size=4)),
        }
        if draw(st.integers(0, 3)) == 0:
            spec["types"] = [draw(st.sampled_from(("Ingress", "Egress")))]
        if not namespaced and draw(st.integers(0, 3)) == 0:
            spec["namespaceSelector"] = draw(st.sampled_from(NS_SELECTORS))
        if draw(st.integers(0, 5)) == 0:
            spec["serviceAccountSelector"] = "role == 'x'"
        namespace = draw(st.sampled_from(NAMESPACES)) if namespaced else None
        out.append(calico_manifests.policy(i, spec, namespace))
    return out


@st.composite
def labels(draw: st.DrawFn) -> tuple[str, ...]:
    out = [f"app={draw(st.sampled_from(('web', 'db', 'cache')))}"] if draw(st.booleans()) else []
    if draw(st.integers(0, 3)) == 0:
        out.append("zone=corp")
    if draw(st.booleans()):
        out.append(f"{SA}={draw(st.sampled_from(('sa1', 'sa2')))}")
        if draw(st.booleans()):
            out.append("pcsa.role=x")
    return tuple(out)


@st.composite
def endpoints(draw: st.DrawFn, local: bool) -> Endpoint:
    kinds = ("wep", "wep", "hep") if local else ("wep", "wep", "hep", "net", "net", "ns", "")
    kind = draw(st.sampled_from(kinds))
    if kind == "wep":
        found = draw(labels())
        name = draw(st.sampled_from(("web-*", "db-*", "x-*")))
        return Endpoint("wep", draw(st.sampled_from(NAMESPACES)), name, None, found)
    if kind == "hep":
        return Endpoint("hep", None, "node-*", None, draw(labels()))
    if kind == "net":
        ip = draw(st.sampled_from((*IPS, None)))
        return Endpoint("net", None, draw(st.sampled_from(("pub", "pvt", "-"))), ip)
    if kind == "ns":
        ns = draw(st.sampled_from((None, "ns1")))
        return Endpoint("ns", ns, draw(st.sampled_from(("corp", "dmz", "unknown"))), None,
                        draw(st.sampled_from(((), ("zone=corp",)))))  # fmt: skip
    return Endpoint("", None, None, draw(st.sampled_from(IPS)))


@st.composite
def edges(draw: st.DrawFn) -> tuple[Edge, Direction]:
    direction: Direction = draw(st.sampled_from(("ingress", "egress")))
    local, remote = draw(endpoints(True)), draw(endpoints(False))
    src, dst = (local, remote) if direction == "egress" else (remote, local)
    service = draw(st.sampled_from((None, ("ns1", "web"), ("ns2", "web"))))
    domains = draw(st.sampled_from(((), ("api.example.com",), ("a.b.example.com", "x.org"))))
    port = draw(st.sampled_from((53, 80, 443, 5432, 5001, None)))
    proto = draw(st.sampled_from(("tcp", "udp", "6", "icmp", None)))
    svc_ns, svc_name = service if service else (None, None)
    return Edge(src, dst, port, proto, svc_ns, svc_name, domains), direction


def evaluator(docs: list[dict[str, Any]], inventory: bool) -> Evaluator:
    ports = NamedPorts(parse_inventory(INVENTORY)) if inventory else None
    return Evaluator(policy_set(docs), namespaces=NS_LABELS, named_ports=ports)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    manifests(),
    st.lists(edges(), min_size=1, max_size=60),
    st.sampled_from((150.0, 250.0, None)),
    st.booleans(),
)
def test_every_edge_gets_the_verdict_the_evaluator_gives_it_alone(
    docs: list[dict[str, Any]],
    sample: list[tuple[Edge, Direction]],
    before: float | None,
    inventory: bool,
) -> None:
    ids, found = vector_eval.verdicts(
        evaluator(docs, inventory), frame(sample), before_order=before
    )
    reference = evaluator(docs, inventory)
    assert ids.len() == len(sample)
    for i, (edge, direction) in enumerate(sample):
        assert found[ids[i]] == reference.evaluate(edge, direction, before_order=before), edge
    names = vector_eval.deciding(evaluator(docs, inventory), frame(sample), before_order=before)
    assert names.to_list() == [
        None if (hit := found[i].deciding) is None else f"{hit.tier}|{hit.policy}|{hit.action}"
        for i in ids.to_list()
    ]


def _rows(sample: list[tuple[Edge, Direction]], draw: st.DrawFn) -> Iterator[dict[str, Any]]:
    for edge, direction in sample:
        row = frame([(edge, direction)]).drop("direction").row(0, named=True)
        flows = draw(st.integers(1, 5))
        yield {
            **row, "reporter": "src" if direction == "egress" else "dst",
            "action": draw(st.sampled_from(("allow", "allow", "deny"))),
            "dest_service_port_num": None,
            "enforced_policies": draw(st.sampled_from(
                ([], ["0|allow-tigera|gnp:allow-tigera.x|allow|0"], ["0|t1|gnp:p0|pass|-1"]))),
            "pending_policies": [], "first_seen": datetime(2026, 11, 1),
            "last_seen": datetime(2026, 11, 2), "flows": flows, "bytes": 100 * flows,
            "packets": flows, "days": 1, "rows": 1,
        }  # fmt: skip


def _reference_verdicts(
    evaluator: Evaluator, frame: pl.DataFrame, *, before_order: float | None = None
) -> tuple[pl.Series, list[Verdict]]:
    """One reference evaluation per edge: what vector_eval stands in for."""
    found = [
        evaluator.evaluate(Edge.from_row(row), row["direction"], before_order=before_order)
        for row in frame.iter_rows(named=True)
    ]
    return pl.Series(range(len(found)), dtype=pl.UInt32), found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests(), st.lists(edges(), min_size=1, max_size=30), st.data())
def test_the_replay_report_is_the_one_per_edge_evaluation_builds(
    docs: list[dict[str, Any]], sample: list[tuple[Edge, Direction]], data: st.DataObject
) -> None:
    frame_ = pl.DataFrame(list(_rows(sample, data.draw)), schema=EDGE_SCHEMA)
    policies = policy_set(docs)
    tier = data.draw(st.sampled_from((None, "t1", "default")))
    fast = audit.compute(frame_, policies, namespaces=NS_LABELS, tier=tier)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vector_eval, "verdicts", _reference_verdicts)
        slow = audit.compute(frame_, policies, namespaces=NS_LABELS, tier=tier)
    assert fast == slow
    assert replay_render.to_json(fast) == replay_render.to_json(slow)


@settings(max_examples=300, deadline=None)
@given(TREES, st.lists(LABELS, min_size=1, max_size=8))
def test_a_selector_expression_says_what_the_matcher_says(
    tree: Any, maps: list[dict[str, str]]
) -> None:
    selector = Selector(tree)
    keys = sorted({k for m in maps for k in m})
    table = pl.DataFrame(
        {"i": range(len(maps)), **{f"x:{k}": [m.get(k) for m in maps] for k in keys}},
        schema={"i": pl.Int64, **dict.fromkeys((f"x:{k}" for k in keys), pl.String)},
    )
    # Next to a column, as vector_sides uses it: a selector of literals alone broadcasts.
    got = table.select("i", to_expr(selector, "x:", table.columns).alias("m"))
    assert got.get_column("m").to_list() == [selector.matches(m) for m in maps]


def test_every_rule_part_on_a_grid_of_edges() -> None:
    """A fixed set with one rule per part (notPorts, named ports, services, domains,
    notSelector, serviceAccounts, ipVersion, notProtocol, nets) over every combination of a
    few peers, ports and protocols: random sets reach some of these combinations rarely."""
    ingress = [
        {"action": "Deny", "protocol": "TCP", "destination": {"notPorts": [80, 443]}},
        {"action": "Pass", "protocol": "TCP", "destination": {"ports": ["http"]},
         "source": {"notSelector": "app == 'db'"}},
        {"action": "Allow", "source": {"serviceAccounts": {"names": ["sa1"]}}},
        {"action": "Deny", "ipVersion": 6, "source": {"notNets": ["10.20.0.0/16"]}},
        {"action": "Allow", "notProtocol": "UDP", "source": {"nets": ["10.20.3.0/24"]}},
    ]  # fmt: skip
    egress = [
        {"action": "Allow", "destination": {"domains": ["*.example.com"]}},
        {"action": "Deny", "destination": {"services": {"name": "web", "namespace": "ns1"}}},
        {"action": "Allow", "protocol": "UDP", "destination": {"notPorts": [53]}},
    ]  # fmt: skip
    docs = [*SETS,
            {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
             "metadata": {"name": "grid"},
             "spec": {"selector": "all()", "ingress": ingress, "egress": egress}}]  # fmt: skip
    pods = [Endpoint("wep", ns, f"{app}-*", None, (f"app={app}", *extra))
            for ns in ("ns1", "ns2") for app in ("web", "db")
            for extra in ((), (f"{SA}=sa1",))]  # fmt: skip
    peers = [*pods[:4], Endpoint("net", None, "pvt", "10.20.3.7"),
             Endpoint("net", None, "pub", "2001:db8::1"), Endpoint("net", None, "pub", None),
             Endpoint("ns", None, "corp")]  # fmt: skip
    sample: list[tuple[Edge, Direction]] = []
    for local_ep in pods:
        for peer in peers:
            for port in (53, 80, 443, 5432):
                for proto in ("tcp", "udp"):
                    for service, domains in ((None, ()), (("ns1", "web"), ("a.example.com",))):
                        svc_ns, svc = service or (None, None)
                        sample.append((Edge(peer, local_ep, port, proto, svc_ns, svc), "ingress"))
                        sample.append(
                            (Edge(local_ep, peer, port, proto, svc_ns, svc, domains), "egress")
                        )
    hit: set[int] = set()
    for inventory in (False, True):
        ids, found = vector_eval.verdicts(evaluator(docs, inventory), frame(sample))
        reference = evaluator(docs, inventory)
        got = [found[i] for i in ids.to_list()]
        assert got == [reference.evaluate(e, d) for e, d in sample]
        hit |= {h.rule for v in got for h in v.hits}
    assert hit >= {-1, 0, 1, 2, 3, 4}  # the named port (rule 1) resolves with the inventory

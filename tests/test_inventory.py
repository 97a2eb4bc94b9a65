"""The inventory parser (`kubectl get pods -A -o json`): valid pods grouped with their named
ports, Namespace items read as --namespaces would, hostile items skipped and reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowfence.calico import inventory as inv
from flowfence.calico.inventory import NamedPort, load_inventory, parse_inventory
from flowfence.calico.names import is_dns1123_subdomain
from flowfence.core.errors import ConfigError


def pod(
    name: str,
    namespace: str = "shop",
    labels: dict[str, Any] | None = None,
    ports: list[Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [{"name": "main", "ports": ports or []}]},
    }


def namespace(name: str, labels: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def listing(*items: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {}}


HTTP = {"name": "http", "containerPort": 8080, "protocol": "TCP"}


def test_pods_group_by_namespace_labels_and_ports() -> None:
    found = parse_inventory(
        listing(
            pod("web-a", labels={"app": "web"}, ports=[HTTP, {"containerPort": 9090}]),
            pod("web-b", labels={"app": "web"}, ports=[HTTP]),
            pod("dns-1", "kube-system", {"k8s-app": "dns"},
                [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]),
            pod("plain", ports=[{"containerPort": 80}]),
        )
    )  # fmt: skip
    assert found.pod_count == 4 and found.problems == () and found.namespaces is None
    assert [(g.namespace, sorted(g.labels), g.ports, g.names) for g in found.pods] == [
        ("kube-system", ["k8s-app=dns"], (NamedPort("dns", 17, 53),), ("dns-1",)),
        ("shop", ["app=web"], (NamedPort("http", 6, 8080),), ("web-a", "web-b")),
    ]


def test_namespace_items_give_the_namespace_list_and_labels() -> None:
    found = parse_inventory(
        listing(namespace("shop", {"team": "a", "bad key!": "x"}), namespace("db"), pod("p"))
    )
    assert found.namespaces == {"db": {}, "shop": {"team": "a"}}
    assert found.problems == ("namespace shop: invalid label 'bad key!'='x', skipped",)
    # --namespaces takes precedence; the inventory fills in only without it.
    assert inv.namespace_labels(found, {"other": {}}) == {"other": {}}
    assert inv.namespace_labels(found, None) == found.namespaces
    assert "not used" in inv.notes(found, namespaces_given=True)[-1]


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (pod("Bad_Name"), "item 0: invalid pod name 'Bad_Name', skipped"),
        (pod("p", namespace="a.b"), "item 0: pod p: invalid namespace 'a.b', skipped"),
        (pod("p", labels={"app": "x y"}), "pod shop/p: invalid labels, skipped"),
        (pod("p", ports=[{**HTTP, "containerPort": 70000}]), "invalid containerPort 70000"),
        (pod("p", ports=[{**HTTP, "containerPort": True}]), "invalid containerPort True"),
        (pod("p", ports=[{**HTTP, "protocol": "ICMP"}]), "invalid protocol 'ICMP'"),
        (pod("p", ports=[{**HTTP, "name": "HTTP"}]), "invalid port name 'HTTP'"),
        (pod("p", ports=[{**HTTP, "name": "1234"}]), "invalid port name '1234'"),
        (pod("p", ports=[{**HTTP, "name": "a--b"}]), "invalid port name 'a--b'"),
        (pod("p", ports=[HTTP, {**HTTP, "containerPort": 81}]), "port name http used twice"),
        ({"kind": "Service", "metadata": {"name": "s"}}, "kind 'Service' is not a Pod"),
        ("text", "kind None is not a Pod or Namespace"),
        (namespace("-x"), "invalid namespace name '-x'"),
    ],
)
def test_bad_items_are_reported_and_skipped(item: Any, problem: str) -> None:
    found = parse_inventory(listing(item, pod("good", ports=[HTTP])))
    assert any(problem in p for p in found.problems), found.problems
    # Only the bad part is dropped: a pod keeps its first `http`, a bad port drops alone.
    assert "good" in found.pods[0].names
    assert [p for g in found.pods for p in g.ports] == [NamedPort("http", 6, 8080)]


def test_problems_are_capped() -> None:
    found = parse_inventory(listing(*(pod(f"P{i}") for i in range(100))))
    assert len(found.problems) == inv.MAX_PROBLEMS + 1
    assert found.problems[-1] == f"{100 - inv.MAX_PROBLEMS} more inventory problems"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: v1\nkind: List\n", "not JSON"),
        ('{"kind": "Pod", "metadata": {}}', "not a List of Pods (kind 'Pod')"),
        ("[1, 2]", "not a List of Pods (kind 'list')"),
        ('{"kind": "List", "items": {}}', "items must be a list"),
        ("\xff\xfe", "not JSON"),
        # Past Python's 4300-digit limit json raises a plain ValueError (was a traceback).
        ('{"kind": "List", "items": [' + "1" * 5000 + "]}", "not JSON"),
    ],
)
def test_unusable_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "inventory.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match="--inventory .*" + message.replace("(", r"\(")
                       .replace(")", r"\)")):  # fmt: skip
        load_inventory(path)


# -- property: generated pod lists round-trip; hostile entries are skipped and reported ------

_dns = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_port_name = st.from_regex(r"[a-z]{1,6}(-[a-z0-9]{1,4})?", fullmatch=True)
_labels = st.dictionaries(
    st.sampled_from(["app", "tier", "example.com/team"]),
    st.from_regex(r"[a-z0-9]{0,5}", fullmatch=True),
    max_size=3,
)
_ports = st.dictionaries(
    _port_name,
    st.tuples(st.integers(1, 65535), st.sampled_from(["TCP", "UDP", "SCTP"])),
    max_size=3,
)
_pods = st.dictionaries(st.tuples(_dns, _dns), st.tuples(_labels, _ports), max_size=8)
_bad_number = st.one_of(
    st.integers(max_value=0), st.integers(min_value=65536), st.text(), st.booleans()
)
_hostile = st.one_of(
    st.builds(pod, st.text(max_size=5).filter(lambda s: not is_dns1123_subdomain(s))),
    st.builds(lambda p: pod("h", ports=[{"name": "web", "containerPort": p}]), _bad_number),
    st.builds(
        lambda n: pod("h", ports=[{"name": n, "containerPort": 80}]),
        st.text(max_size=20).filter(lambda s: not inv.is_port_name(s)),
    ),
    st.builds(lambda v: pod("h", labels={"app": v}), st.text(min_size=64, max_size=70)),
    st.just({"kind": "Pod", "metadata": "nope"}),
    st.integers(),
)


@given(_pods, st.lists(_hostile, max_size=4))
def test_generated_pod_lists_round_trip(
    pods: dict[tuple[str, str], tuple[dict[str, str], dict[str, tuple[int, str]]]],
    hostile: list[Any],
) -> None:
    items = [
        pod(name, ns, labels,
            [{"name": n, "containerPort": p, "protocol": proto} for n, (p, proto) in ports.items()])
        for (ns, name), (labels, ports) in pods.items()
    ]  # fmt: skip
    # A hostile item sits in its own namespace (`h` names are the hostile ones' only).
    found = parse_inventory(json.loads(json.dumps(listing(*items, *hostile))))
    assert len(found.problems) >= min(len(hostile), inv.MAX_PROBLEMS)
    back = {
        (g.namespace, name): (g.labels, g.ports)
        for g in found.pods
        for name in g.names
        if name != "h"
    }
    want = {
        (ns, name): (
            frozenset(f"{k}={v}" for k, v in labels.items()),
            tuple(sorted(NamedPort(n, {"TCP": 6, "UDP": 17, "SCTP": 132}[pr], p)
                         for n, (p, pr) in ports.items())),
        )
        for (ns, name), (labels, ports) in pods.items()
        if ports and name != "h"
    }  # fmt: skip
    assert back == want
    assert all(0 < p.port < 65536 for g in found.pods for p in g.ports)

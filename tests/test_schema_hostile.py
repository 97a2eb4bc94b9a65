"""No document, however hostile, makes the validator raise, and every message it gives is
one printable line."""

from __future__ import annotations

import copy
import math
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schema_kubernetes import K8S_DOCS
from test_schema_rules import _policy

from flowfence.calico import schema
from flowfence.calico.schema import CrdSet, check

KEYS = sorted(
    {
        "apiVersion", "kind", "metadata", "spec", "name", "namespace", "labels", "annotations",
        "ingress", "egress", "source", "destination", "action", "protocol", "notProtocol",
        "ports", "notPorts", "nets", "notNets", "selector", "notSelector", "namespaceSelector",
        "services", "serviceAccounts", "domains", "icmp", "notICMP", "code", "type", "http",
        "ipVersion", "types", "tier", "order", "defaultAction", "preDNAT", "doNotTrack",
        "applyOnForward", "podSelector", "policyTypes", "to", "from", "ipBlock", "cidr",
        "except", "port", "endPort", "matchLabels", "matchExpressions", "operator", "values",
        "key", "namespaceSpec", "hostEndpointSpec", "stagedAction",
    }
)  # fmt: skip
HOSTILE = st.sampled_from(
    ["\x1b[2J", "\u202egnp", "global()", "a == 'b", "(" * 100, "10.0.0.0/8", "fd00::/8",
     "1:2", "99999:1", "TCP", "ICMP", "Allow", "", " ", "\x00", "🙂", "%eth0"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    HOSTILE,
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=6
        ),
    ),
    max_leaves=40,
)
KINDS = st.sampled_from(
    [(crds, api, kind) for crds in schema.CRD_SETS for api, kind in schema.kinds(crds)]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(KINDS, VALUES, VALUES)
def test_hostile_documents_never_raise(
    kind: tuple[CrdSet, str, str], metadata: Any, spec: Any
) -> None:
    crds = kind[0]
    doc = {"apiVersion": kind[1], "kind": kind[2], "metadata": metadata, "spec": spec}
    problems = check(doc, crds, require_namespace=True)
    assert problems is not None
    for p in problems:
        assert p.message.isprintable() and "\n" not in p.message
        assert len(p.message) <= 300


def test_numbers_that_are_not_numbers_do_not_confuse_the_rules() -> None:
    doc = _policy("NetworkPolicy")
    doc["spec"]["egress"][0]["protocol"] = math.nan
    doc["spec"]["egress"][0]["ipVersion"] = [4]
    doc["spec"]["types"] = [["Ingress"], ["Ingress"]]
    problems = check(doc, "calico") or []
    assert any(re.search("protocol", p.path) for p in problems)


def _containers(node: Any) -> list[Any]:
    """Every dict and list inside `node`, `node` included."""
    out = [node] if isinstance(node, (dict, list)) else []
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        out += _containers(child)
    return out


BASES = [_policy(kind) for kind in schema.POLICY_KINDS] + K8S_DOCS[:2]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(range(len(BASES))),
    st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(KEYS), VALUES), max_size=6),
    st.sampled_from(schema.CRD_SETS),
)
def test_hostile_edits_deep_in_a_valid_policy_never_raise(
    base: int, edits: list[tuple[int, str, Any]], crds: CrdSet
) -> None:
    doc = copy.deepcopy(BASES[base])
    for where, key, value in edits:
        targets = _containers(doc)
        target = targets[where % len(targets)]
        if target is doc and key in ("apiVersion", "kind"):
            continue  # another kind is another test (test_hostile_documents_never_raise)
        if isinstance(target, dict):
            target[key] = value
        elif target:
            target[where % len(target)] = value
    problems = check(doc, crds, require_namespace=True)
    assert problems is not None
    assert all(p.message.isprintable() for p in problems)

"""Kubernetes NetworkPolicy: the standalone schema agrees with kubernetes-validate's, and the
API server's own rules (schema_kubernetes.py) are applied."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from flowfence.calico import schema
from flowfence.calico.schema import NETWORKING, check

Doc = dict[str, Any]


def _k8s(**spec: Any) -> Doc:
    return {
        "apiVersion": NETWORKING,
        "kind": "NetworkPolicy",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], **spec},
    }


K8S_DOCS = [
    _k8s(egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]),
    _k8s(egress=[{"ports": [{"protocol": "TCP", "port": 80, "endPort": 90}]}]),
    _k8s(egress=[{"to": [{"cidr": "1.2.3.4/32"}]}]),
    _k8s(egress=[{"ports": [{"protocol": "TCP", "port": 1, "endPort": "x"}]}]),
    _k8s(ingress=[{"from": [{"podSelector": {"matchLabels": {"a": "b"}}}]}], bogus=1),
    {**_k8s(), "metadata": {"name": "web", "namespace": "shop", "labelz": {}}},
    {**_k8s(), "status": {}},
]


@pytest.mark.parametrize("doc", K8S_DOCS)
def test_the_standalone_networkpolicy_schema_agrees_with_kubernetes_validate(doc: Doc) -> None:
    found = schema.schema("calico", NETWORKING, "NetworkPolicy")
    assert found is not None
    ours = found.validator.is_valid(doc)
    try:
        kubernetes_validate.validate(doc, "1.33", strict=True)
        theirs = True
    except kubernetes_validate.ValidationError:
        theirs = False
    assert ours == theirs


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]},
         "strict subset"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.1"}}]}]}, "is not a CIDR"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
         "both ipBlock"),
        ({"egress": [{"to": [{}]}]}, "must specify a peer"),
        ({"egress": [{"ports": [{"port": 90, "endPort": 80}]}]}, "greater than or equal"),
        ({"egress": [{"ports": [{"port": "http", "endPort": 80}]}]}, "non-numeric"),
        ({"egress": [{"ports": [{"protocol": "ICMP"}]}]}, "unsupported value"),
        ({"policyTypes": ["Sideways"]}, "unsupported value"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
         "must be specified"),
        ({"podSelector": {"matchLabels": {"a": "b c"}}}, "not a label value"),
    ],
)  # fmt: skip
def test_kubernetes_api_server_rules(spec: dict[str, Any], message: str) -> None:
    problems = check(_k8s(**spec), "calico", require_namespace=True)
    assert problems is not None
    assert any(message in p.message for p in problems), problems

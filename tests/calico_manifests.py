"""Calico manifests for the tests' hypothesis strategies (test_evaluate, test_edge_classes,
test_vector_eval), built the one way the policy loader expects them."""

from __future__ import annotations

from typing import Any


def policy(index: int, spec: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    """Policy `p<index>`: a NetworkPolicy in `namespace`, a GlobalNetworkPolicy when None."""
    meta: dict[str, Any] = {"name": f"p{index}"}
    if namespace is not None:
        meta["namespace"] = namespace
    kind = "NetworkPolicy" if namespace is not None else "GlobalNetworkPolicy"
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}

"""Test shorthands over flowfence.calico.schema, the validator every run applies to its output.

Each returns the document's problems as `path: message` strings (empty: valid), checking that
the document is the kind the test expects. The schemas are the ones shipped in the package
(jobs/flowfence/calico/schemas/), so nothing here reads outside the repository.
"""

from __future__ import annotations

from typing import Any

from flowfence.calico.schema import CALICO, NETWORKING, CrdSet, check


def _errors(doc: dict[str, Any], crds: CrdSet, api_version: str, kind: str) -> list[str]:
    errors = []
    if (doc.get("apiVersion"), doc.get("kind")) != (api_version, kind):
        errors.append(f"not a {api_version} {kind}: {doc.get('apiVersion')} {doc.get('kind')}")
    problems = check(doc, crds, require_namespace=True)
    if problems is None:
        return [*errors, "no schema for this kind"]
    return errors + [f"{p.path or '<root>'}: {p.message}" for p in problems]


def _crds(enterprise: bool) -> CrdSet:
    return "calico-enterprise" if enterprise else "calico"


def validate_staged_policy(doc: dict[str, Any], *, enterprise: bool) -> list[str]:
    """A StagedNetworkPolicy against the open-source 3.32 or the Enterprise CRD."""
    return _errors(doc, _crds(enterprise), CALICO, "StagedNetworkPolicy")


def validate_calico_network_policy(doc: dict[str, Any], *, enterprise: bool = False) -> list[str]:
    """A projectcalico.org/v3 NetworkPolicy (what `flowfence enforce` writes)."""
    return _errors(doc, _crds(enterprise), CALICO, "NetworkPolicy")


def validate_tier(doc: dict[str, Any], *, enterprise: bool = False) -> list[str]:
    return _errors(doc, _crds(enterprise), CALICO, "Tier")


def validate_network_policy(doc: dict[str, Any]) -> list[str]:
    """A networking.k8s.io/v1 NetworkPolicy against Kubernetes' own schema (strict)."""
    return _errors(doc, "calico", NETWORKING, "NetworkPolicy")

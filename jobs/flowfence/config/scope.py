"""Calico's `PolicyRecommendationScope`, read unchanged: a `kubectl get
policyrecommendationscope default -o yaml` dump (status and server-side metadata included)
works. Only the fields Calico's CRD has are accepted, each checked as the CRD would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowfence.config.documents import fail, mapping, no_unknown, single_document
from flowfence.config.fields import convert

SCOPE_API_VERSION = "projectcalico.org/v3"
SCOPE_KIND = "PolicyRecommendationScope"
SCOPE_NAME = "default"
_OBJECT_META = frozenset(
    {
        "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
        "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
        "annotations", "ownerReferences", "finalizers", "managedFields",
    }
)  # fmt: skip
# Scope spec key -> Settings field.
_SCOPE_SPEC = {
    "interval": "interval",
    "initialLookback": "initial_lookback",
    "stabilizationPeriod": "stabilization_period",
    "maxRules": "max_rules",
    "policiesLearningCutOff": "policies_learning_cut_off",
}
_NAMESPACE_SPEC = {
    "selector": "namespace_selector",
    "intraNamespacePassThroughTraffic": "intra_namespace_pass",
    "tierName": "tier_name",
    "recStatus": "rec_status",
}
_HOST_ENDPOINT_SPEC = frozenset({"recommendationStatus", "selector", "tierName"})


def parse_scope(path: Path) -> dict[str, Any]:
    """The Settings fields a scope manifest sets (converted), keyed by field name."""
    doc = single_document(path)
    where = str(path)
    no_unknown(doc, {"apiVersion", "kind", "metadata", "spec", "status"}, where)
    if doc.get("apiVersion") != SCOPE_API_VERSION or doc.get("kind") != SCOPE_KIND:
        raise fail(where, f"expected apiVersion {SCOPE_API_VERSION}, kind {SCOPE_KIND}")
    meta = mapping(doc.get("metadata"), f"{where}: metadata")
    no_unknown(meta, _OBJECT_META, f"{where}: metadata")
    if meta.get("name") != SCOPE_NAME:
        raise fail(
            f"{where}: metadata.name",
            f"Calico acts only on the scope named {SCOPE_NAME!r}, got {meta.get('name')!r}",
        )
    if "spec" not in doc:
        raise fail(f"{where}: spec", "required (as in the CRD)")
    spec = mapping(doc["spec"], f"{where}: spec")
    no_unknown(spec, {*_SCOPE_SPEC, "namespaceSpec", "hostEndpointSpec"}, f"{where}: spec")
    values = {f: (spec[k], f"spec.{k}") for k, f in _SCOPE_SPEC.items() if k in spec}
    if "namespaceSpec" in spec:
        ns_where = f"{where}: spec.namespaceSpec"
        ns_spec = mapping(spec["namespaceSpec"], ns_where)
        no_unknown(ns_spec, set(_NAMESPACE_SPEC), ns_where)
        if "selector" not in ns_spec:
            raise fail(f"{ns_where}.selector", "required (as in the CRD)")
        for key, name in _NAMESPACE_SPEC.items():
            if key in ns_spec:
                values[name] = (ns_spec[key], f"spec.namespaceSpec.{key}")
    if "hostEndpointSpec" in spec:  # host-endpoint recommendations are out of scope; checked only
        he_where = f"{where}: spec.hostEndpointSpec"
        no_unknown(mapping(spec["hostEndpointSpec"], he_where), _HOST_ENDPOINT_SPEC, he_where)
    return {f: convert(f, v, f"{where}: {key}") for f, (v, key) in values.items()}

"""Validate one manifest against the schema of its kind, plus the rules schemas cannot say.

The schemas ship with the package (`schemas/`, provenance and licence in its README): the
Calico CRDs, open source (3.32.1) or Enterprise (tigera/operator 1.43.0), and Kubernetes'
NetworkPolicy. A CRD's `openAPIV3Schema` is made strict the way the API server's structural
pruning makes it matter: every object schema that lists `properties` gets
`additionalProperties: false`, so a field the CRD does not know (`domains` on open-source
Calico) is an error here instead of being silently dropped by the cluster. The CEL rules and
Calico's validator rules are in schema_rules.py, Kubernetes' own in schema_kubernetes.py.

Each schema is read and compiled once per process (`functools.cache`).
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Literal

import jsonschema
import yaml

from flowfence.calico import schema_kubernetes, schema_rules
from flowfence.calico.schema_rules import Problem
from flowfence.core import yaml_loader

CrdSet = Literal["calico", "calico-enterprise"]
CRD_SETS: tuple[CrdSet, ...] = ("calico", "calico-enterprise")
CALICO = "projectcalico.org/v3"
CALICO_V1 = "crd.projectcalico.org/v1"
NETWORKING = "networking.k8s.io/v1"
POLICY_KINDS = (
    "NetworkPolicy",
    "StagedNetworkPolicy",
    "GlobalNetworkPolicy",
    "StagedGlobalNetworkPolicy",
)
# projectcalico.org/v3 kind -> CRD file, the same name in both sets (upstream names).
CALICO_FILES = {
    "NetworkPolicy": "projectcalico.org_networkpolicies.yaml",
    "StagedNetworkPolicy": "projectcalico.org_stagednetworkpolicies.yaml",
    "GlobalNetworkPolicy": "projectcalico.org_globalnetworkpolicies.yaml",
    "StagedGlobalNetworkPolicy": "projectcalico.org_stagedglobalnetworkpolicies.yaml",
    "StagedKubernetesNetworkPolicy": "projectcalico.org_stagedkubernetesnetworkpolicies.yaml",
    "NetworkSet": "projectcalico.org_networksets.yaml",
    "GlobalNetworkSet": "projectcalico.org_globalnetworksets.yaml",
    "Tier": "projectcalico.org_tiers.yaml",
}
ENTERPRISE_FILES = {
    **CALICO_FILES,
    "PolicyRecommendationScope": "projectcalico.org_policyrecommendationscopes.yaml",
}
ENTERPRISE_V1_SCOPE = "crd.projectcalico.org_policyrecommendationscopes.yaml"
NETWORK_POLICY_SCHEMA = "kubernetes/networkpolicy-networking-v1.json"
MAX_SCHEMA_ERRORS = 50  # per document: a hostile document can have millions


@dataclass(frozen=True)
class Schema:
    api_version: str
    kind: str
    namespaced: bool
    source: str  # the file under schemas/
    validator: Any  # a compiled jsonschema validator


def schemas_dir() -> Traversable:
    """The schemas shipped with the package."""
    return resources.files("flowfence.calico") / "schemas"


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd(source: str) -> dict[str, Any]:
    """A CRD file under schemas/, parsed."""
    doc = yaml.load((schemas_dir() / source).read_text(encoding="utf-8"), Loader=yaml_loader.LOADER)
    if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
        raise LookupError(f"{source}: not a CustomResourceDefinition")
    return doc


def _from_crd(source: str, version: str) -> Schema:
    doc = crd(source)
    for entry in doc["spec"]["versions"]:
        if entry["name"] == version:
            strict = _strict(entry["schema"]["openAPIV3Schema"])
            return Schema(
                f"{doc['spec']['group']}/{version}",
                doc["spec"]["names"]["kind"],
                doc["spec"]["scope"] == "Namespaced",
                source,
                jsonschema.Draft7Validator(strict),
            )
    raise LookupError(f"{source}: no version {version}")


def _network_policy() -> Schema:
    text = (schemas_dir() / NETWORK_POLICY_SCHEMA).read_text(encoding="utf-8")
    schema = json.loads(text)
    validator = jsonschema.validators.validator_for(schema)(schema)
    return Schema(NETWORKING, "NetworkPolicy", True, NETWORK_POLICY_SCHEMA, validator)


@functools.cache
def schema(crds: CrdSet, api_version: str, kind: str) -> Schema | None:
    """The schema of a kind in a CRD set; None when the set has none."""
    if (api_version, kind) == (NETWORKING, "NetworkPolicy"):
        return _network_policy()
    enterprise = crds == "calico-enterprise"
    if api_version == CALICO:
        files = ENTERPRISE_FILES if enterprise else CALICO_FILES
        if kind in files:
            return _from_crd(f"enterprise/{files[kind]}" if enterprise else files[kind], "v3")
    if enterprise and (api_version, kind) == (CALICO_V1, "PolicyRecommendationScope"):
        return _from_crd(f"enterprise/{ENTERPRISE_V1_SCOPE}", "v1")
    return None


def kinds(crds: CrdSet) -> tuple[tuple[str, str], ...]:
    """The (apiVersion, kind) pairs a CRD set validates."""
    files = ENTERPRISE_FILES if crds == "calico-enterprise" else CALICO_FILES
    out = [(CALICO, kind) for kind in sorted(files)]
    if crds == "calico-enterprise":
        out.append((CALICO_V1, "PolicyRecommendationScope"))
    return (*out, (NETWORKING, "NetworkPolicy"))


def path_text(parts: Any) -> str:
    """`spec.egress[0].destination` from jsonschema's path deque."""
    out = ""
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else f"{out}.{part}" if out else str(part)
    return out


def structural(doc: Mapping[str, Any], found: Schema) -> list[Problem]:
    """The schema's errors, at most MAX_SCHEMA_ERRORS of them."""
    errors = list(itertools.islice(found.validator.iter_errors(doc), MAX_SCHEMA_ERRORS + 1))
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    problems = [
        Problem(path_text(e.absolute_path), schema_rules.printable(e.message))
        for e in errors[:MAX_SCHEMA_ERRORS]
    ]
    if len(errors) > MAX_SCHEMA_ERRORS:
        problems.append(Problem("", f"more than {MAX_SCHEMA_ERRORS} schema errors; not all shown"))
    return problems


def _rules(
    doc: Mapping[str, Any], found: Schema, crds: CrdSet, require_namespace: bool
) -> Iterator[Problem]:
    meta, spec = doc.get("metadata"), doc.get("spec")
    calico = found.api_version == CALICO
    yield from schema_rules.metadata(
        meta,
        found.kind if calico else "",
        namespaced=found.namespaced,
        require_namespace=require_namespace,
    )
    if found.kind == "PolicyRecommendationScope":
        yield from schema_rules.recommendation_scope(spec)
    elif not calico:
        yield from schema_kubernetes.network_policy(spec)
    elif found.kind in POLICY_KINDS:
        yield from schema_rules.calico_policy(found.kind, spec)
    elif found.kind == "Tier":
        yield from schema_rules.tier(meta, spec, enterprise=crds == "calico-enterprise")
    elif found.kind in ("NetworkSet", "GlobalNetworkSet"):
        yield from schema_rules.network_set(spec)
    elif found.kind == "StagedKubernetesNetworkPolicy":
        yield from schema_kubernetes.network_policy(spec)


def check(
    doc: Mapping[str, Any], crds: CrdSet, *, require_namespace: bool = False
) -> list[Problem] | None:
    """The problems of one document (empty: valid); None when `crds` has no schema for its
    apiVersion and kind. `require_namespace`: a namespaced object must name its namespace
    (flowfence's own output always does; a tree applied with `kubectl -n` need not)."""
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not (isinstance(api_version, str) and isinstance(kind, str)):
        return None
    found = schema(crds, api_version, kind)
    if found is None:
        return None
    return structural(doc, found) + list(_rules(doc, found, crds, require_namespace))

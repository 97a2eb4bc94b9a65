"""Validate rendered manifests against the real CRD schemas (and Kubernetes' own for k8s kinds).

The Calico CRDs in `<repo>/../shared/reference/calico-crds/` (override the shared directory
with FLOWFENCE_SHARED) are CustomResourceDefinitions; the schema is
`spec.versions[*].schema.openAPIV3Schema`. jsonschema checks its structural part, made strict
the way the API server's structural pruning would make it matter: every object schema that
lists `properties` gets `additionalProperties: false`, so a field the CRD does not know (e.g.
`domains` on open-source Calico) is an error here instead of being silently pruned.

jsonschema ignores `x-kubernetes-*` keys, including the CEL `x-kubernetes-validations`, so the
CEL rules (and Calico validator rules) that matter for generated policies are implemented by
hand in `_calico_rules`:
- `destination.services` is not combined with `ports`/`notPorts` (CEL in OSS and Enterprise);
- `services` is not combined with `selector`, `notSelector`, `namespaceSelector`, `nets`,
  `notNets` or `serviceAccounts` (Enterprise CEL for namespaceSelector/serviceAccounts, the
  Calico validator for the rest);
- `domains` only on egress Allow rules with empty `nets` and `selector` (Enterprise CRD text);
- `global()` only in a namespaceSelector, and alone there (Enterprise CEL, Calico validator);
- ports only with TCP, UDP or SCTP; IPv4 and IPv6 nets not mixed (Calico validator);
- every selector parses with flowfence.calico.selector (Calico's grammar).
Kubernetes NetworkPolicy is validated with the `kubernetes-validate` package (offline k8s
OpenAPI schemas, strict mode).
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from flowfence.calico import names as validate
from flowfence.calico.selector import parse

REPO = Path(__file__).resolve().parents[1]
K8S_VERSION = "1.33"


def shared_dir() -> Path:
    return Path(os.environ.get("FLOWFENCE_SHARED") or REPO.parent / "shared")


def crd_dir() -> Path:
    return shared_dir() / "reference" / "calico-crds"


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
def crd_schema(relative: str, version: str = "v3") -> dict[str, Any]:
    crd = yaml.safe_load((crd_dir() / relative).read_text(encoding="utf-8"))
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return _strict(copy.deepcopy(entry["schema"]["openAPIV3Schema"]))  # type: ignore[no-any-return]
    raise LookupError(f"{relative}: no version {version}")


def _metadata(meta: dict[str, Any], namespaced: bool) -> list[str]:
    errors = []
    if not validate.is_dns1123_subdomain(meta.get("name", "")):
        errors.append(f"metadata.name {meta.get('name')!r} is not a DNS-1123 subdomain")
    if namespaced and not validate.is_dns1123_label(meta.get("namespace", "")):
        errors.append(f"metadata.namespace {meta.get('namespace')!r} is not a DNS-1123 label")
    for key, value in (meta.get("labels") or {}).items():
        if not (validate.is_label_key(key) and isinstance(value, str)):
            errors.append(f"bad label {key!r}")
        elif not validate.is_label_value(value):
            errors.append(f"bad label value {key}={value!r}")
    for key, value in (meta.get("annotations") or {}).items():
        if not (validate.is_label_key(key) and isinstance(value, str)):
            errors.append(f"bad annotation {key!r}: {value!r}")
    return errors


def _selector_errors(where: str, entity: dict[str, Any]) -> list[str]:
    errors = []
    for key in ("selector", "notSelector", "namespaceSelector"):
        if key not in entity:
            continue
        text = entity[key]
        try:
            parse(text)
        except ValueError as exc:
            errors.append(f"{where}.{key}: {exc}")
        if "global(" in text and (key != "namespaceSelector" or text.strip() != "global()"):
            errors.append(f"{where}.{key}: global() must stand alone in a namespaceSelector")
    return errors


def _calico_rules(spec: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(spec.get(direction) or ()):
            at = f"spec.{direction}[{i}]"
            protocol = rule.get("protocol")
            for side in ("source", "destination"):
                entity = rule.get(side) or {}
                where = f"{at}.{side}"
                errors.extend(_selector_errors(where, entity))
                if "services" in entity:
                    bad = {"selector", "notSelector", "namespaceSelector", "nets", "notNets"}
                    bad |= {"serviceAccounts"}
                    if side == "destination":
                        bad |= {"ports", "notPorts"}
                    if clash := sorted(bad & entity.keys()):
                        errors.append(f"{where}: services combined with {clash}")
                if "domains" in entity and not (
                    direction == "egress"
                    and side == "destination"
                    and rule["action"] == "Allow"
                    and not entity.get("nets")
                    and not entity.get("selector")
                ):
                    errors.append(f"{where}: domains only on egress Allow without nets/selector")
                if (entity.get("ports") or entity.get("notPorts")) and protocol not in (
                    "TCP",
                    "UDP",
                    "SCTP",
                    6,
                    17,
                    132,
                ):
                    errors.append(f"{where}: ports with protocol {protocol!r}")
                for key in ("nets", "notNets"):
                    nets = entity.get(key) or []
                    try:
                        versions = {ipaddress.ip_network(n).version for n in nets}
                    except ValueError as exc:
                        errors.append(f"{where}.{key}: {exc}")
                        continue
                    if len(versions) > 1:
                        errors.append(f"{where}.{key}: IPv4 and IPv6 mixed")
    return errors


def _schema_errors(doc: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    ]


def validate_staged_policy(doc: dict[str, Any], *, enterprise: bool) -> list[str]:
    """Errors of a StagedNetworkPolicy against the OSS 3.32 or the Enterprise CRD (empty: ok)."""
    relative = "projectcalico.org_stagednetworkpolicies.yaml"
    schema = crd_schema(f"enterprise/{relative}" if enterprise else relative)
    errors = _schema_errors(doc, schema)
    if doc.get("kind") != "StagedNetworkPolicy" or doc.get("apiVersion") != "projectcalico.org/v3":
        errors.append(f"not a projectcalico.org/v3 StagedNetworkPolicy: {doc.get('kind')}")
    errors.extend(_metadata(doc.get("metadata") or {}, namespaced=True))
    errors.extend(_calico_rules(doc.get("spec") or {}))
    return errors


def validate_tier(doc: dict[str, Any], *, enterprise: bool = False) -> list[str]:
    relative = "projectcalico.org_tiers.yaml"
    schema = crd_schema(f"enterprise/{relative}" if enterprise else relative)
    errors = _schema_errors(doc, schema)
    if doc.get("kind") != "Tier":
        errors.append("not a Tier")
    errors.extend(_metadata(doc.get("metadata") or {}, namespaced=False))
    return errors


def validate_network_policy(doc: dict[str, Any]) -> list[str]:
    """Errors of a networking.k8s.io/v1 NetworkPolicy (Kubernetes' own schema, strict)."""
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return _metadata(doc.get("metadata") or {}, namespaced=True)

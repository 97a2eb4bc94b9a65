"""Manifests from recommendations, deterministic to the byte.

`render` returns relative paths under `policies/` mapped to bytes; the caller writes them
(atomic.py). Same recommendations and statuses in, same bytes out: rules are already sorted by
the model, mappings are built in a fixed key order (apiVersion, kind, metadata, spec), and no
wall-clock time is read here (`lastUpdated` comes from the caller's `statuses`, or defaults to
the newest rule's first sighting).

Flavors (see docs/flavors.md):
- `calico-enterprise`: `projectcalico.org/v3` StagedNetworkPolicy + Tier, may use `domains`;
- `calico`: the same kinds, never `domains` (domain rules name observed IPs instead);
- `kubernetes`: `networking.k8s.io/v1` NetworkPolicy (kubernetes.py), no tier, no staging.

`spec.types` lists both directions by default (`policyTypes: Both`): a namespace whose egress
is all decided by an earlier tier, or that never receives traffic, is still isolated in that
direction (what the earlier tiers allow passes, since they decide first). `policyTypes:
WithRules` is Calico's behaviour: only the directions that have rules, the other left open. A
namespace without rules gets no manifest at all (Calico writes a recommendation only once it
has a rule).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowfence.calico.selector import parse, quote
from flowfence.core.times import rfc3339
from flowfence.learn.model import (
    Recommendation,
    Rule,
    RuleSettings,
    dns_label,
)
from flowfence.render import kubernetes
from flowfence.render.yaml_text import dump

PolicyDoc = dict[str, Any]

TIGERA = "policyrecommendation.tigera.io"
OURS = "flowfence.io"
DEFAULT_STATUS = "Learning"
_STATUS = re.compile(r"[A-Z][A-Za-z]{0,31}")
MAX_NAME = 253


# --- helpers ----------------------------------------------------------------------------------


def selector(text: str) -> str:
    """Check a selector we wrote parses as Calico would, and return it unchanged."""
    parse(text)
    return text


def eq(key: str, value: str) -> str:
    return f"{key} == {quote(value)}"


def namespace_selector(namespaces: tuple[str, ...]) -> str:
    """The selector of exactly `namespaces`. Not parsed back like `selector`'s: DNS labels
    quoted into a fixed form always parse (tests/test_rules.py checks it for any names), and
    a folded peer list's selectors are thousands of characters, parsed in every run. Every
    manifest written is still checked, its selectors parsed (calico/schema_rules.py)."""
    names = [dns_label(ns, "namespace") for ns in namespaces]
    if len(names) == 1:
        return eq("projectcalico.org/name", names[0])
    return f"projectcalico.org/name in {{{', '.join(quote(n) for n in names)}}}"


def protocol(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def ports(rule: Rule) -> list[int | str]:
    return [p.lo if p.lo == p.hi else str(p) for p in rule.ports]


def policy_name(settings: RuleSettings, namespace: str) -> str:
    name = f"{dns_label(settings.tier_name, 'tier name')}.{dns_label(namespace, 'namespace')}"
    if len(name) > MAX_NAME:
        raise ValueError(f"policy name longer than {MAX_NAME}: {name!r}")
    return name


def status_of(rec: Recommendation) -> tuple[str, str]:
    """The status a policy is built with: Learning since its newest rule (the lifecycle sets
    the real one afterwards, `with_statuses`)."""
    changed = rec.last_changed()
    if changed is None:
        raise ValueError(f"namespace {rec.namespace!r} has no rules and no status")
    return DEFAULT_STATUS, rfc3339(changed)


def types(rec: Recommendation, settings: RuleSettings) -> list[str]:
    return [
        t
        for t, direction in (("Ingress", "ingress"), ("Egress", "egress"))
        if rec.isolates(direction, settings.policy_types)  # type: ignore[arg-type]
    ]


# --- Calico -----------------------------------------------------------------------------------


def _peer(rule: Rule, flavor: str) -> dict[str, Any]:
    """The remote side of a Calico rule (destination for egress, source for ingress)."""
    out: dict[str, Any] = {}
    if rule.scope == "Namespace":
        out["namespaceSelector"] = namespace_selector(rule.namespaces)
    elif rule.netset is not None:
        ref = rule.netset
        if ref.labels:
            out["selector"] = selector(" && ".join(eq(k, v) for k, v in ref.labels))
        else:
            name = eq("projectcalico.org/name", ref.name)
            out["selector"] = selector(f"{name} && projectcalico.org/kind == 'NetworkSet'")
        out["namespaceSelector"] = (
            "global()"
            if ref.namespace is None
            else selector(eq("projectcalico.org/name", ref.namespace))
        )
    elif rule.service is not None:
        service = {"name": rule.service.name}
        if rule.service.namespace is not None:
            service["namespace"] = rule.service.namespace
        out["services"] = service
    if rule.nets:
        out["nets"] = list(rule.nets)
    if rule.not_nets:
        out["notNets"] = list(rule.not_nets)
    if rule.scope == "Domains" and not rule.nets:
        if flavor != "calico-enterprise":
            raise ValueError(f"flavor {flavor} cannot express domains; build with this flavor")
        out["domains"] = list(rule.domains)
    return out


def _annotations(rule: Rule, flavor: str) -> dict[str, str]:
    notes: dict[str, str] = {f"{TIGERA}/scope": rule.scope}
    if rule.scope == "Namespace":
        if len(rule.namespaces) == 1:
            notes[f"{TIGERA}/namespace"] = rule.namespaces[0]
        notes[f"{TIGERA}/warnings"] = "NonServicePortsAndProtocol"
    elif rule.netset is not None:
        notes[f"{TIGERA}/name"] = rule.netset.name
        notes[f"{TIGERA}/namespace"] = rule.netset.namespace or ""
    elif rule.service is not None:
        notes[f"{TIGERA}/name"] = rule.service.name
        notes[f"{TIGERA}/namespace"] = rule.service.namespace or ""
    notes[f"{OURS}/firstSeen"] = rfc3339(rule.evidence.first_seen)
    if rule.scope == "Domains" and rule.nets:
        notes[f"{OURS}/domains"] = ",".join(rule.domains)
    if rule.note:
        notes[f"{OURS}/note"] = rule.note
    if rule.flags:
        # Machine-readable, so the report can name the risk from the manifest alone.
        notes[f"{OURS}/flags"] = ",".join(rule.flags)
    return notes


def calico_rule(rule: Rule, flavor: str) -> dict[str, Any]:
    out: dict[str, Any] = {"action": rule.action, "protocol": protocol(rule.protocol)}
    peer = _peer(rule, flavor)
    if rule.direction == "egress":
        destination = peer
        if rule.ports:
            destination["ports"] = ports(rule)
        out["destination"] = destination
    else:
        out["source"] = peer
        if rule.ports:
            out["destination"] = {"ports": ports(rule)}
    out["metadata"] = {"annotations": _annotations(rule, flavor)}
    return out


def calico_policy(
    rec: Recommendation, settings: RuleSettings, status: tuple[str, str]
) -> PolicyDoc:
    tier = settings.tier_name
    spec: dict[str, Any] = {
        "stagedAction": "Learn",
        "tier": tier,
        "selector": selector(eq("projectcalico.org/namespace", rec.namespace)),
        "types": types(rec, settings),
    }
    if rec.ingress:
        spec["ingress"] = [calico_rule(r, settings.flavor) for r in rec.ingress]
    if rec.egress:
        spec["egress"] = [calico_rule(r, settings.flavor) for r in rec.egress]
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "StagedNetworkPolicy",
        "metadata": {
            "name": policy_name(settings, rec.namespace),
            "namespace": rec.namespace,
            "labels": {
                "projectcalico.org/tier": tier,
                "projectcalico.org/spec.stagedAction": "Learn",
                "projectcalico.org/ownerReference.kind": "PolicyRecommendationScope",
                f"{TIGERA}/scope": "namespace",
            },
            "annotations": {f"{TIGERA}/status": status[0], f"{TIGERA}/lastUpdated": status[1]},
        },
        "spec": spec,
    }


def tier(settings: RuleSettings) -> PolicyDoc:
    order = settings.tier_order
    if settings.tier_default_action not in ("Deny", "Pass"):
        raise ValueError(f"tier defaultAction must be Deny or Pass: {settings.tier_default_action}")
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": dns_label(settings.tier_name, "tier name")},
        "spec": {
            "order": int(order) if float(order).is_integer() else order,
            "defaultAction": settings.tier_default_action,
        },
    }


def kustomization(resources: list[str]) -> PolicyDoc:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(resources),
    }


def policy_documents(
    recs: Mapping[str, Recommendation], settings: RuleSettings
) -> dict[str, PolicyDoc]:
    """The Tier (Calico flavors) and one policy per namespace with rules: file name under
    policies/ -> document. Each policy says Learning since its newest rule."""
    docs: dict[str, PolicyDoc] = {}
    if settings.flavor != "kubernetes":
        docs["tier.yaml"] = tier(settings)
    for ns in sorted(recs):
        rec = recs[ns]
        if ns != rec.namespace:
            raise ValueError(f"recommendation for {rec.namespace!r} filed under {ns!r}")
        if not rec.rules:
            continue
        status = status_of(rec)
        if settings.flavor == "kubernetes":
            docs[f"{dns_label(ns)}.yaml"] = kubernetes.network_policy(rec, settings, status)
        else:
            docs[f"{dns_label(ns)}.yaml"] = calico_policy(rec, settings, status)
    return docs


def with_status(doc: PolicyDoc, status: str, updated: datetime) -> PolicyDoc:
    """A policy with its status annotations set (Calico's, or ours on the kubernetes flavor):
    the lifecycle decides them after the policy is built, from a digest of the policy."""
    if not _STATUS.fullmatch(status):
        raise ValueError(f"bad status {status!r}")
    prefix = TIGERA if doc["apiVersion"] == "projectcalico.org/v3" else OURS
    meta = doc["metadata"]
    notes = {**meta["annotations"], f"{prefix}/status": status}
    notes[f"{prefix}/lastUpdated"] = rfc3339(updated)
    return {**doc, "metadata": {**meta, "annotations": notes}}


def with_statuses(
    docs: Mapping[str, PolicyDoc], statuses: Mapping[str, tuple[str, datetime]]
) -> dict[str, PolicyDoc]:
    """`docs` with each namespace's policy given its status from `statuses`."""
    out = dict(docs)
    for ns, (status, updated) in sorted(statuses.items()):
        name = f"{dns_label(ns)}.yaml"
        if name in out:
            out[name] = with_status(out[name], status, updated)
    return out


def with_kustomization(docs: Mapping[str, PolicyDoc]) -> dict[str, PolicyDoc]:
    """`docs` and the kustomization listing them."""
    return {**docs, "kustomization.yaml": kustomization(sorted(docs))}


def documents(
    recs: Mapping[str, Recommendation],
    settings: RuleSettings,
    *,
    statuses: Mapping[str, tuple[str, datetime]] | None = None,
) -> dict[str, PolicyDoc]:
    """The manifests as mappings (file name under policies/ -> document), for tests and diff."""
    return with_kustomization(with_statuses(policy_documents(recs, settings), statuses or {}))


def render(
    recs: Mapping[str, Recommendation],
    settings: RuleSettings,
    *,
    statuses: Mapping[str, tuple[str, datetime]] | None = None,
) -> dict[str, bytes]:
    """Relative paths under `policies/` -> YAML bytes."""
    docs = documents(recs, settings, statuses=statuses)
    return {f"policies/{name}": dump(doc) for name, doc in sorted(docs.items())}

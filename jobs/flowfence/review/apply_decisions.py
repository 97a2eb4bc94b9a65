"""The decisions in force applied to a run's policy documents (before any is turned to YAML).

- `accept` freezes the policy reviewers saw (its previous manifest on disk, else this run's
  document) and gives it `stagedAction: Set`;
- `enforce` turns that policy into an enforced `NetworkPolicy`;
- `dismiss` drops the namespace's policy;
- a namespace enforced in the cluster (an enforced NetworkPolicy in our tier among
  `--existing-policies`) gets no policy and stops learning, unless a decision says otherwise;
- a deleted namespace gets no policy whatever its decision says: Calico deletes the policies
  of a deleted namespace, so a frozen one would be applied to nothing.

The kustomization is built once, over the documents that remain. Only the previous manifests
(what the reviewers saw, read from disk) are parsed; this run's documents never are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowfence.render.manifests import PolicyDoc, kustomization
from flowfence.review.decisions import Decision, Decisions
from flowfence.review.manifest_rules import namespaced_policy, policy_doc

STAGED_LABEL = "projectcalico.org/spec.stagedAction"
CALICO_API = "projectcalico.org/v3"
POLICIES = "policies"
KUSTOMIZATION = "policies/kustomization.yaml"


@dataclass(frozen=True)
class Applied:
    """The policy documents after the decisions, and what each decision did."""

    documents: dict[str, PolicyDoc]  # policies/... -> document, kustomization.yaml built last
    staged_actions: dict[str, str]  # decided namespaces -> Set | Ignore (others: Learn)
    frozen: dict[str, PolicyDoc]  # namespace -> the accepted or enforced policy (drift base)
    applied: dict[str, Decision]  # the decisions in force this run
    lapsed: dict[str, Decision]  # decisions whose expiry has passed


def policy_of(doc: object, namespace: str) -> PolicyDoc | None:
    """`doc` when it is a policy of `namespace` with a spec, else None."""
    policy = namespaced_policy(doc)
    if policy is None or policy["metadata"]["namespace"] != namespace:
        return None
    return policy if isinstance(policy.get("spec"), dict) else None


def read_policy(files: Mapping[str, bytes], namespace: str) -> PolicyDoc | None:
    """The namespace's policy in `files` (relative paths under DIR), if there and readable."""
    data = files.get(f"{POLICIES}/{namespace}.yaml")
    return None if data is None else policy_of(policy_doc(data), namespace)


def _calico(doc: PolicyDoc) -> bool:
    return doc.get("apiVersion") == CALICO_API


def staged_set(doc: PolicyDoc) -> PolicyDoc:
    """Calico's "move to the policy board": the staged policy with stagedAction Set."""
    if not _calico(doc):
        return doc  # Kubernetes NetworkPolicy has no staging: freezing is all accept does
    meta = dict(doc["metadata"])
    meta["labels"] = {**(meta.get("labels") or {}), STAGED_LABEL: "Set"}
    spec = {"stagedAction": "Set", **{k: v for k, v in doc["spec"].items() if k != "stagedAction"}}
    return {"apiVersion": CALICO_API, "kind": "StagedNetworkPolicy", "metadata": meta, "spec": spec}


def enforced(doc: PolicyDoc) -> PolicyDoc:
    """The same name, tier, selector and rules as an enforced NetworkPolicy, without
    stagedAction, its label and the rules' metadata (the recommendation's provenance)."""
    if not _calico(doc):
        return doc
    meta = dict(doc["metadata"])
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != STAGED_LABEL}
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    spec: dict[str, Any] = {}
    for key, value in doc["spec"].items():
        if key == "stagedAction":
            continue
        if key in ("ingress", "egress"):
            value = [{k: v for k, v in rule.items() if k != "metadata"} for rule in value]
        spec[key] = value
    return {"apiVersion": CALICO_API, "kind": "NetworkPolicy", "metadata": meta, "spec": spec}


def apply(
    documents: Mapping[str, PolicyDoc],
    previous: Mapping[str, bytes],
    decisions: Decisions,
    now: datetime,
    *,
    enforced_in_cluster: Iterable[str] = (),
    deleted: Iterable[str] = (),
) -> Applied:
    """Apply the decisions in force at `now` to a run's documents (`policies/...`: the Tier and
    the learned policies; a kustomization among them is left out and built again).

    An accepted or enforced namespace keeps the rules it had when the decision was first
    applied: its previous manifest in `previous` when there is one (what was reviewed), else
    this run's document. Other documents pass through as they are.
    """
    active, lapsed = decisions.active(now), decisions.expired(now)
    cluster, gone = set(enforced_in_cluster), set(deleted)
    out = {rel: doc for rel, doc in documents.items() if rel != KUSTOMIZATION}
    for ns in gone:
        out.pop(f"{POLICIES}/{ns}.yaml", None)
    staged: dict[str, str] = {}
    frozen: dict[str, PolicyDoc] = {}
    for ns in sorted({*active, *cluster} - gone):
        rel, decision = f"{POLICIES}/{ns}.yaml", active.get(ns)
        if decision is None or decision.decision == "dismiss":
            out.pop(rel, None)
            staged[ns] = "Set" if decision is None else decision.staged_action
            continue
        staged[ns] = decision.staged_action
        base = read_policy(previous, ns) or policy_of(documents.get(rel), ns)
        if base is None:
            continue  # nothing learned or written yet: the decision waits for rules
        policy = staged_set(base) if decision.decision == "accept" else enforced(base)
        frozen[ns] = policy
        out[rel] = policy
    names = sorted(rel.removeprefix(f"{POLICIES}/") for rel in out)
    out[KUSTOMIZATION] = kustomization(names)
    return Applied(dict(sorted(out.items())), staged, frozen, active, lapsed)

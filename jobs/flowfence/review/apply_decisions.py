"""The decisions in force applied to a run's policy documents (before any is turned to YAML).

- `accept` freezes the policy reviewers saw (its previous manifest on disk, else this run's
  document) and gives it `stagedAction: Set`;
- a file on disk that is not what flowfence last wrote (written.py: a hand edit) is never
  frozen unless the decision kept it (`keep_edits`): what flowfence last wrote is frozen
  instead, or, with no copy of that, the decision waits (the namespace keeps learning); either
  way the report's Risks say so. Every frozen policy is also compared with this run's
  recommendation (frozen_risks.py): wider than it, or outside our tier, is a Risk;
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
from flowfence.review import frozen_risks, written
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
    # Per frozen namespace, what a reviewer must see (frozen_risks.risk dicts).
    risks: tuple[dict[str, Any], ...] = ()


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


def _base(
    ns: str,
    decision: Decision,
    previous: Mapping[str, bytes],
    document: PolicyDoc | None,
    record: written.Written,
) -> tuple[PolicyDoc | None, list[dict[str, Any]]]:
    """The policy a decision freezes and the risks of where it came from: the file on disk
    when flowfence wrote it (or the decision kept it), else what flowfence last wrote, else
    None (the decision waits). A namespace with nothing on disk freezes this run's document."""
    rel = f"{POLICIES}/{ns}.yaml"
    data, entry = previous.get(rel), record.get(rel)
    verdict = decision.decision
    if not written.unseen_edit(data, entry, decision.keep_edits):
        base = read_policy(previous, ns) or policy_of(document, ns)
        ours = data is None or (entry is not None and entry.holds(data))
        if not ours and decision.keep_edits == written.digest(data or b""):
            why = f"{rel} was edited by hand and kept with --keep-edits (see its decision)"
            return base, [frozen_risks.risk(ns, frozen_risks.KEPT_EDITS, why)]
        return base, []
    fix = f"`flowfence {verdict} {ns} --keep-edits` keeps the edit"
    last = entry.text if entry is not None else None
    base = None if last is None else policy_of(policy_doc(last.encode("utf-8")), ns)
    if base is not None:
        why = (
            f"{rel} differs from what flowfence last wrote (a hand edit): the {verdict} froze "
            f"what flowfence last wrote and the edit is overwritten; {fix}"
        )
    else:
        why = (
            f"{rel} differs from what flowfence last wrote (a hand edit) and no copy of that "
            f"is left: the {verdict} is not applied and the namespace keeps learning; {fix}"
        )
    return base, [frozen_risks.risk(ns, frozen_risks.EDITED, why)]


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
    record: written.Written = written.EMPTY,
    tier: str = "",
) -> Applied:
    """Apply the decisions in force at `now` to a run's documents (`policies/...`: the Tier and
    the learned policies; a kustomization among them is left out and built again).

    An accepted or enforced namespace keeps the rules it had when the decision was first
    applied: its previous manifest in `previous` when there is one (what was reviewed), else
    this run's document; `record` says what flowfence last wrote, so that a hand edit is not
    frozen unseen (`_base`). `tier` is ours (frozen_risks.assess). Other documents pass
    through as they are.
    """
    active, lapsed = decisions.active(now), decisions.expired(now)
    cluster, gone = set(enforced_in_cluster), set(deleted)
    out = {rel: doc for rel, doc in documents.items() if rel != KUSTOMIZATION}
    for ns in gone:
        out.pop(f"{POLICIES}/{ns}.yaml", None)
    staged: dict[str, str] = {}
    frozen: dict[str, PolicyDoc] = {}
    risks: list[dict[str, Any]] = []
    for ns in sorted({*active, *cluster} - gone):
        rel, decision = f"{POLICIES}/{ns}.yaml", active.get(ns)
        if decision is None or decision.decision == "dismiss":
            out.pop(rel, None)
            staged[ns] = "Set" if decision is None else decision.staged_action
            continue
        staged[ns] = decision.staged_action
        base, found = _base(ns, decision, previous, documents.get(rel), record)
        risks += found
        if base is None:
            if any(r["risk"] == frozen_risks.EDITED for r in found):
                staged.pop(ns)  # an edit refused: the namespace keeps learning
            continue  # nothing learned or written yet: the decision waits for rules
        policy = staged_set(base) if decision.decision == "accept" else enforced(base)
        frozen[ns] = policy
        out[rel] = policy
        risks += frozen_risks.assess(ns, policy, documents.get(rel), tier)
    names = sorted(rel.removeprefix(f"{POLICIES}/") for rel in out)
    out[KUSTOMIZATION] = kustomization(names)
    return Applied(dict(sorted(out.items())), staged, frozen, active, lapsed, tuple(risks))

"""What a run changes, computed as a model (report/change_set.py) before anything is written.

`compute` compares the manifests on disk before the run (`read_policies`) with the new ones,
per namespace: rules added and removed (manifest_rules.py describes them), the namespace's
first policy (a risk: the namespace turns default-deny in those directions once the policy is
enforced), rules that widen access (an "any public address" or "all of RFC 1918" fallback) and
a unified YAML diff. Only the files before the run are parsed: the new side is described from
the documents the run built. Evidence and flags are looked up in an index the caller builds
from the recommendations (`index_rules`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flowfence.learn.model import Recommendation
from flowfence.report import run_report
from flowfence.report.change_set import ChangeKind, ChangeSet, NamespaceChange, RuleView, evidence
from flowfence.review.manifest_rules import (
    POLICY_KINDS,
    describe,
    namespaced_policy,
    policy_doc,
    rule_key,
    staged_action,
)

RuleId = tuple[str, str, str]  # (namespace, direction, rule key)
PolicyDoc = dict[str, Any]
POLICIES = "policies"
# The renderer's layout: top-level kind, metadata.namespace and spec.stagedAction at two spaces.
_KIND = re.compile(rb"^kind: (\S+)$", re.M)
_NAMESPACE = re.compile(rb"^  namespace: '?([a-z0-9-]+)'?$", re.M)
_STAGED = re.compile(rb"^  stagedAction: (\S+)$", re.M)


@dataclass(frozen=True)
class RuleFacts:
    """What the manifest does not say about a rule: its evidence and the builder's flags."""

    evidence: run_report.Evidence | None = None
    flags: tuple[str, ...] = ()


def read_policies(out: Path) -> dict[str, bytes]:
    """The files under `out/policies/` as they are before the run (relative path -> bytes)."""
    root = out / POLICIES
    if not root.is_dir():
        return {}
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*.yaml"))
        if p.is_file() and not p.name.startswith(".")
    }


def index_rules(
    docs: Mapping[str, PolicyDoc], recs: Mapping[str, Recommendation]
) -> dict[RuleId, RuleFacts]:
    """Evidence and flags for the rules of a run's policy documents, matched to the model's.

    The renderers write one manifest rule per model rule, in the model's order, so the rules
    of each direction pair up by position.
    """
    index: dict[RuleId, RuleFacts] = {}
    for found in docs.values():
        doc = namespaced_policy(found)
        if doc is None or (rec := recs.get(doc["metadata"]["namespace"])) is None:
            continue
        spec = doc.get("spec") or {}
        for direction, model_rules in (("ingress", rec.ingress), ("egress", rec.egress)):
            written = spec.get(direction) or []
            if len(written) != len(model_rules):
                continue
            for manifest_rule, rule in zip(written, model_rules, strict=True):
                key = (rec.namespace, direction, rule_key(manifest_rule))
                index[key] = RuleFacts(evidence(rule), rule.flags)
    return index


# --- the change set -----------------------------------------------------------------------


def _with_facts(
    views: Iterable[RuleView], namespace: str, index: Mapping[RuleId, RuleFacts]
) -> tuple[RuleView, ...]:
    out = []
    for view in views:
        facts = index.get((namespace, view.direction, view.key))
        if facts is not None:
            view = replace(view, evidence=facts.evidence, flags=facts.flags)
        out.append(view)
    return tuple(out)


def _diff(path: str, old: bytes | None, new: bytes | None) -> str:
    def lines(data: bytes | None) -> list[str]:
        return [] if data is None else data.decode("utf-8", "replace").splitlines(keepends=True)

    diff = difflib.unified_diff(
        lines(old),
        lines(new),
        fromfile="/dev/null" if old is None else f"a/{path}",
        tofile="/dev/null" if new is None else f"b/{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


def _unchanged(path: str, data: bytes) -> NamespaceChange | None:
    """An unchanged policy file, read from its header lines without parsing the YAML."""
    kind, namespace = _KIND.search(data), _NAMESPACE.search(data)
    if kind is None or namespace is None or kind.group(1).decode() not in POLICY_KINDS:
        return None
    staged = _STAGED.search(data)
    action = None if staged is None else staged.group(1).decode()
    name = kind.group(1).decode()
    return NamespaceChange(
        namespace.group(1).decode(), path, "unchanged", name, name, action, action, (), (), ""
    )


def _changed(
    path: str,
    old: bytes | None,
    data: bytes | None,
    new_doc: PolicyDoc | None,
    index: Mapping[RuleId, RuleFacts],
) -> NamespaceChange | None:
    old_doc = policy_doc(old) if old is not None else None
    doc = new_doc or old_doc
    if doc is None:
        return None
    namespace = str(doc["metadata"]["namespace"])
    old_rules = {(v.direction, v.key): v for v in describe(old_doc or {})}
    new_rules = {(v.direction, v.key): v for v in describe(new_doc or {})}
    kind: ChangeKind = "created" if old is None else "removed" if data is None else "updated"
    return NamespaceChange(
        namespace=namespace,
        path=path,
        change=kind,
        previous_kind=None if old_doc is None else str(old_doc.get("kind")),
        kind=None if new_doc is None else str(new_doc.get("kind")),
        previous_staged_action=None if old_doc is None else staged_action(old_doc),
        staged_action=None if new_doc is None else staged_action(new_doc),
        added_rules=_with_facts(
            (v for k, v in new_rules.items() if k not in old_rules), namespace, index
        ),
        removed_rules=_with_facts(
            (v for k, v in old_rules.items() if k not in new_rules), namespace, index
        ),
        diff=_diff(path, old, data),
    )


def compute(
    previous: Mapping[str, bytes],
    new: Mapping[str, bytes],
    *,
    docs: Mapping[str, PolicyDoc] | None = None,
    index: Mapping[RuleId, RuleFacts] | None = None,
) -> ChangeSet:
    """Compare the policy files before a run with the new ones (relative paths under policies/).

    `docs` are the documents behind `new` when `new` is a run's own output: the new side is
    described from them, never parsed back. Without them (two trees read from git and disk,
    gitops.py) the new files are read from their bytes.
    """
    index = index or {}
    paths = sorted(p for p in {*previous, *new} if p.startswith(f"{POLICIES}/"))
    changed = tuple(p for p in paths if previous.get(p) != new.get(p))
    by_ns: dict[str, NamespaceChange] = {}
    for path in paths:
        old, data = previous.get(path), new.get(path)
        if old == data and data is not None:
            change = _unchanged(path, data)
        elif docs is None:
            new_doc = policy_doc(data) if data is not None else None
            change = _changed(path, old, data, new_doc, index)
        else:
            change = _changed(path, old, data, namespaced_policy(docs.get(path)), index)
        if change is not None and change.namespace not in by_ns:
            by_ns[change.namespace] = change
    return ChangeSet(tuple(by_ns[ns] for ns in sorted(by_ns)), changed)

"""What a run changes, computed as a model before anything is written or rendered.

`compute` compares the manifests on disk before the run (`read_policies`) with the new ones,
per namespace: rules added and removed (a rule is identified by its match, i.e. the manifest
rule without its metadata, so a staged policy that becomes enforced keeps its rules), the
namespace's first policy (a risk: the namespace turns default-deny in those directions once
the policy is enforced), rules that widen access (an "any public address" or "all of RFC 1918"
fallback) and a unified YAML diff. Rules are described from the manifests themselves, so the
comparison works for every flavor and for hand-edited or older files; evidence and flags are
looked up in an index the caller builds from the recommendations (`index_rules`). Drift of
accepted policies is computed in drift.py and described here with `model_view`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from flowfence.calico import cidr
from flowfence.learn.model import PRIVATE_FALLBACK, PUBLIC_FALLBACK, Recommendation, Rule
from flowfence.report import model as rpt

ChangeKind = Literal["created", "updated", "removed", "unchanged"]
RuleId = tuple[str, str, str]  # (namespace, direction, rule key)
POLICIES = "policies"
TIGERA = "policyrecommendation.tigera.io"
POLICY_KINDS = frozenset({"StagedNetworkPolicy", "NetworkPolicy"})
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The renderer's layout: top-level kind, metadata.namespace and spec.stagedAction at two spaces.
_KIND = re.compile(rb"^kind: (\S+)$", re.M)
_NAMESPACE = re.compile(rb"^  namespace: '?([a-z0-9-]+)'?$", re.M)
_STAGED = re.compile(rb"^  stagedAction: (\S+)$", re.M)


@dataclass(frozen=True)
class RuleFacts:
    """What the manifest does not say about a rule: its evidence and the builder's flags."""

    evidence: rpt.Evidence | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleView:
    direction: str
    action: str
    scope: str
    peer: str
    protocol: str
    ports: tuple[str, ...]
    evidence: rpt.Evidence | None = None
    flags: tuple[str, ...] = ()
    # The rule's identity across runs: its manifest text without metadata.
    key: str = field(default="", compare=False)

    @property
    def widening(self) -> str | None:
        """Why this rule widens access beyond what was observed, or None."""
        if PUBLIC_FALLBACK in self.flags or self.peer.startswith(("nets 0.0.0.0/0", "nets ::/0")):
            return "allows any public address"
        if PRIVATE_FALLBACK in self.flags:
            return "allows all private (RFC 1918) addresses"
        return None

    def entry(self) -> rpt.RuleEntry:
        """The report's form of the rule."""
        return rpt.RuleEntry(
            self.direction, self.action, self.scope, self.peer, self.protocol, self.ports,
            self.evidence, self.flags,
        )  # fmt: skip


@dataclass(frozen=True)
class NamespaceChange:
    namespace: str
    path: str
    change: ChangeKind
    previous_kind: str | None
    kind: str | None
    previous_staged_action: str | None
    staged_action: str | None
    added_rules: tuple[RuleView, ...]
    removed_rules: tuple[RuleView, ...]
    diff: str

    @property
    def first_policy(self) -> bool:
        """The namespace had no policy: once enforced, it turns default-deny."""
        return self.change == "created"

    @property
    def newly_enforced(self) -> bool:
        # A staged policy replaced by the enforced one (Kubernetes policies are never staged).
        return self.kind == "NetworkPolicy" and self.previous_kind == "StagedNetworkPolicy"

    @property
    def widening(self) -> tuple[RuleView, ...]:
        return tuple(r for r in self.added_rules if r.widening)


@dataclass(frozen=True)
class ChangeSet:
    namespaces: tuple[NamespaceChange, ...]
    files: tuple[str, ...]  # every file under policies/ whose bytes change (or that goes)

    @property
    def changed(self) -> bool:
        return bool(self.files)

    def get(self, namespace: str) -> NamespaceChange | None:
        return next((c for c in self.namespaces if c.namespace == namespace), None)

    @property
    def added(self) -> int:
        return sum(len(c.added_rules) for c in self.namespaces)

    @property
    def removed(self) -> int:
        return sum(len(c.removed_rules) for c in self.namespaces)


# --- reading manifests --------------------------------------------------------------------


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


def policy_doc(data: bytes) -> dict[str, Any] | None:
    """The namespaced policy in a manifest file, or None (tier, kustomization, unreadable)."""
    try:
        doc = yaml.load(data.decode("utf-8"), Loader=_LOADER)
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("kind") not in POLICY_KINDS:
        return None
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("namespace"), str):
        return None
    return doc


def rule_key(rule: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in rule.items() if k != "metadata"}, sort_keys=True)


def _staged_action(doc: Mapping[str, Any]) -> str | None:
    spec = doc.get("spec")
    value = spec.get("stagedAction") if isinstance(spec, dict) else None
    return value if isinstance(value, str) else None


def _names(selector: str) -> list[str]:
    return [a or b for a, b in _QUOTED.findall(selector)]


def _nets_text(nets: Sequence[str], not_nets: Sequence[str]) -> str:
    text = "nets " + ",".join(nets)
    return text + (f" except {len(not_nets)} ranges" if not_nets else "")


def _address_scope(nets: Sequence[str]) -> str:
    private = (*cidr.RFC1918, *cidr.PRIVATE_V6)
    return "Private" if nets and all(cidr.covers(private, n) for n in nets) else "Public"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _calico_view(rule: Mapping[str, Any], direction: str) -> RuleView:
    peer = _mapping(rule.get("destination" if direction == "egress" else "source"))
    dest = _mapping(rule.get("destination"))
    notes = _mapping(_mapping(rule.get("metadata")).get("annotations"))
    nets = [str(n) for n in peer.get("nets") or ()]
    not_nets = [str(n) for n in peer.get("notNets") or ()]
    domains = peer.get("domains") or str(notes.get("flowfence.io/domains", "")).split(",")
    service = peer.get("services") if isinstance(peer.get("services"), dict) else None
    if service is not None:
        scope, text = "Service", f"service {service.get('namespace', '-')}/{service.get('name')}"
    elif "selector" in peer:
        names = _names(str(peer["selector"]))
        where = _names(str(peer.get("namespaceSelector", "")))
        scope = "NetworkSet"
        name = notes.get(f"{TIGERA}/name") or (names[0] if names else "?")
        text = f"networkset {(where[0] if where else 'global')}/{name}"
    elif "namespaceSelector" in peer:
        scope, text = "Namespace", "namespace " + ",".join(_names(peer["namespaceSelector"]))
    elif [d for d in domains if d]:
        scope, text = "Domains", "domains " + ",".join(d for d in domains if d)
    else:
        scope, text = _address_scope(nets), _nets_text(nets, not_nets)
    scope = str(notes.get(f"{TIGERA}/scope", scope))
    ports = tuple(str(p) for p in dest.get("ports") or ())
    return RuleView(
        direction, str(rule.get("action", "?")), scope, text, str(rule.get("protocol", "any")),
        ports, key=rule_key(rule),
    )  # fmt: skip


def _k8s_view(rule: Mapping[str, Any], direction: str) -> RuleView:
    peers = rule.get("to" if direction == "egress" else "from") or []
    names: list[str] = []
    nets: list[str] = []
    not_nets: list[str] = []
    for peer in peers if isinstance(peers, list) else []:
        selector = peer.get("namespaceSelector") if isinstance(peer, dict) else None
        if isinstance(selector, dict):
            names += [str(v) for v in (selector.get("matchLabels") or {}).values()]
            for expr in selector.get("matchExpressions") or ():
                names += [str(v) for v in expr.get("values") or ()]
        block = peer.get("ipBlock") if isinstance(peer, dict) else None
        if isinstance(block, dict):
            nets.append(str(block.get("cidr")))
            not_nets += [str(n) for n in block.get("except") or ()]
    ports = rule.get("ports") or []
    protocols = sorted({str(p.get("protocol", "TCP")) for p in ports}) or ["any"]
    port_text = tuple(
        str(p["port"]) + (f":{p['endPort']}" if "endPort" in p else "")
        for p in ports
        if "port" in p
    )
    if names:
        scope, text = "Namespace", "namespace " + ",".join(names)
    else:
        scope, text = _address_scope(nets), _nets_text(nets, not_nets)
    return RuleView(
        direction, "Allow", scope, text, ",".join(protocols), port_text, key=rule_key(rule)
    )


def describe(doc: Mapping[str, Any]) -> tuple[RuleView, ...]:
    """The rules of a policy manifest, egress first (as the report lists rules)."""
    spec = _mapping(doc.get("spec"))
    k8s = str(doc.get("apiVersion", "")).startswith("networking.k8s.io")
    views: list[RuleView] = []
    for direction in ("egress", "ingress"):
        for rule in spec.get(direction) or ():
            if isinstance(rule, dict):
                views.append(_k8s_view(rule, direction) if k8s else _calico_view(rule, direction))
    return tuple(views)


# --- evidence index -----------------------------------------------------------------------


def evidence(rule: Rule) -> rpt.Evidence:
    ev = rule.evidence
    return rpt.Evidence(
        rpt.rfc3339(ev.first_seen), rpt.rfc3339(ev.last_seen), ev.flows, ev.bytes, ev.days,
        ev.edges,
    )  # fmt: skip


def index_rules(
    files: Mapping[str, bytes], recs: Mapping[str, Recommendation]
) -> dict[RuleId, RuleFacts]:
    """Evidence and flags for the rules of rendered manifests, matched to the model's rules.

    The renderers write one manifest rule per model rule, in the model's order, so the rules
    of each direction pair up by position.
    """
    index: dict[RuleId, RuleFacts] = {}
    for data in files.values():
        doc = policy_doc(data)
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
            view = RuleView(**{**vars(view), "evidence": facts.evidence, "flags": facts.flags})
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
    path: str, old: bytes | None, data: bytes | None, index: Mapping[RuleId, RuleFacts]
) -> NamespaceChange | None:
    old_doc = policy_doc(old) if old is not None else None
    new_doc = policy_doc(data) if data is not None else None
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
        previous_staged_action=None if old_doc is None else _staged_action(old_doc),
        staged_action=None if new_doc is None else _staged_action(new_doc),
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
    index: Mapping[RuleId, RuleFacts] | None = None,
) -> ChangeSet:
    """Compare the policy files before and after a run (relative paths under policies/)."""
    index = index or {}
    paths = sorted(p for p in {*previous, *new} if p.startswith(f"{POLICIES}/"))
    changed = tuple(p for p in paths if previous.get(p) != new.get(p))
    by_ns: dict[str, NamespaceChange] = {}
    for path in paths:
        old, data = previous.get(path), new.get(path)
        if old == data and data is not None:
            change = _unchanged(path, data)
        else:
            change = _changed(path, old, data, index)
        if change is not None and change.namespace not in by_ns:
            by_ns[change.namespace] = change
    return ChangeSet(tuple(by_ns[ns] for ns in sorted(by_ns)), changed)


# --- model rules -------------------------------------------------------------------------


def model_view(rule: Rule) -> RuleView:
    """A RuleView of a model rule (drift and stale rules, which have no manifest of their own)."""
    return RuleView(
        rule.direction, rule.action, rule.scope, peer_text(rule), rule.protocol,
        tuple(str(p) for p in rule.ports), evidence(rule), rule.flags,
    )  # fmt: skip


def peer_text(rule: Rule) -> str:
    """A short, human-readable name for the peer of a rule (reports only)."""
    if rule.scope == "Namespace":
        return "namespace " + ",".join(rule.namespaces)
    if rule.scope == "NetworkSet" and rule.netset is not None:
        return f"networkset {rule.netset.namespace or 'global'}/{rule.netset.name}"
    if rule.scope == "Service" and rule.service is not None:
        return f"service {rule.service.namespace or '-'}/{rule.service.name}"
    if rule.scope == "Domains":
        return "domains " + ",".join(rule.domains)
    return _nets_text(rule.nets, rule.not_nets)

"""The rules of a policy manifest described for a reader (report/change_set.py's `RuleView`).

Rules are described from the manifests themselves, so a comparison works for every flavor and
for hand-edited or older files. A rule is identified by its match (`rule_key`: the manifest
rule without its metadata), so a staged policy that becomes enforced keeps its rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from flowfence.calico import cidr
from flowfence.core import yaml_loader
from flowfence.render.manifests import TIGERA
from flowfence.report.change_set import RuleView, nets_text

POLICY_KINDS = frozenset({"StagedNetworkPolicy", "NetworkPolicy"})
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def namespaced_policy(doc: object) -> dict[str, Any] | None:
    """`doc` when it is a namespaced policy, else None (tier, kustomization, anything else)."""
    if not isinstance(doc, dict) or doc.get("kind") not in POLICY_KINDS:
        return None
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("namespace"), str):
        return None
    return doc


def policy_doc(data: bytes) -> dict[str, Any] | None:
    """The namespaced policy in a manifest file read from disk, or None (not a policy,
    unreadable)."""
    try:
        # Bounded (yaml_loader.Refused): the file on disk may have been edited by hand.
        docs = yaml_loader.load_all(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return namespaced_policy(docs[0]) if len(docs) == 1 else None


def rule_key(rule: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in rule.items() if k != "metadata"}, sort_keys=True)


def staged_action(doc: Mapping[str, Any]) -> str | None:
    spec = doc.get("spec")
    value = spec.get("stagedAction") if isinstance(spec, dict) else None
    return value if isinstance(value, str) else None


def _names(selector: str) -> list[str]:
    return [a or b for a, b in _QUOTED.findall(selector)]


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
        scope, text = _address_scope(nets), nets_text(nets, not_nets)
    scope = str(notes.get(f"{TIGERA}/scope", scope))
    ports = tuple(str(p) for p in dest.get("ports") or ())
    flags = tuple(f for f in str(notes.get("flowfence.io/flags", "")).split(",") if f)
    return RuleView(
        direction, str(rule.get("action", "?")), scope, text, str(rule.get("protocol", "any")),
        ports, flags=flags, key=rule_key(rule),
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
        scope, text = _address_scope(nets), nets_text(nets, not_nets)
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

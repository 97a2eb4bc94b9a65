"""The cluster inventory: `kubectl get pods -A -o json` read into what evaluation needs of it.

Flow logs carry port numbers, policies may name ports (`port: http`); Kubernetes and Calico
resolve a name against the containers of the destination pod. The inventory gives, per group
of pods with the same namespace, labels and named ports, those ports (name, protocol, number)
and the pods' names. When the file also lists Namespaces (`kubectl get pods,namespaces -A -o
json`), it gives their labels and the namespace list as `--namespaces` would.

The file is untrusted and may be large: every name, label, port and protocol is checked as the
API server would; a pod that fails is skipped, as is a single bad port or a bad namespace
label, and each is reported (the first MAX_PROBLEMS reports kept, then a count). A file that is
not JSON, or not a List of Pods and Namespaces, is refused (ConfigError, exit 2).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flowfence.calico.names import (
    is_dns1123_label,
    is_dns1123_subdomain,
    sample,
)
from flowfence.calico.namespace_items import namespace_item, valid_label
from flowfence.calico.policy_rules import PROTOCOLS
from flowfence.core.errors import ConfigError

MAX_PROBLEMS = 20
PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")
# IANA_SVC_NAME as Kubernetes validates a container port name: at most 15 characters of
# [a-z0-9-], at least one letter, no leading, trailing or doubled hyphen.
_SVC_NAME = re.compile(r"(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*")
_HINT = "expected `kubectl get pods -A -o json` output"


@dataclass(frozen=True, order=True)
class NamedPort:
    name: str
    protocol: int  # IANA number: 6 TCP, 17 UDP, 132 SCTP
    port: int


@dataclass(frozen=True)
class PodGroup:
    """Pods of one namespace with the same labels and named ports (the replicas of a workload)."""

    namespace: str
    labels: frozenset[str]  # `key=value`, as flow logs carry labels
    ports: tuple[NamedPort, ...]  # sorted
    names: tuple[str, ...]  # the pods' names, sorted

    def fits(self, name: str | None, labels: tuple[str, ...]) -> bool:
        """Whether a flow endpoint (aggregated name, labels shared by its pods) can be one of
        these pods: every flow label is the pod's, and the name is a pod's or its `*` prefix."""
        if not self.labels.issuperset(labels):
            return False
        if name is None:
            return True
        if name.endswith("*"):
            return any(n.startswith(name[:-1]) for n in self.names)
        return name in self.names


@dataclass(frozen=True)
class Inventory:
    pods: tuple[PodGroup, ...]  # groups with at least one named port, sorted
    pod_count: int  # valid pods read, with or without named ports
    # Labels per namespace from the Namespace items; None when the file lists no Namespace.
    namespaces: Mapping[str, Mapping[str, str]] | None
    problems: tuple[str, ...]


def is_port_name(s: str) -> bool:
    """A container port name Kubernetes accepts (IANA_SVC_NAME)."""
    return _SVC_NAME.fullmatch(s) is not None


class _Problems:
    """Reports of skipped items, capped so a hostile file cannot flood the report."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_PROBLEMS:
            self.kept.append(message)

    def result(self) -> tuple[str, ...]:
        extra = self.count - len(self.kept)
        return (*self.kept, f"{extra} more inventory problems") if extra else tuple(self.kept)


def load_inventory(path: Path) -> Inventory:
    """Read `kubectl get pods -A -o json` (or `pods,namespaces`) output from `path`."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--inventory {path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError: JSONDecodeError, UnicodeDecodeError, and the plain ValueError of an
        # integer past Python's digit limit (untrusted input must not end in a traceback).
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise ConfigError(f"--inventory {path}: not JSON ({reason}); {_HINT}") from exc
    return parse_inventory(data, f"--inventory {path}")


def parse_inventory(data: Any, where: str = "inventory") -> Inventory:
    """The inventory from decoded JSON: a v1 List (or PodList) of Pods and Namespaces."""
    if not isinstance(data, Mapping) or data.get("kind") not in ("List", "PodList"):
        kind = data.get("kind") if isinstance(data, Mapping) else type(data).__name__
        raise ConfigError(f"{where}: not a List of Pods (kind {sample(kind)}); {_HINT}")
    items = data.get("items")
    if not isinstance(items, list):
        raise ConfigError(f"{where}: items must be a list; {_HINT}")
    problems = _Problems()
    groups: dict[tuple[str, frozenset[str], tuple[NamedPort, ...]], list[str]] = {}
    namespaces: dict[str, Mapping[str, str]] | None = None
    pods: set[tuple[str, str]] = set()
    for n, item in enumerate(items):
        kind = item.get("kind") if isinstance(item, Mapping) else None
        if kind == "Namespace":
            namespaces = {} if namespaces is None else namespaces
            _namespace(item, f"item {n}", namespaces, problems)
        elif kind == "Pod":
            pod = _pod(item, f"item {n}", problems)
            if pod is None:
                continue
            namespace, name, labels, ports = pod
            if (namespace, name) in pods:
                problems.add(f"pod {namespace}/{name}: listed twice, later entry skipped")
                continue
            pods.add((namespace, name))
            if ports:
                groups.setdefault((namespace, labels, ports), []).append(name)
        else:
            problems.add(f"item {n}: kind {sample(kind)} is not a Pod or Namespace, skipped")
    found = tuple(
        PodGroup(ns, labels, ports, tuple(sorted(names)))
        for (ns, labels, ports), names in sorted(groups.items(), key=lambda g: _group_key(g[0]))
    )
    frozen = None
    if namespaces is not None:
        frozen = MappingProxyType(dict(sorted(namespaces.items())))
    return Inventory(found, len(pods), frozen, problems.result())


def _group_key(key: tuple[str, frozenset[str], tuple[NamedPort, ...]]) -> tuple[object, ...]:
    return (key[0], sorted(key[1]), key[2])


def _metadata(item: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = item.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _namespace(
    item: Mapping[str, Any], where: str, out: dict[str, Mapping[str, str]], problems: _Problems
) -> None:
    found = namespace_item(item, where, out, problems.add)
    if found is not None:
        out[found[0]] = MappingProxyType(found[1])


def _pod(
    item: Mapping[str, Any], where: str, problems: _Problems
) -> tuple[str, str, frozenset[str], tuple[NamedPort, ...]] | None:
    """(namespace, name, labels, named ports) of a valid pod; None (reported) otherwise."""
    meta = _metadata(item)
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not is_dns1123_subdomain(name):
        problems.add(f"{where}: invalid pod name {sample(name)}, skipped")
        return None
    if not isinstance(namespace, str) or not is_dns1123_label(namespace):
        problems.add(f"{where}: pod {name}: invalid namespace {sample(namespace)}, skipped")
        return None
    raw = meta.get("labels")
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping) or not all(valid_label(k, v) for k, v in raw.items()):
        problems.add(f"pod {namespace}/{name}: invalid labels, skipped")
        return None
    labels = frozenset(f"{k}={v}" for k, v in raw.items())
    spec = item.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    if not isinstance(containers, list):
        problems.add(f"pod {namespace}/{name}: no spec.containers list, skipped")
        return None
    ports: dict[str, NamedPort] = {}
    for c, container in enumerate(containers):
        entries = container.get("ports") if isinstance(container, Mapping) else None
        for p, entry in enumerate(entries if isinstance(entries, list) else []):
            at = f"pod {namespace}/{name}: containers[{c}].ports[{p}]"
            port = _port(entry, at, problems)
            if port is None:
                continue
            if port.name in ports:
                problems.add(f"{at}: port name {port.name} used twice in the pod, skipped")
                continue
            ports[port.name] = port
    return namespace, name, labels, tuple(sorted(ports.values()))


def _port(entry: Any, at: str, problems: _Problems) -> NamedPort | None:
    """A container port with a name (unnamed ports cannot be referred to: None, silently)."""
    if not isinstance(entry, Mapping):
        problems.add(f"{at}: not a mapping, skipped")
        return None
    name = entry.get("name")
    if name is None:
        return None
    number, protocol = entry.get("containerPort"), entry.get("protocol", "TCP")
    if not isinstance(name, str) or not is_port_name(name):
        problems.add(f"{at}: invalid port name {sample(name)}, skipped")
    elif isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
        problems.add(f"{at}: invalid containerPort {sample(number)}, skipped")
    elif protocol not in PORT_PROTOCOLS:
        problems.add(f"{at}: invalid protocol {sample(protocol)}, skipped")
    else:
        return NamedPort(name, PROTOCOLS[protocol.lower()], number)
    return None


def notes(inventory: Inventory, *, namespaces_given: bool) -> tuple[str, ...]:
    """Warnings for the report: what was skipped, and the precedence of `--namespaces`."""
    out = [f"inventory: {p}" for p in inventory.problems]
    if namespaces_given and inventory.namespaces is not None:
        out.append(
            "inventory: --namespaces given, so the inventory's Namespace items are not used "
            "(--namespaces gives the namespace list and labels)"
        )
    return tuple(out)


def namespace_labels(
    inventory: Inventory | None, given: Mapping[str, Mapping[str, str]] | None
) -> Mapping[str, Mapping[str, str]] | None:
    """The namespace list and labels: `--namespaces` (`given`) when present, else the
    inventory's Namespace items, else None (unknown)."""
    if given is not None or inventory is None:
        return given
    return inventory.namespaces

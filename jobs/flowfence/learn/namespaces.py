"""Which namespaces get a recommendation: discovery, namespace labels and the scope selector.

Namespaces come from two places: the flows (namespaces of workload endpoints) and, optionally,
a `kubectl get namespaces -o yaml` dump that supplies their labels. Each namespace is matched
against `namespaceSpec.selector` with the labels Calico gives a namespace profile:
`projectcalico.org/name` and `kubernetes.io/metadata.name` set to its name, plus the labels from
the file. Without a file only the name labels exist, which is all the Calico Enterprise engine
ever uses (it tests the selector against `{projectcalico.org/name: <ns>}` alone).

The file is the cluster's list of namespaces: a namespace seen in the flows (or known from the
state) but absent from it is deleted, and gets no recommendation, as Calico deletes the
recommendation of a deleted namespace. Without a file the tool cannot tell, except for the
namespaces the state already records as deleted (`gone`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import polars as pl

from flowfence.calico.names import is_dns1123_label, sample
from flowfence.calico.namespace_items import INVALID_NAME, namespace_item
from flowfence.calico.selector import parse
from flowfence.config.documents import load_documents
from flowfence.config.settings import Settings
from flowfence.core.errors import ConfigError

NAME_LABELS = ("projectcalico.org/name", "kubernetes.io/metadata.name")
NOT_SELECTED = "not selected by namespaceSpec.selector"
DELETED = "namespace deleted"

NamespaceLabels = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class NamespaceFile:
    """Labels per namespace from a namespaces dump, and what was skipped and why."""

    labels: NamespaceLabels
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class SelectedNamespaces:
    selected: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]  # (name, reason), sorted by name
    not_in_file: tuple[str, ...] = ()  # seen in flows, absent from the namespaces file

    @property
    def deleted(self) -> tuple[str, ...]:
        """The namespaces excluded because they are deleted (sorted)."""
        return tuple(name for name, reason in self.excluded if reason == DELETED)


def _items(doc: Any, where: str) -> list[Any]:
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a Namespace or a List, got {type(doc).__name__}")
    if doc.get("kind") in ("List", "NamespaceList"):
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise ConfigError(f"{where}: items must be a list")
        return items
    return [doc]


def load_namespaces(path: Path) -> NamespaceFile:
    """Read a v1 List of Namespaces, a single Namespace or several YAML documents.

    Entries that are not Namespaces, bad names and bad labels are skipped and reported (a bad
    label drops only that label); an unreadable or non-YAML file raises ConfigError."""
    labels: dict[str, Mapping[str, str]] = {}
    problems: list[str] = []
    for doc in load_documents(path):
        if doc is None:
            continue
        for n, item in enumerate(_items(doc, str(path))):
            where = f"item {n}"
            if not isinstance(item, Mapping) or item.get("kind") != "Namespace":
                problems.append(f"{where}: not a Namespace, skipped")
                continue
            found = namespace_item(item, where, labels, problems.append)
            if found is not None:
                labels[found[0]] = MappingProxyType(found[1])
    return NamespaceFile(MappingProxyType(dict(sorted(labels.items()))), tuple(problems))


def namespace_labels(name: str, file_labels: NamespaceLabels | None = None) -> dict[str, str]:
    """The labels a namespace's selector sees; the name labels always win over the file."""
    labels = dict(file_labels.get(name, {})) if file_labels is not None else {}
    labels.update(dict.fromkeys(NAME_LABELS, name))
    return labels


def discover_namespaces(edges: pl.DataFrame) -> list[str]:
    """Distinct namespaces of the workload endpoints in the edges, sorted."""
    # Select before filtering: a filter copies every column it is given.
    found = pl.concat(
        [
            edges.select(f"{side}_type", f"{side}_namespace")
            .filter(pl.col(f"{side}_type") == "wep")
            .get_column(f"{side}_namespace")
            for side in ("source", "dest")
        ]
    )
    return sorted(found.drop_nulls().unique().to_list())


def last_flows(edges: pl.DataFrame) -> dict[str, datetime]:
    """Newest flow per namespace with a workload on either side (any action)."""
    sides = [
        edges.select(f"{side}_type", pl.col(f"{side}_namespace").alias("namespace"), "last_seen")
        .filter(pl.col(f"{side}_type") == "wep")
        .drop(f"{side}_type")
        for side in ("source", "dest")
    ]
    both = pl.concat(sides).drop_nulls("namespace")
    newest = both.group_by("namespace").agg(pl.col("last_seen").max())
    return dict(newest.iter_rows())


def select_namespaces(
    discovered: Iterable[str],
    file_labels: NamespaceLabels | None,
    settings: Settings,
    *,
    known: Iterable[str] = (),
    gone: Collection[str] = (),
) -> SelectedNamespaces:
    """Apply `namespaceSpec.selector` to every namespace seen in the flows or in the file.

    A namespace absent from the file is deleted (`DELETED`), and so are `known` namespaces
    (those the state holds) absent from it, even without flows: their removal has a reason.
    Without a file, `gone` (recorded as deleted, no flow since) stays deleted."""
    selector = parse(settings.namespace_selector)
    seen = set(discovered)
    names = seen | set(file_labels or {})
    if file_labels is not None:
        names |= set(known)
    selected: list[str] = []
    excluded: list[tuple[str, str]] = []
    for name in sorted(names):
        absent = name not in file_labels if file_labels is not None else name in gone
        if not is_dns1123_label(name):
            excluded.append((sample(name), INVALID_NAME))
        elif absent:
            excluded.append((name, DELETED))
        elif selector.matches(namespace_labels(name, file_labels)):
            selected.append(name)
        else:
            excluded.append((name, NOT_SELECTED))
    missing = sorted(
        n for n in seen if file_labels is not None and n not in file_labels and is_dns1123_label(n)
    )
    return SelectedNamespaces(tuple(selected), tuple(excluded), tuple(missing))

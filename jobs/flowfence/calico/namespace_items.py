"""A Namespace object of the Kubernetes API read as untrusted input, for both readers of
namespaces: the `--namespaces` file (learn/namespaces.py) and the inventory's Namespaces
(inventory.py). A bad name skips the item, a bad label only that label, and each is reported
through `problem` in the same words whichever file it came from."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from flowfence.calico.names import is_dns1123_label, is_label_key, is_label_value, sample

INVALID_NAME = "invalid namespace name"

Problem = Callable[[str], None]


def valid_label(key: object, value: object) -> bool:
    return (
        isinstance(key, str)
        and isinstance(value, str)
        and is_label_key(key)
        and is_label_value(value)
    )


def labels_of(name: str, raw: Any, problem: Problem) -> dict[str, str]:
    """The valid labels of namespace `name` from its `metadata.labels`, sorted."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problem(f"namespace {name}: labels are not a mapping, ignored")
        return {}
    out = {}
    for key, value in raw.items():
        if valid_label(key, value):
            out[key] = value
        else:
            problem(f"namespace {name}: invalid label {sample(key)}={sample(value)}, skipped")
    return dict(sorted(out.items()))


def namespace_item(
    item: Mapping[str, Any], where: str, seen: Collection[str], problem: Problem
) -> tuple[str, dict[str, str]] | None:
    """The name and labels of a Namespace `item`; None (reported) for an invalid name or one
    already in `seen`."""
    meta = item.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not is_dns1123_label(name):
        problem(f"{where}: {INVALID_NAME} {sample(name)}, skipped")
        return None
    if name in seen:
        problem(f"namespace {name}: listed twice, later entry skipped")
        return None
    return name, labels_of(name, meta.get("labels"), problem)

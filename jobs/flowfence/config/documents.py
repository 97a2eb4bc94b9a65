"""Reading configuration YAML strictly: duplicate keys, unknown keys and wrong shapes are errors
that name the file and the field, never silently replaced by a default."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flowfence.core.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key if isinstance(key, str) else id(key_node))
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_documents(path: Path) -> list[Any]:
    """Every YAML document in `path`; ConfigError (naming the file) if unreadable or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def fail(where: str, problem: str) -> ConfigError:
    return ConfigError(f"{where}: {problem}")


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(where, f"expected a mapping, got {type(value).__name__}")
    return value


def no_unknown(doc: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    for key in doc:
        if key not in allowed:
            raise fail(where, f"unknown key {key!r}")


def single_document(path: Path) -> Mapping[str, Any]:
    """The one object in `path`: a lone document, or a `kind: List` holding one item."""
    docs = [d for d in load_documents(path) if d is not None]
    if len(docs) != 1:
        raise fail(str(path), f"expected one YAML document, found {len(docs)}")
    doc = mapping(docs[0], str(path))
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        items = doc["items"]
        if len(items) != 1:
            raise fail(str(path), f"expected a List with one item, found {len(items)}")
        doc = mapping(items[0], f"{path}: items[0]")
    return doc

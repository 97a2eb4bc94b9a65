"""flowfence's own settings file (`kind: FlowfenceConfig`): the settings Calico's scope has no
field for, one top-level key per setting (see docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowfence.config.documents import fail, no_unknown, single_document
from flowfence.config.fields import FIELDS, convert

CONFIG_API_VERSION = "flowfence.io/v1alpha1"
CONFIG_KIND = "FlowfenceConfig"


def parse_config(path: Path) -> dict[str, Any]:
    """The Settings fields a FlowfenceConfig file sets (converted), keyed by field name."""
    doc = single_document(path)
    where = str(path)
    by_key = {key: name for name, (_, key) in FIELDS.items() if key is not None}
    no_unknown(doc, {"apiVersion", "kind", "metadata", *by_key}, where)
    if doc.get("apiVersion") != CONFIG_API_VERSION or doc.get("kind") != CONFIG_KIND:
        raise fail(where, f"expected apiVersion {CONFIG_API_VERSION}, kind {CONFIG_KIND}")
    return {
        name: convert(name, doc[key], f"{where}: {key}")
        for key, name in by_key.items()
        if key in doc
    }

"""Published Calico Enterprise flow records (tests/calico_records; where each comes from is in
tests/calico_records/PROVENANCE.md), for tests that need real records: the files, how many
records each holds, and their documents read independently of `flowfence ingest`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RECORDS_DIR = Path(__file__).resolve().parent / "calico_records"
PROVENANCE = RECORDS_DIR / "PROVENANCE.md"

# file -> the number of flow records it holds (the table in PROVENANCE.md)
COUNTS = {
    "globalalert-in-search.json": 3,
    "globalalert-notin-search.json": 3,
    "globalalert-search.json": 2,
    "intrusion-detection-flows-data.json": 4,
    "intrusion-detection-search.json": 1,
    "intrusion-detection-watch-flows.json": 200,
    "observability-clinic.flows.log": 1,
    "observability-clinic.single.json": 1,
    "tigera-docs-aggregation.array.json": 7,
    "tigera-docs-aggregation.flows.log": 7,
    "tigera-docs-aggregation.pretty.json": 7,
}


def record_files() -> list[Path]:
    """Every record file, sorted by name."""
    return [RECORDS_DIR / name for name in sorted(COUNTS)]


def documents_in(path: Path) -> list[dict[str, Any]]:
    """The flow documents of a record file: every top-level JSON value, with arrays and
    `_search` responses opened."""
    text, decoder, pos, found = path.read_text(), json.JSONDecoder(), 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return found
        value, pos = decoder.raw_decode(text, pos)
        for item in value if isinstance(value, list) else [value]:
            hits = item.get("hits", {}).get("hits") if "hits" in item else None
            found.extend(h["_source"] for h in hits) if hits is not None else found.append(item)


def all_documents() -> list[dict[str, Any]]:
    """The documents of every record file (a record in several layouts is there once each)."""
    return [doc for path in record_files() for doc in documents_in(path)]

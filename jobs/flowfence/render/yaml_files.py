"""A run's documents as YAML files, each document dumped at most once: a document that did not
change since the last run is not turned into YAML again (PyYAML's pure-Python emitter is most
of a small incremental run).

The state's `manifests` table keeps, per file written, a key of its document (with the
flowfence version, so an upgrade renders again) and the SHA-256 of its bytes. A document with
the same key whose file still holds exactly those bytes is reused; anything else (a new
document, a file edited by hand or missing) is dumped. The output is byte-identical to dumping
every document (yaml_text.dump).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from flowfence import __version__
from flowfence.render import yaml_text
from flowfence.state import tables

Cached = Callable[[str], bytes | None]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def render(
    docs: Mapping[str, Mapping[str, Any]], previous: pl.DataFrame, cached: Cached | None
) -> tuple[dict[str, bytes], pl.DataFrame]:
    """The bytes of each document (relative path -> bytes, in path order), reusing the bytes
    written last time for a document that did not change (same key, file on disk still holding
    exactly those bytes), and the new manifests table."""
    known = {r["file"]: (r["doc_key"], r["sha256"]) for r in previous.iter_rows(named=True)}
    files: dict[str, bytes] = {}
    rows = []
    for rel, doc in sorted(docs.items()):
        text = json.dumps([__version__, doc], sort_keys=True, default=str)
        key = _sha(text.encode())
        data = None
        if cached is not None and known.get(rel, ("", ""))[0] == key:
            data = cached(rel)
            if data is not None and _sha(data) != known[rel][1]:
                data = None  # edited or torn: write it again
        files[rel] = data if data is not None else yaml_text.dump(doc)
        rows.append((rel, key, _sha(files[rel])))
    return files, pl.DataFrame(rows, schema=tables.MANIFESTS_SCHEMA, orient="row")


def output_reader(out: Path) -> Cached:
    """Reads the files a previous run wrote under `out` (None when absent)."""

    def read(rel: str) -> bytes | None:
        try:
            return (out / rel).read_bytes()
        except OSError:
            # Missing, or unreadable (a symlink loop): not "already there", so it is written,
            # and writing refuses what cannot be written with a message naming it.
            return None

    return read

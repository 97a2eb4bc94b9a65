"""Which data files of an ingest store are committed, for its writer and for every reader.

An ingest store (ingest/store.py, written by `ingest` and `receive`, locally or on an object
store) holds `date=YYYY-MM-DD/hour=HH/ingest-<id>-<chunk>_<n>.parquet` data files and
`_ingest/manifest.json`, which lists the sha256 of every committed input; `<id>` is the
first 16 hex digits of that sha256. A writer puts an input's files in place first and replaces
the manifest last, so between the two, and for good after a crash between them, there are
files no manifest commits (the next writer deletes them).

Readers (flows/sources.py, flows/spark_files.py) therefore skip every `ingest-<id>-…` file
whose id the manifest of its store does not list, and read everything else: compacted files,
files of other writers, trees without a manifest (the fixture generator's, Spark's, a copy).
`--compact` has a window of its own: the merged file is renamed in before the files it
replaces are deleted, and its journal (`_ingest/compact.json`) names both until then; a
reader that lists the merged file skips the files the journal says it replaces.
A writer writes the manifest, empty if need be, before the first data file of a store, so a
store being filled for the first time already has one. Reading the manifest after listing
the files is what makes this safe: a listed file the manifest does not commit is either being
committed right now (the next run reads it) or about to be deleted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flowfence.core import partitions

META = "_ingest"
MANIFEST = f"{META}/manifest.json"
JOURNAL = f"{META}/compact.json"  # a compaction under way (ingest/store.py)
MANIFEST_VERSION = 1
ID_LENGTH = 16
DATA_NAME = re.compile(r"(ingest-([0-9a-f]{16})-[0-9]+_[0-9]+|compact-[0-9a-f]{32})\.parquet")


def input_id(rel: str) -> str | None:
    """The input id in the name of a data file at `rel` (relative to the store root), None
    for anything else: files of other writers, compacted files, files outside a partition."""
    partition, _, name = rel.rpartition("/")
    match = DATA_NAME.fullmatch(name)
    return match.group(2) if match and partitions.is_hour_path(partition) else None


def split(path: str) -> tuple[str, str] | None:
    """(store root, `date=…/hour=…/name`) of an ingest or compacted data file at `path`
    ('/'-separated: a local path, `bucket/key` or a URL), None for any other file. The store
    root is the path above the file's partition ('' when that partition is at the top)."""
    parts = path.rsplit("/", 3)
    if len(parts) < 3:
        return None
    rel = "/".join(parts[-3:])
    if not DATA_NAME.fullmatch(parts[-1]) or not partitions.is_hour_path(rel.rpartition("/")[0]):
        return None
    return (parts[0] if len(parts) == 4 else ""), rel


def committed_ids(data: bytes) -> frozenset[str]:
    """The input ids a manifest's bytes commit; ValueError saying what is wrong with it."""
    doc = _json(data, "ingest manifest")
    if doc.get("version") != MANIFEST_VERSION:
        raise ValueError(f"not a version {MANIFEST_VERSION} ingest manifest")
    entries = doc.get("entries")
    if not isinstance(entries, dict):
        raise ValueError("ingest manifest without entries")
    return frozenset(str(sha)[:ID_LENGTH] for sha in entries)


def replaced(data: bytes) -> tuple[str, frozenset[str]]:
    """From a compaction journal's bytes: the new file and the files it replaces, as
    `date=…/hour=…/name`; ValueError when it is not a journal."""
    doc = _json(data, "compaction journal")
    try:
        partition, new, old = str(doc["partition"]), str(doc["new"]), list(doc["old"])
        return f"{partition}/{new}", frozenset(f"{partition}/{name}" for name in old)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed compaction journal: {exc}") from None


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"unreadable {what}: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"not an {what}")
    return doc


def uncommitted(paths: Iterable[str], read: Callable[[str, str], bytes | None]) -> set[str]:
    """The paths among `paths` a reader must skip: ingest data files their store's manifest
    does not commit, and the files a compaction has replaced but not yet deleted (while its
    journal names them and the new file is listed; the journal is read only when a compacted
    file is). `read(root, rel)` gives the bytes of `root/rel` (`MANIFEST`, `JOURNAL`), None
    when there is none: a tree without a manifest is not an ingest store and nothing is
    dropped. Call it after listing `paths` (module doc). ValueError from a manifest or
    journal that is not one, naming it."""
    by_root: dict[str, dict[str, str]] = {}
    for path in paths:
        found = split(path)
        if found is not None:
            by_root.setdefault(found[0], {})[found[1]] = path
    out: set[str] = set()
    for root, files in by_root.items():
        data = read(root, MANIFEST)
        if data is None:
            continue
        try:
            ids = committed_ids(data)
        except ValueError as exc:
            raise ValueError(f"{root}/{MANIFEST}: {exc}") from None
        for rel, path in files.items():
            ident = input_id(rel)
            if ident is not None and ident not in ids:
                out.add(path)
        if not any(rel.rpartition("/")[2].startswith("compact-") for rel in files):
            continue
        journal = read(root, JOURNAL)
        if journal is None:
            continue
        try:
            new, old = replaced(journal)
        except ValueError as exc:
            raise ValueError(f"{root}/{JOURNAL}: {exc}") from None
        if new in files:
            out.update(path for rel, path in files.items() if rel in old)
    return out


def read_local(root: str, rel: str) -> bytes | None:
    """`root/rel` of a local store for `uncommitted`; ValueError when unreadable."""
    try:
        return (Path(root) / rel).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{root}/{rel}: cannot read: {exc.strerror or exc}") from None


def note(hidden: set[str]) -> str:
    """The tail of a 'no Parquet files' message when files were skipped as uncommitted."""
    return f" (only {len(hidden)} file(s) of ingest inputs not committed yet)" if hidden else ""

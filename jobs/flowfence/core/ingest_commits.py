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

from flowfence.core import partitions

META = "_ingest"
MANIFEST = f"{META}/manifest.json"
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
    """(store root, input id) of an ingest data file at `path` ('/'-separated: a local path,
    `bucket/key` or a URL), None for any other file. The store root is the path above the
    file's `date=…/hour=…` partition ('' when that partition is at the top)."""
    parts = path.rsplit("/", 3)
    if len(parts) < 3:
        return None
    root = parts[0] if len(parts) == 4 else ""
    ident = input_id("/".join(parts[-3:]))
    return None if ident is None else (root, ident)


def committed_ids(data: bytes) -> frozenset[str]:
    """The input ids a manifest's bytes commit; ValueError saying what is wrong with it."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"unreadable ingest manifest: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
        raise ValueError(f"not a version {MANIFEST_VERSION} ingest manifest")
    entries = doc.get("entries")
    if not isinstance(entries, dict):
        raise ValueError("ingest manifest without entries")
    return frozenset(str(sha)[:ID_LENGTH] for sha in entries)


def uncommitted(paths: Iterable[str], manifest: Callable[[str], bytes | None]) -> set[str]:
    """The paths among `paths` that are ingest data files their store's manifest does not
    commit. `manifest(root)` gives the bytes of `root/_ingest/manifest.json`, None when there
    is none (then the tree is not an ingest store and nothing is dropped); it is called once
    per store root. Call it after listing `paths` (module doc). ValueError from a manifest
    that is not one, prefixed with the store root."""
    by_root: dict[str, list[tuple[str, str]]] = {}
    for path in paths:
        found = split(path)
        if found is not None:
            by_root.setdefault(found[0], []).append((path, found[1]))
    out: set[str] = set()
    for root, files in by_root.items():
        data = manifest(root)
        if data is None:
            continue
        try:
            ids = committed_ids(data)
        except ValueError as exc:
            raise ValueError(f"{root}/{MANIFEST}: {exc}") from None
        out.update(path for path, ident in files if ident not in ids)
    return out


def local_manifest(root: str) -> bytes | None:
    """The manifest of the local store at `root` for `uncommitted`; ValueError when unreadable."""
    try:
        return (Path(root) / MANIFEST).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{root}/{MANIFEST}: cannot read: {exc.strerror or exc}") from None


def note(hidden: set[str]) -> str:
    """The tail of a 'no Parquet files' message when files were skipped as uncommitted."""
    return f" (only {len(hidden)} file(s) of ingest inputs not committed yet)" if hidden else ""

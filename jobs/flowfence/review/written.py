"""What flowfence last wrote under `DIR/policies/`: the record `DIR/.flowfence-written.json`.

`accept` and `enforce` freeze the policy file on disk, so a hand edit of that file (an
allow-all rule, another tier) must not be frozen unseen. The output directory therefore keeps,
for each file flowfence writes, the text it last wrote and the SHA-256 digests of every version
of it flowfence may legitimately find there:

- the bytes the last run wrote, and
- while a file's content changes, the bytes the run before wrote. The record is written before
  the policies (run/pipeline.py), so a run killed in between leaves either version on disk; and
  a rerun at the same `--now` compares the files as they were before that run.

Digests change only when a file's content changes, so there are at most two per file. A file
whose digest is not known was edited by someone else: `flowfence accept|enforce` shows the
difference from `text` and refuses without `--keep-edits`, and a run does not freeze it
(apply_decisions.py). The run adds the digest its state recorded (the state's manifests table),
so deleting this record alone does not make an edit pass.

The record lives beside `policies/`, not in it, so nothing applies it to a cluster; GitOps
commits it with the policies (gitops.py). It is read like any hand-editable input: bounded,
validated, and a malformed record is a record of nothing (with a warning), never a crash.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

FILE_NAME = ".flowfence-written.json"
FORMAT = "flowfence-written"
VERSION = 1
MAX_BYTES = 256 * 1024 * 1024  # far above any policy tree; a bigger file is not ours
_DIGEST = re.compile(r"[0-9a-f]{64}")
_PATH = re.compile(r"policies/[A-Za-z0-9._-]{1,300}\.yaml")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_DIFF_LINES = 300


@dataclass(frozen=True)
class Entry:
    """One file: the text flowfence last wrote (None when only a digest is known, from the
    state) and the digests of the versions it may find on disk."""

    text: str | None
    digests: frozenset[str]

    def holds(self, data: bytes) -> bool:
        return digest(data) in self.digests


@dataclass(frozen=True)
class Written:
    files: Mapping[str, Entry] = field(default_factory=dict)
    problem: str | None = None  # why the record on disk could not be used (a warning)

    def get(self, rel: str) -> Entry | None:
        return self.files.get(rel)

    def with_digests(self, digests: Iterable[tuple[str, str]]) -> Written:
        """This record plus more known digests (relative path, digest), e.g. the state's."""
        files = dict(self.files)
        for rel, sha in digests:
            old = files.get(rel) or Entry(None, frozenset())
            files[rel] = Entry(old.text, old.digests | {sha})
        return Written(files, self.problem)


EMPTY = Written()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path_in(out: Path) -> Path:
    return out / FILE_NAME


def unseen_edit(data: bytes | None, entry: Entry | None, kept: str | None = None) -> bool:
    """Whether `data` (a policy file on disk) is a version flowfence did not write: there is a
    record of the file, its digest is not in it, and it is not the version a reviewer kept with
    --keep-edits (`kept`, its digest). No file, or no record of it, is not an edit."""
    if data is None or entry is None or entry.holds(data):
        return False
    return kept is None or digest(data) != kept


def edit_diff(rel: str, entry: Entry, data: bytes) -> str:
    """A unified diff from what flowfence last wrote to `data` (the file on disk), for a
    terminal: control characters shown as `?` (the file may hold anything), at most
    MAX_DIFF_LINES lines."""
    before = (entry.text or "").splitlines(keepends=True)
    now = data.decode("utf-8", errors="replace").splitlines(keepends=True)
    label = "(no copy of what flowfence last wrote)" if entry.text is None else "(flowfence)"
    lines = list(difflib.unified_diff(before, now, f"{rel} {label}", f"{rel} (on disk)", n=2))
    shown = [_CONTROL.sub("?", line.rstrip("\r\n")) for line in lines[:MAX_DIFF_LINES]]
    if len(lines) > MAX_DIFF_LINES:
        shown.append(f"... {len(lines) - MAX_DIFF_LINES} more diff lines")
    return "\n".join(shown) + "\n"


def after(prior: Written, files: Mapping[str, bytes]) -> Written:
    """The record once `files` (relative path -> bytes, a run's outputs) are written."""
    out: dict[str, Entry] = {}
    for rel, data in sorted(files.items()):
        text, sha = data.decode("utf-8"), digest(data)
        old = prior.files.get(rel)
        if old is None:
            known: frozenset[str] = frozenset()
        elif old.text == text or old.text is None:
            known = old.digests  # unchanged, or only the state's digest of the last write
        else:
            known = frozenset({digest(old.text.encode("utf-8"))})
        out[rel] = Entry(text, known | {sha})
    return Written(out)


def dumps(record: Written) -> bytes:
    files = {
        rel: {"sha256": sorted(e.digests), "text": e.text}
        for rel, e in sorted(record.files.items())
        if e.text is not None
    }
    doc = {"format": FORMAT, "version": VERSION, "files": files}
    return (json.dumps(doc, indent=1, sort_keys=False, ensure_ascii=True) + "\n").encode()


def _entry(rel: object, raw: object) -> tuple[str, Entry] | None:
    if not isinstance(rel, str) or not _PATH.fullmatch(rel) or not isinstance(raw, dict):
        return None
    text, shas = raw.get("text"), raw.get("sha256")
    if not isinstance(text, str) or not isinstance(shas, list) or not shas:
        return None
    if not all(isinstance(s, str) and _DIGEST.fullmatch(s) for s in shas):
        return None
    if digest(text.encode("utf-8")) not in shas:
        return None  # a text edited after flowfence wrote it: no copy to freeze
    return rel, Entry(text, frozenset(shas))


def parse(data: bytes, where: str = FILE_NAME) -> Written:
    """The record in `data`; malformed entries are left out, a malformed file records nothing
    (`problem` says why)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Written(problem=f"{where}: not JSON; no record of what flowfence last wrote")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        return Written(problem=f"{where}: not a flowfence record (format {FORMAT} {VERSION})")
    raw = doc.get("files")
    entries = [_entry(k, v) for k, v in raw.items()] if isinstance(raw, dict) else []
    kept = dict(e for e in entries if e is not None)
    bad = len(entries) - len(kept) if isinstance(raw, dict) else 1
    problem = f"{where}: {bad} malformed entr{'y' if bad == 1 else 'ies'} ignored" if bad else None
    return Written(dict(sorted(kept.items())), problem)


def load(out: Path) -> Written:
    """The record under `out`; EMPTY when there is none (a first run, an older flowfence)."""
    path = path_in(out)
    try:
        if path.is_symlink() or path.stat().st_size > MAX_BYTES:
            return Written(problem=f"{path}: a symlink or too large; not read")
        data = path.read_bytes()
    except FileNotFoundError:
        return EMPTY
    except OSError as exc:
        return Written(problem=f"{path}: cannot read: {exc.strerror or exc}")
    return parse(data, str(path))

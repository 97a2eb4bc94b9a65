"""Check many manifests: a policy tree on disk (`flowfence validate`) or a run's rendered files.

Files are YAML streams: every document is checked by its apiVersion and kind (schema.py).
Kustomization files are not Kubernetes objects and kinds without a schema are reported as
skipped, not as errors. The input is untrusted: a file that cannot be read or parsed is an
error naming it, a document whose aliases expand past MAX_NODES values or that contains itself
is refused before any check walks it, and every string shown is made printable.

A run's own output is held to more (`check_rendered`): one document per file, only the kinds
its flavor writes, the namespace named, and a kustomization listing exactly the other files.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from flowfence.calico.schema import CALICO, NETWORKING, CrdSet, check, kinds
from flowfence.calico.schema_rules import printable
from flowfence.core import yaml_loader
from flowfence.core.errors import BadInput

MAX_FILE = 64 * 1024 * 1024  # bytes; the API server refuses objects over 3 MiB
MAX_NODES = 1_000_000  # values in a document once YAML aliases are expanded
SUFFIXES = (".yaml", ".yml")
KUSTOMIZE_API = "kustomize.config.k8s.io/"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZATION = "kustomization.yaml"
# What each flavor's run writes under policies/ (besides its kustomization).
FLAVOR_KINDS = {
    "calico": {(CALICO, "StagedNetworkPolicy"), (CALICO, "NetworkPolicy"), (CALICO, "Tier")},
    "kubernetes": {(NETWORKING, "NetworkPolicy")},
}
FLAVOR_KINDS["calico-enterprise"] = FLAVOR_KINDS["calico"]


@dataclass(frozen=True)
class Finding:
    """An error (or, in `TreeReport.skipped`, the reason a document was skipped)."""

    file: str
    document: int  # 1-based position in the file's YAML stream; 0: the file as a whole
    kind: str
    name: str
    path: str  # in the document, "" for the whole document
    message: str

    def line(self) -> str:
        out = self.file
        if self.document:
            out += f": document {self.document}"
            if self.kind:
                out += f" ({self.kind}/{self.name})" if self.name else f" ({self.kind})"
        if self.path:
            out += f": {self.path}"
        return f"{out}: {self.message}"


@dataclass(frozen=True)
class TreeReport:
    root: str
    flavor: CrdSet
    files: int
    documents: int  # non-empty documents read
    valid: int  # documents checked without an error
    errors: tuple[Finding, ...]
    skipped: tuple[Finding, ...]

    @property
    def invalid(self) -> int:
        """Documents, and files that could not be read or parsed, with at least one error."""
        return len({(f.file, f.document) for f in self.errors})


def _label(doc: Mapping[Any, Any]) -> tuple[str, str]:
    kind, meta = doc.get("kind"), doc.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return (
        printable(kind, 80) if isinstance(kind, str) else "",
        printable(name, 80) if isinstance(name, str) else "",
    )


def _expanded_size(root: object) -> str | None:
    """Why a document is refused before checking (None: fine). PyYAML shares aliased values,
    so a few kilobytes can stand for billions of values, or a list can contain itself."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: object) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise ValueError("the document contains itself (a recursive YAML alias)")
        open_.add(key)
        total = 1
        for child in node.items() if isinstance(node, dict) else node:
            if isinstance(child, tuple):
                total += size(child[0]) + size(child[1])
            else:
                total += size(child)
            if total > MAX_NODES:
                raise ValueError(f"more than {MAX_NODES} values once YAML aliases are expanded")
        open_.discard(key)
        sizes[key] = total
        return total

    try:
        size(root)
    except ValueError as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply"
    return None


def _parse(data: bytes) -> tuple[list[tuple[int, Any]], tuple[int, str] | None]:
    """The documents of a YAML stream by 1-based position, and where parsing stopped."""
    docs: list[tuple[int, Any]] = []
    index = 0
    try:
        for index, body in enumerate(yaml_loader.iter_all(data), start=1):
            docs.append((index, body))
    except yaml_loader.Refused as exc:
        return docs, (index + 1, f"refused: {printable(str(exc))}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return docs, (index + 1, f"cannot parse YAML: {printable(str(reason))}{where}")
    except RecursionError:
        return docs, (index + 1, "cannot parse YAML: nested too deeply")
    return docs, None


def check_document(
    file: str, index: int, body: object, crds: CrdSet, *, require_namespace: bool = False
) -> tuple[list[Finding], Finding | None]:
    """(errors, skip reason) of one document."""
    if not isinstance(body, dict):
        what = type(body).__name__
        return [Finding(file, index, "", "", "", f"not a mapping but a YAML {what}")], None
    refused = _expanded_size(body)
    if refused is not None:
        return [Finding(file, index, *_label(body), "", refused)], None
    kind, name = _label(body)
    api_version = body.get("apiVersion")
    if file.rsplit("/", 1)[-1] in KUSTOMIZATION_FILES or (
        isinstance(api_version, str) and api_version.startswith(KUSTOMIZE_API)
    ):
        return [], Finding(file, index, kind, name, "", "a kustomization, not a Kubernetes object")
    if not isinstance(api_version, str) or not isinstance(body.get("kind"), str):
        return [Finding(file, index, kind, name, "", "apiVersion and kind are required")], None
    problems = check(body, crds, require_namespace=require_namespace)
    if problems is None:
        reason = f"no schema for {printable(api_version, 80)} {kind} in the {crds} CRDs"
        if (api_version, body["kind"]) in kinds("calico-enterprise"):
            reason += " (an Enterprise kind: --flavor calico-enterprise checks it)"
        return [], Finding(file, index, kind, name, "", reason)
    return [Finding(file, index, kind, name, p.path, p.message) for p in problems], None


def _files(root: Path) -> list[tuple[str, Path]]:
    if root.is_file():
        return [(printable(root.name), root)]
    if not root.is_dir():
        raise BadInput(f"{root}: no such file or directory")
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        # Hidden folders (.git, .venv) are not part of the policy tree.
        if any(part.startswith(".") for part in relative.parts[:-1]):
            continue
        if path.suffix in SUFFIXES and path.is_file():
            found.append((printable(relative.as_posix()), path))
    return sorted(found)


def check_tree(root: Path, crds: CrdSet) -> TreeReport:
    """Every `*.yaml`/`*.yml` under `root` (or `root` itself, a file), every document."""
    errors: list[Finding] = []
    skipped: list[Finding] = []
    files = _files(root)
    documents = valid = 0
    for name, path in files:
        try:
            if path.stat().st_size > MAX_FILE:
                errors.append(Finding(name, 0, "", "", "", f"larger than {MAX_FILE} bytes"))
                continue
            data = path.read_bytes()
        except OSError as exc:
            errors.append(Finding(name, 0, "", "", "", f"cannot read: {exc.strerror}"))
            continue
        docs, stopped = _parse(data)
        for index, body in docs:
            if body is None:
                continue  # an empty document (a trailing ---)
            documents += 1
            found, skip = check_document(name, index, body, crds)
            errors.extend(found)
            skipped.extend([skip] if skip else [])
            valid += not found and not skip
        if stopped is not None:
            errors.append(Finding(name, stopped[0], "", "", "", stopped[1]))
    return TreeReport(str(root), crds, len(files), documents, valid, tuple(errors), tuple(skipped))


def check_rendered(
    files: Mapping[str, bytes], flavor: str, only: Collection[str] | None = None
) -> tuple[Finding, ...]:
    """Errors in a run's output files (relative path -> bytes); empty: valid. `only` limits the
    check to the files that will be written (a file already on disk with the same bytes was
    checked when it was written); a kustomization is checked against all of `files`."""
    crds: CrdSet = "calico" if flavor == "calico" else "calico-enterprise"
    allowed = FLAVOR_KINDS[flavor]
    errors: list[Finding] = []
    checked = files if only is None else {rel: files[rel] for rel in only}
    for rel, data in sorted(checked.items()):
        docs, stopped = _parse(data)
        bodies = [(i, b) for i, b in docs if b is not None]
        if stopped is not None or len(bodies) != 1:
            why = stopped[1] if stopped else f"{len(bodies)} documents, not one"
            errors.append(Finding(rel, 0, "", "", "", why))
            continue
        index, body = bodies[0]
        if rel.rsplit("/", 1)[-1] == KUSTOMIZATION:
            errors.extend(_kustomization(rel, body, files))
            continue
        found, _ = check_document(rel, index, body, crds, require_namespace=True)
        errors.extend(found)
        if not found and (body["apiVersion"], body["kind"]) not in allowed:
            kind, name = _label(body)
            errors.append(Finding(rel, index, kind, name, "", f"not a kind {flavor} writes"))
    return tuple(errors)


def _kustomization(rel: str, body: object, files: Mapping[str, bytes]) -> Iterator[Finding]:
    folder = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
    siblings = sorted(r.removeprefix(folder) for r in files if r.startswith(folder) and r != rel)
    expected = {
        "apiVersion": f"{KUSTOMIZE_API}v1beta1",
        "kind": "Kustomization",
        "resources": siblings,
    }
    if body != expected:
        yield Finding(rel, 1, "Kustomization", "", "", f"expected {expected}")


def failure(errors: tuple[Finding, ...], shown: int = 5) -> str:
    """The one-line message of a run stopped by invalid output."""
    listed = "; ".join(e.line() for e in errors[:shown])
    more = f"; and {len(errors) - shown} more" if len(errors) > shown else ""
    return (
        "a manifest this run would write is invalid, so nothing was written (a flowfence bug, "
        f"or an accepted policy edited by hand): {listed}{more}"
    )


def to_text(report: TreeReport) -> str:
    lines = [e.line() for e in report.errors]
    lines += [replace(s, message=f"skipped: {s.message}").line() for s in report.skipped]
    lines.append(
        f"{report.documents} documents in {report.files} files ({report.flavor} CRDs): "
        f"{report.valid} valid, {len(report.skipped)} skipped, {len(report.errors)} errors"
    )
    return "\n".join(lines) + "\n"


def to_json(report: TreeReport) -> str:
    doc = {
        "root": report.root,
        "flavor": report.flavor,
        "valid": not report.errors,
        "files": report.files,
        "documents": report.documents,
        "valid_documents": report.valid,
        "skipped_documents": len(report.skipped),
        "invalid": report.invalid,
        "errors": [asdict(e) for e in report.errors],
        "skipped": [asdict(s) for s in report.skipped],
    }
    return json.dumps(doc, indent=2) + "\n"

"""What each page of `flowfence serve` shows, read from the output directory on every request:
the run's `report.json` (the view model of report.html, report/html_model.py), the live
`decisions.yaml` (so a decision shows at once, marked as waiting for the next run), the
namespace's policy file and what it would deny (denials.py).

Sorting and filtering of the overview happen here, from query parameters; the Python loops
run over namespaces and their rules only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flowfence.core import times
from flowfence.core.errors import ConfigError
from flowfence.report import html_model, run_report, traffic_map
from flowfence.review import decisions as dec
from flowfence.serve import denials


@dataclass(frozen=True)
class Site:
    """What `flowfence serve` was started with."""

    out: Path
    state_dir: Path
    existing: Path | None = None  # --existing-policies: earlier tiers, network sets
    read_only: bool = False
    git_commit: bool = False
    now: datetime | None = None  # --now: decisions are dated with it (tests); else the clock


@dataclass(frozen=True)
class Loaded:
    report: run_report.RunReport
    page: html_model.Page
    map_svg: str | None  # the traffic map, cells linking to the namespace pages


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime, stat.st_size)


def namespace_link(namespace: str) -> str:
    return f"/namespaces/{namespace}"


@functools.lru_cache(maxsize=4)
def _load(path: Path, stamp: tuple[float, int]) -> Loaded:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        report = html_model.load(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a report flowfence wrote: {exc}") from exc
    return Loaded(report, html_model.build(report), traffic_map.svg(report, namespace_link))


def load(site: Site) -> Loaded | None:
    """The last run's report; None before the first run."""
    path = site.out / "report.json"
    stamp = _stamp(path)
    return _load(path, stamp) if stamp is not None else None


@dataclass(frozen=True)
class Row:
    ns: html_model.NamespaceView
    decided: dec.Decision | None  # in decisions.yaml now
    pending: bool  # decisions.yaml says otherwise than what the last run applied
    lapsed: bool = False  # its expiry passed by the last run: the namespace learns again

    @property
    def decision(self) -> str:
        return self.decided.decision if self.decided is not None else ""


def row(loaded: Loaded, ns: html_model.NamespaceView, decided: dec.Decision | None) -> Row:
    if decided is not None and not decided.active(times.parse(loaded.report.now)):
        # The run left it out (listed under lapsed decisions): not waiting for the next run.
        return Row(ns, decided, pending=False, lapsed=True)
    live = dec.to_dict(decided) if decided is not None else None
    return Row(ns, decided, live != (dict(ns.decision) if ns.decision else None))


def rows(loaded: Loaded, decisions: dec.Decisions) -> tuple[Row, ...]:
    return tuple(row(loaded, ns, decisions.get(ns.namespace)) for ns in loaded.page.namespaces)


SORTS: Mapping[str, Callable[[Row], Any]] = {
    "namespace": lambda r: r.ns.namespace,
    "status": lambda r: r.ns.status,
    "stagedAction": lambda r: r.ns.staged_action,
    "decision": lambda r: r.decision,
    "egress": lambda r: r.ns.egress,
    "ingress": lambda r: r.ns.ingress,
    "change": lambda r: r.ns.change,
    "last_change": lambda r: r.ns.last_change,
    "risks": lambda r: len(r.ns.risks),
}


@dataclass(frozen=True)
class Overview:
    loaded: Loaded
    rows: tuple[Row, ...]
    sort: str
    desc: bool
    q: str
    status: str
    statuses: tuple[str, ...]
    shown: int


def overview(site: Site, loaded: Loaded, params: Mapping[str, str]) -> Overview:
    every = rows(loaded, dec.load(site.out))
    sort = params.get("sort", "namespace")
    sort = sort if sort in SORTS else "namespace"
    desc = params.get("desc", "") == "1"
    q = params.get("q", "").strip().lower()[:100]
    status = params.get("status", "")
    found = [
        r
        for r in every
        if (not status or r.ns.status == status)
        and (not q or q in " ".join((r.ns.namespace, r.decision, *r.ns.risks)).lower())
    ]
    found.sort(key=lambda r: (SORTS[sort](r), r.ns.namespace), reverse=desc)
    return Overview(
        loaded, tuple(found), sort, desc, q, status,
        tuple(sorted({r.ns.status for r in every})), len(found),
    )  # fmt: skip


@dataclass(frozen=True)
class Detail:
    loaded: Loaded
    row: Row
    yaml: str | None
    denials: denials.Denials


def own_manifest(out: Path, namespace: str, named: str | None) -> str | None:
    """`policies/NS.yaml` when the report names that file for `namespace` and it is a regular
    file in DIR (not a symlink); None otherwise."""
    try:
        namespace = dec.check_namespace(namespace, "report.json")
    except ConfigError:
        return None
    expected = f"policies/{namespace}.yaml"
    path = out / expected
    if named != expected or path.is_symlink() or not path.is_file():
        return None
    return expected


def detail(site: Site, loaded: Loaded, namespace: str) -> Detail | None:
    ns = loaded.page.get(namespace)
    if ns is None:
        return None
    decided = dec.load(site.out).get(namespace)
    yaml = None
    # report.json may come from a repository anyone can edit: the page reads only the file a
    # run writes for this namespace (its name validated), never a path the report names.
    manifest = own_manifest(site.out, namespace, ns.manifest)
    if manifest is not None:
        yaml = (site.out / manifest).read_text(encoding="utf-8", errors="replace")
    found = denials.denials(
        site.out, site.state_dir, namespace, manifest,
        tier_name=loaded.report.tier, existing=site.existing,
    )  # fmt: skip
    return Detail(loaded, row(loaded, ns, decided), yaml, found)

"""A rerun with nothing new reads nothing and rewrites nothing.

A run whose computation changed nothing (the state not committed) proves that its inputs are a
fixed point: the same state, flow logs, settings, input files and output directory give the
same outputs again, up to what the clock alone moves. It leaves a marker beside the state
(`quiet.json`): a digest of those inputs, and until when the clock moves nothing (the first
moment a status is due to move, `state/lifecycle.py`, or a decision to expire). A later run
that finds the same digest before that moment stops there: it reads no flow log, writes no
file and leaves the state, the policies and the reports of that run as they are.

The digest covers: flowfence's version; the settings; the run's options and the files they
name (`--namespaces`, `--inventory`, `--existing-policies`, every file under it); the state
(its manifest and the size and mtime of every table file it names); the flow logs as the run
plans to read them (the state's origin and watermark, the open units' files, the late files);
and the output directory (every file under `policies/`, the reports, the record and the
decisions file, byte for byte). A run that would seal or backfill anything, or read an open
unit again, never stops here. Only a local state keeps a marker (not `s3://`, not Spark).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flowfence import __version__
from flowfence.config.settings import Settings
from flowfence.core import atomic, times
from flowfence.report import run_report
from flowfence.review import decisions
from flowfence.review import written as record_file
from flowfence.state import incremental, tables

MARKER = "quiet.json"
FORMAT = 1


@dataclass(frozen=True)
class Quiet:
    """A run that stopped early: the outputs of the run at `since` stand."""

    since: datetime  # --now of the run whose outputs stand (naive UTC)
    generation: int  # the state generation, unchanged
    report: bytes  # DIR/report.json as that run wrote it


@dataclass(frozen=True)
class Inputs:
    """What a run's outputs depend on besides the clock (see the module doc)."""

    settings: Settings
    options: tuple[object, ...]  # prune_stale and other switches that change the outputs
    files: Mapping[str, Path | None]  # --namespaces, --inventory, --existing-policies
    out: Path


def _files(root: Path) -> list[tuple[str, Path]]:
    """Every file under `root` (none when it is not a directory), by relative path, sorted."""
    if not root.is_dir():
        return []
    return sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())


class _Digest:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def part(self, label: str, data: bytes) -> None:
        # Length-prefixed: no two sequences of parts hash alike.
        for piece in (label.encode(), data):
            self._hash.update(len(piece).to_bytes(8, "big"))
            self._hash.update(piece)

    def file(self, label: str, path: Path) -> None:
        try:
            self.part(label, path.read_bytes())
        except FileNotFoundError:
            self.part(label + ":absent", b"")

    def tree(self, label: str, path: Path | None) -> None:
        if path is None:
            self.part(label + ":none", b"")
        elif path.is_dir():
            for rel, item in _files(path):
                self.file(f"{label}/{rel}", item)
        else:
            self.file(label, path)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def taken(inputs: Inputs, state_dir: Path) -> str:
    """The digest of what a run reads besides the flow logs and its own outputs: flowfence's
    version, the settings, the options and the files they name, `decisions.yaml` and the
    state. Taken before the run computes and again after: a marker is left only when nothing
    changed under the run (a decision saved by `serve` meanwhile, a refreshed inventory)."""
    d = _Digest()
    d.part("flowfence", f"{__version__}/{FORMAT}".encode())
    d.part("settings", repr(inputs.settings).encode())
    d.part("options", repr(inputs.options).encode())
    for name, path in sorted(inputs.files.items()):
        d.tree(name, path)
    d.file(decisions.FILE_NAME, inputs.out / decisions.FILE_NAME)
    d.file("state", state_dir / tables.MANIFEST)
    manifest = tables.read_manifest(state_dir) or {}
    for name in sorted(manifest.get("tables", {}).values()):
        stat = (state_dir / name).stat()
        d.part(f"table/{name}", f"{stat.st_size}/{stat.st_mtime_ns}".encode())
    return d.hexdigest()


def on_disk(out: Path) -> dict[str, bytes | None]:
    """What flowfence writes in `out` as it is there now (None: absent)."""
    found: dict[str, bytes | None] = {}
    for rel, item in _files(out / "policies"):
        found[f"policies/{rel}"] = item.read_bytes()
    for name in (*run_report.FILES, record_file.FILE_NAME):
        path = out / name
        found[name] = path.read_bytes() if path.is_file() else None
    return found


def fingerprint(
    inputs_digest: str, plan: incremental.Plan, outputs: Mapping[str, bytes | None]
) -> str:
    """The digest of everything but the clock that a run's outputs depend on: `taken`, the
    flow logs as planned (origin, watermark, the open units' files, the late files) and the
    outputs (`on_disk`'s mapping, or the bytes a run just wrote)."""
    d = _Digest()
    d.part("inputs", inputs_digest.encode())
    view = (
        plan.origin, plan.watermark, sorted(plan.late),
        sorted((f.rel, f.size, f.mtime_ns) for f in plan.open),
    )  # fmt: skip
    d.part("flows", repr(view).encode())
    for name, data in sorted(outputs.items()):
        d.part(name if data is not None else name + ":absent", data or b"")
    return d.hexdigest()


def quiet_until(
    settings: Settings,
    statuses: Mapping[str, tuple[str, datetime]],
    decided: decisions.Decisions,
    now: datetime,
) -> datetime | None:
    """The first moment after `now` the clock alone may change a run's outputs: a Learning
    namespace turns Stabilizing (or Stable), a Stabilizing one Stable, a decision expires.
    None: never by the clock. A Stabilizing namespace past its stabilization period is held
    there by its rhythm (a day or week of data not yet seen since its last change), which only
    new data moves: it sets no moment."""
    interval = settings.interval
    stabilization = max(settings.stabilization_period, interval)  # as lifecycle.status
    # Learning turns Stabilizing after two intervals, or Stable at once if that comes first.
    due = {"Learning": min(2 * interval, stabilization), "Stabilizing": stabilization}
    moments = [updated + due[status] for status, updated in statuses.values() if status in due]
    expiries = [d.expires for d in decided.entries.values() if d.expires is not None]
    moments += [e if e.tzinfo is None else times.naive_utc(e) for e in expiries]
    return min((m for m in moments if m > now), default=None)


def record(
    state_dir: Path,
    *,
    generation: int,
    now: datetime,
    until: datetime | None,
    digest: str,
) -> None:
    """Leave the marker of a run that changed nothing."""
    data = {
        "format": FORMAT,
        "generation": generation,
        "since": times.rfc3339(now, fraction=True),
        "until": None if until is None else times.rfc3339(until, fraction=True),
        "fingerprint": digest,
    }
    atomic.write_text(state_dir / MARKER, json.dumps(data, indent=2, sort_keys=True) + "\n")


def forget(state_dir: Path) -> None:
    """Remove the marker: a run that goes on computes (and may change) everything."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir / MARKER).unlink()


def check(
    state_dir: Path,
    inputs_digest: str,
    out: Path,
    prior: tables.State,
    plan: incremental.Plan,
    now: datetime,
    reused: Iterable[str],
) -> Quiet | None:
    """The early stop of this run, or None when it must compute. `inputs_digest` is `taken`
    now; `now` naive UTC; `reused` the open units the state keeps that this run may take
    (state/open_units.py)."""
    if plan.seal or plan.backfill or not {f.unit for f in plan.open} <= set(reused):
        return None
    try:
        data = json.loads((state_dir / MARKER).read_bytes())
        since = times.naive_utc(times.parse(data["since"]))
        until = None if data["until"] is None else times.naive_utc(times.parse(data["until"]))
        if data["format"] != FORMAT or data["generation"] != prior.generation:
            return None
        digest = str(data["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError, times.TimeError):
        return None  # no marker, or one this version cannot read: compute
    if now < since or (until is not None and now >= until):
        return None
    outputs = on_disk(out)
    if fingerprint(inputs_digest, plan, outputs) != digest or outputs["report.json"] is None:
        return None
    return Quiet(since=since, generation=prior.generation, report=outputs["report.json"])

"""Open units kept between runs, so that a rerun with nothing new reads nothing and the hourly
run reads its new hour only, not again the hour it now seals.

A run reads each unit still open (state/incremental.py) on its own and keeps what it read in
the state: the unit's files (`open_files`), and its edges and activity (`open_edges`,
`open_activity`). The next run takes a unit from there instead of reading it again when the
read would be the same:
- the unit's files are the same, each with the same size and mtime (a file added, removed or
  rewritten means a read);
- the state's origin is the same (a larger `initialLookback` widens every read);
- the unit is a hive partition that ended at or before the `--now` of the run that read it,
  so no row of it starts in between (a later `--now` admits no row that read left out).
Its edges then stand for the unit's read, whether the unit seals now or stays open.

Files outside a hive tree are never kept (no span proves the third condition). More than
MAX_UNITS open units to read (a `--now` far past the data) are read together instead, and not
kept: one read per unit would cost more than it saves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from flowfence.flows.sources import FileInfo
from flowfence.state import incremental
from flowfence.state.tables import State

MAX_UNITS = 24
Read = Callable[[Sequence[FileInfo]], incremental.Batch]


@dataclass(frozen=True)
class Kept:
    """The open units of the state after this run: the tables `open_files`, `open_edges` and
    `open_activity` (tables.py)."""

    files: pl.DataFrame
    edges: pl.DataFrame
    activity: pl.DataFrame


def _fingerprint(files: Iterable[FileInfo]) -> frozenset[tuple[str, int, int]]:
    return frozenset((f.rel, f.size, f.mtime_ns) for f in files)


def _by_unit(files: Iterable[FileInfo]) -> dict[str, list[FileInfo]]:
    units: dict[str, list[FileInfo]] = {}
    for info in files:
        units.setdefault(info.unit, []).append(info)
    return units


def reusable(prior: State, origin: datetime, listed: Iterable[FileInfo]) -> frozenset[str]:
    """The units among `listed` (this run's files to seal or to read open) whose read the
    state keeps and may stand for a new one (see the module doc)."""
    if prior.now is None or prior.origin != origin or not prior.open_files.height:
        return frozenset()
    kept: dict[str, set[tuple[str, int, int]]] = {}
    unsafe: set[str] = set()
    for row in prior.open_files.iter_rows(named=True):
        kept.setdefault(row["unit"], set()).add((row["rel"], row["size"], row["mtime_ns"]))
        if row["end"] is None or row["end"] > prior.now:
            unsafe.add(row["unit"])
    now = {unit: _fingerprint(files) for unit, files in _by_unit(listed).items()}
    return frozenset(
        u for u, files in kept.items() if u not in unsafe and u in now and now[u] == files
    )


def batch_of(prior: State, units: Iterable[str], files: Sequence[FileInfo]) -> incremental.Batch:
    """The kept read of `units` as one batch: their edges merged across units, as one read of
    all their files would give. `files` are this run's listing of them (the paths to name)."""
    wanted = sorted(set(units))
    if not wanted:
        return incremental.empty_batch()
    edges = prior.open_edges.filter(pl.col("unit").is_in(wanted))
    activity = prior.open_activity.filter(pl.col("unit").is_in(wanted))
    empty = {
        row["rel"]
        for row in prior.open_files.filter(pl.col("unit").is_in(wanted)).iter_rows(named=True)
        if row["empty"]
    }
    parts = edges.partition_by("unit", include_key=False, maintain_order=True)
    return incremental.Batch.of(
        incremental.merge_edges(*parts),
        incremental.merge_activity(activity.drop("unit")),
        frozenset(f.path for f in files if f.unit in wanted and f.rel not in empty),
    )


def read_open(
    prior: State, files: Sequence[FileInfo], reuse: frozenset[str], read: Read, generation: int
) -> tuple[incremental.Batch, incremental.Batch, Kept]:
    """The open units: (what was read, what was taken from the state, what to keep). Each
    hive unit not reusable is read on its own and kept; files outside a hive tree (never
    reusable) are read together, and so are all the units past MAX_UNITS."""
    units = _by_unit(files)
    taken = batch_of(prior, (u for u in units if u in reuse), files)
    to_read = {u: fs for u, fs in sorted(units.items()) if u not in reuse}
    apart = {u: fs for u, fs in to_read.items() if fs[0].end is not None}
    if len(apart) > MAX_UNITS:
        apart = {}
    together = [f for u, fs in to_read.items() if u not in apart for f in fs]
    reads = {unit: read(fs) for unit, fs in apart.items()}
    batches = [*reads.values(), *([read(together)] if together else [])]
    read_now = incremental.Batch.of(
        incremental.merge_edges(*(b.edges for b in batches)),
        incremental.merge_activity(*(b.activity for b in batches)),
        frozenset().union(*(b.nonempty for b in batches)),
    )
    return read_now, taken, keep(prior, reuse & units.keys(), reads, files, generation)


def keep(
    prior: State,
    reused: Iterable[str],
    reads: Mapping[str, incremental.Batch],
    files: Sequence[FileInfo],
    generation: int,
) -> Kept:
    """The open units for the state after this run: those `reused` as the prior state kept
    them, and those just `read` (per unit), with their files and whether each held rows. A
    unit read again with the same result (it had not ended by the earlier --now, and nothing
    came since) keeps its rows as they were, so that the state does not change for it."""
    same = {u for u, b in reads.items() if _read_alike(prior, u, b, files)}
    reads = {u: b for u, b in reads.items() if u not in same}
    reused = sorted({*reused, *same})
    old = Kept(
        prior.open_files.filter(pl.col("unit").is_in(reused)),
        prior.open_edges.filter(pl.col("unit").is_in(reused)),
        prior.open_activity.filter(pl.col("unit").is_in(reused)),
    )
    nonempty = frozenset().union(*(b.nonempty for b in reads.values()))
    read_files = [f for f in files if f.unit in reads]
    # The same rows as the sealed-files table's: path, span, size, mtime, whether empty.
    added_files = incremental.sealed_files(old.files, read_files, nonempty, generation)
    return Kept(
        added_files.sort("unit", "rel"),
        _by_unit_order(old.edges, {u: b.edges for u, b in reads.items()}),
        _by_unit_order(old.activity, {u: b.activity for u, b in reads.items()}),
    )


def _by_unit_order(old: pl.DataFrame, new: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """`old` (sorted by unit) and the `new` frames of their units, one table in unit order,
    each unit's rows as they are. Chained, not sorted: a sort would copy every open edge."""
    parts = (
        {u: f for (u,), f in old.partition_by("unit", as_dict=True).items()} if old.height else {}
    )
    parts.update({u: _with_unit(u, f) for u, f in new.items()})
    if not parts:
        return old
    return pl.concat([parts[u] for u in sorted(parts)], rechunk=False)


def _read_alike(
    prior: State, unit: str, batch: incremental.Batch, files: Sequence[FileInfo]
) -> bool:
    """Whether `batch`, a new read of `unit`, is what the prior state keeps of it."""
    kept = prior.open_files.filter(pl.col("unit") == unit)
    if not kept.height:
        return False
    then = {(r["rel"], r["size"], r["mtime_ns"]) for r in kept.iter_rows(named=True)}
    if then != _fingerprint(f for f in files if f.unit == unit):
        return False
    edges = prior.open_edges.filter(pl.col("unit") == unit).drop("unit")
    activity = prior.open_activity.filter(pl.col("unit") == unit).drop("unit")
    return edges.equals(batch.edges) and activity.equals(batch.activity)


def _with_unit(unit: str, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.lit(unit, pl.String()).alias("unit"), pl.all())

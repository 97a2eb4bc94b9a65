"""Deterministic generator of raw Calico flow logs for tests, demos and benchmarks.

`generate()` writes hive-partitioned Parquet (`date=YYYY-MM-DD/hour=HH/flows-NNN-0.parquet`)
in the raw shape Felix writes: Unix-second times, `-` placeholders, labels and policies wrapped
in structs. The same topology, seed and parameters give byte-identical files: every random
number comes from a seed derived from (seed, hour, chunk), DuckDB writes with one thread, and
file names are fixed. Rows are produced one hour (or one chunk of at most `CHUNK_FLOWS`
logical flows) at a time and appended as their own files, so memory stays bounded however many
rows are asked for.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

import duckdb
import polars as pl

from flowfence import sql
from flowfence.errors import BadInput
from flowfence.fixtures_rows import Templates, chunk_table, sample_flows
from flowfence.fixtures_shop import demo, synthetic
from flowfence.fixtures_topology import Flow

Topology = Literal["demo", "synthetic"]
TOPOLOGIES: tuple[str, ...] = get_args(Topology)
DEFAULT_ROWS_PER_HOUR = {"demo": 1200, "synthetic": 20_000}
CHUNK_FLOWS = 100_000  # logical flows per chunk (about 180,000 rows): bounds memory
# DuckDB keeps written pages cached up to its memory limit (80% of RAM by default); a COPY
# streams, so a small limit bounds the generator's memory without slowing it down.
DUCKDB_MEMORY_LIMIT = "256MB"
MAX_HOURS = 24 * 366
MAX_ROWS = 10**10
MAX_NAMESPACES = 100_000
_DATE_DIR = re.compile(r"date=\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class GenerateResult:
    out: Path
    files: tuple[Path, ...]  # relative to `out`, sorted
    rows: int


def topology_flows(topology: str, *, seed: int, namespaces: int = 50) -> tuple[Flow, ...]:
    """The logical flows of a topology (no rows): useful to tests of other modules."""
    if topology == "demo":
        return demo(seed)
    if topology == "synthetic":
        return synthetic(namespaces, seed)
    raise BadInput(f"unknown topology {topology!r}; expected one of {', '.join(TOPOLOGIES)}")


def _check(topology: str, seed: int, rows: int | None, namespaces: int, hours: int) -> None:
    if topology not in TOPOLOGIES:
        raise BadInput(f"unknown topology {topology!r}; expected one of {', '.join(TOPOLOGIES)}")
    if not 0 <= seed < 2**63:
        raise BadInput(f"seed must be between 0 and 2^63-1, got {seed}")
    if rows is not None and not 1 <= rows <= MAX_ROWS:
        raise BadInput(f"rows must be between 1 and {MAX_ROWS}, got {rows}")
    if not 1 <= namespaces <= MAX_NAMESPACES:
        raise BadInput(f"namespaces must be between 1 and {MAX_NAMESPACES}, got {namespaces}")
    if not 1 <= hours <= MAX_HOURS:
        raise BadInput(f"hours must be between 1 and {MAX_HOURS}, got {hours}")


def _utc_hour(start: datetime) -> datetime:
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    if start.minute or start.second or start.microsecond:
        raise BadInput(
            f"start must be on a whole hour (partitions are hourly), got {start:%Y-%m-%dT%H:%M:%SZ}"
        )
    return start


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BadInput(f"output {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    entries = sorted(out.iterdir())
    if entries and not overwrite:
        raise BadInput(
            f"output directory {out} is not empty; pass --overwrite (overwrite=True) to replace it"
        )
    for entry in entries:
        # Only what a previous run wrote is removed; anything else makes us stop.
        if entry.is_dir() and _DATE_DIR.fullmatch(entry.name):
            shutil.rmtree(entry)
        else:
            raise BadInput(f"output directory {out} holds {entry.name!r}, not generated data")


def hour_budgets(total: int, start: datetime, hours: int) -> list[int]:
    """Split `total` rows over the hours with a diurnal curve (peak 15:00 UTC), exactly."""
    shares = [
        1.0 + 0.5 * math.cos(2 * math.pi * (((start + timedelta(hours=h)).hour - 15) / 24))
        for h in range(hours)
    ]
    scale = total / sum(shares)
    exact = [s * scale for s in shares]
    budget = [math.floor(x) for x in exact]
    by_remainder = sorted(range(hours), key=lambda h: (-(exact[h] - budget[h]), h))
    for h in by_remainder[: total - sum(budget)]:
        budget[h] += 1
    return budget


def generate(
    topology: str,
    out: Path,
    *,
    seed: int,
    rows: int | None = None,
    namespaces: int = 50,
    start: datetime,
    hours: int = 24,
    overwrite: bool = False,
) -> GenerateResult:
    """Write raw flow logs for `hours` hours from `start` into `out`; see the module doc.

    `rows` is a target: the written count is within a fraction of a percent of it (flows with
    two reporters always keep both rows). `namespaces` only matters for `synthetic`.
    """
    _check(topology, seed, rows, namespaces, hours)
    start = _utc_hour(start)
    templates = Templates.build(topology_flows(topology, seed=seed, namespaces=namespaces))
    _, _, mean_rows = templates.continuous()
    total = rows if rows is not None else DEFAULT_ROWS_PER_HOUR[topology] * hours
    _prepare(out, overwrite)
    con = duckdb.connect()
    written = 0
    try:
        con.execute("SET threads = 1")
        # The progress bar goes to stdout, which carries only data.
        con.execute("SET enable_progress_bar = false")
        con.execute("SET memory_limit = $limit", {"limit": DUCKDB_MEMORY_LIMIT})
        con.execute("SET preserve_insertion_order = true")
        for h, budget in enumerate(hour_budgets(total, start, hours)):
            at = start + timedelta(hours=h)
            hour_start = int(at.timestamp())
            nightly = templates.nightly(at.hour)
            flows_left = max(0, round((budget - _rows_of(templates, nightly)) / mean_rows))
            part = 0
            while part == 0 or flows_left > 0:
                k = min(flows_left, CHUNK_FLOWS)
                key = (topology, seed, namespaces, hour_start, part)
                picked = sample_flows(templates, k, *key)
                if part == 0:
                    picked = pl.concat([nightly, picked])
                flows_left -= k
                if picked.height:
                    table = chunk_table(templates, picked, hour_start, *key)
                    con.register("fixture_chunk", table)
                    sql.execute(
                        con,
                        "fixtures_write_chunk",
                        out=str(out),
                        pattern=f"flows-{part:03d}-{{i}}",
                        date=f"{at:%Y-%m-%d}",
                        hour=f"{at:%H}",
                    )
                    con.unregister("fixture_chunk")
                    written += table.num_rows
                    del table
                part += 1
    finally:
        con.close()
    files = tuple(sorted(p.relative_to(out) for p in out.glob("date=*/hour=*/*.parquet")))
    return GenerateResult(out=out, files=files, rows=written)


def _rows_of(templates: Templates, picked: pl.DataFrame) -> int:
    if picked.height == 0:
        return 0
    return int(templates.flows["nrep"].gather(picked["flow"]).sum())

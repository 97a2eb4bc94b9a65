"""The one way flowfence opens DuckDB: in memory, within the run's resource limits, quiet.

Every command that queries flow logs (run, replay, ingest, receive, the fixture generator)
connects here, so `--memory-limit`, `--threads` and `--temp-dir` mean the same everywhere and
DuckDB never draws its progress bar: stdout carries only data (`--output json`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb


class Limits(Protocol):
    """What bounds a connection: `Settings` has these fields, `Resources` only these."""

    @property
    def memory_limit(self) -> str | None: ...

    @property
    def threads(self) -> int | None: ...

    @property
    def temp_dir(self) -> Path | None: ...


@dataclass(frozen=True)
class Resources:
    """Limits given directly; None leaves DuckDB's default (80% of RAM, one thread per core,
    no spill directory for an in-memory database)."""

    memory_limit: str | None = None
    threads: int | None = None
    temp_dir: Path | None = None


def connect(limits: Limits | None = None, **options: Any) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with `limits` and further DuckDB `options` (connect-time settings
    such as `preserve_insertion_order`) applied, its progress bar off."""
    config = dict(options)
    if limits is not None:
        if limits.memory_limit:
            config["memory_limit"] = limits.memory_limit
        if limits.threads:
            config["threads"] = limits.threads
        if limits.temp_dir:
            config["temp_directory"] = str(limits.temp_dir)
    con = duckdb.connect(config=config)
    # Session settings: DuckDB 2 refuses them in the connect-time config. The bar would go to
    # stdout; `_print` also covers a later `progress_bar_time`, which turns the bar back on.
    con.execute("SET enable_progress_bar = false")
    con.execute("SET enable_progress_bar_print = false")
    return con

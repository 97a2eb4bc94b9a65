"""What a run reads: the flow logs listed, the reads planned against the state
(state/incremental.py), each read on a DuckDB connection of its own or on Spark, and the
units the state kept open taken from it when unchanged (state/open_units.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import duckdb

from flowfence.config.settings import Settings
from flowfence.core.database import connect
from flowfence.core.errors import FlowInputError, RuntimeFailure
from flowfence.flows import sources, spark_engine
from flowfence.flows.sources import FileInfo
from flowfence.state import incremental, open_units, tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class Reads:
    """What this run read, plus what it took from the open units the state keeps instead of
    reading them again (state/open_units.py): `kept_seal` seals now, `kept_open` stays open."""

    seal: incremental.Batch
    open: incremental.Batch
    backfill: incremental.Batch
    kept_seal: incremental.Batch
    kept_open: incremental.Batch
    kept: open_units.Kept  # the open units after this run

    @property
    def batches(self) -> tuple[incremental.Batch, ...]:
        """The batches read (not those taken from the state)."""
        return (self.seal, self.open, self.backfill)

    def counted(self) -> Reads:
        """The reads without their frames (incremental.Batch.counted); `kept` stays."""
        return replace(
            self,
            seal=self.seal.counted(),
            open=self.open.counted(),
            backfill=self.backfill.counted(),
            kept_seal=self.kept_seal.counted(),
            kept_open=self.kept_open.counted(),
        )


def read(
    flows: str | Path,
    settings: Settings,
    prior: tables.State,
    now: datetime,
    *,
    engine: Literal["duckdb", "spark"] = "duckdb",
    spark_master: str | None = None,
) -> tuple[incremental.Plan, Reads]:
    """List the flow logs, plan the reads against `prior`, read. With `--engine spark` the
    session opens first: a Hadoop URL (`s3a://`, `hdfs://`, `file://`) is listed through it."""
    if engine == "spark":
        with spark_engine.session(spark_master) as spark:
            plan = plan_reads(settings, prior, now, spark_engine.list_files(flows, spark))
            return plan, _read_with(None, prior, plan, now, spark)
    plan = plan_reads(settings, prior, now, sources.list_files(flows)[0])
    try:
        return plan, _read_with(settings, prior, plan, now, None)
    except duckdb.OutOfMemoryException as exc:  # a resource limit, not bad input
        raise RuntimeFailure(
            f"out of memory reading {flows}: raise --memory-limit or set --temp-dir "
            f"to a disk with room to spill ({exc})"
        ) from exc
    except duckdb.Error as exc:  # a corrupt data page only shows when it is read
        raise FlowInputError(f"{flows}: cannot read flow logs: {exc}") from exc


def plan_reads(
    settings: Settings, prior: tables.State, now: datetime, listing: Sequence[FileInfo]
) -> incremental.Plan:
    """Which files this run reads (state/incremental.py)."""
    return incremental.plan(
        listing,
        prior,
        now,
        initial_lookback=settings.initial_lookback,
        grace=settings.late_arrival_grace,
    )


def _read_with(
    limits: Settings | None,
    prior: tables.State,
    plan: incremental.Plan,
    now: datetime,
    spark: SparkSession | None,
) -> Reads:
    """The reads, on Spark or (`limits` given) each on a DuckDB connection of its own: closed
    before its edges are sorted, so that no read's DuckDB memory outlives its queries. Units
    the state kept open and that are unchanged are not read again (state/open_units.py)."""

    # Only the scan moves to Spark; merging, rules, rendering and state stay in-process.
    def read(files: Sequence[FileInfo], end_before: datetime | None = None) -> incremental.Batch:
        con = connect(limits) if limits is not None else None
        try:
            return incremental.read(
                con, files, since=plan.origin, until=now, end_before=end_before, spark=spark,
                close=True,
            )  # fmt: skip
        finally:
            if con is not None:
                con.close()  # also when there was nothing to read

    reuse = open_units.reusable(prior, plan.origin, (*plan.seal, *plan.open))
    seal = read([f for f in plan.seal if f.unit not in reuse])
    kept_seal = open_units.batch_of(prior, reuse & {f.unit for f in plan.seal}, plan.seal)
    read_open, kept_open, kept = open_units.read_open(
        prior, plan.open, reuse, read, prior.generation + 1
    )
    backfill = read(plan.backfill, plan.backfill_before)
    return Reads(seal, read_open, backfill, kept_seal, kept_open, kept)

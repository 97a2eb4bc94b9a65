"""The benchmark results as data: samples from child processes, figures, sizes, the machine.

Filled by `bench.run`, rendered by `bench.results`.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One child process: measured wall seconds, its peak RSS and what it reported."""

    seconds: float
    peak_rss: int  # bytes
    import_seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system, all threads
    stages: Mapping[str, float] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Figure:
    kind: str
    samples: tuple[Sample, ...]

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def cpu_seconds(self) -> float:
        return statistics.median(s.cpu_seconds for s in self.samples)

    @property
    def peak_rss(self) -> int:
        return max(s.peak_rss for s in self.samples)

    @property
    def import_seconds(self) -> float:
        return statistics.median(s.import_seconds for s in self.samples)

    def stage(self, name: str) -> float:
        return statistics.median(s.stages.get(name, 0.0) for s in self.samples)

    def median_run(self) -> Figure:
        """The figure of the one sample with the median total (the lower one of an even count).

        Medians taken stage by stage need not add up to the median total; a stage split is read
        off one run so that its parts and `other` sum to its total.
        """
        ordered = sorted(self.samples, key=lambda s: s.seconds)
        return Figure(self.kind, (ordered[(len(ordered) - 1) // 2],))

    def count(self, name: str) -> int | None:
        values = {s.counts[name] for s in self.samples if name in s.counts}
        return values.pop() if len(values) == 1 else None

    def spill(self) -> int:
        """The most any sample wrote to DuckDB's temp_directory (bytes)."""
        return max((s.counts.get("spill_bytes", 0) for s in self.samples), default=0)


@dataclass(frozen=True)
class SizeResult:
    rows: int  # rows asked of the generator
    label: str
    data_rows: int  # rows written
    data_files: int
    data_bytes: int
    figures: Mapping[str, Figure]
    generated_at: str | None = None  # when reused data was generated (None: in this run)


@dataclass(frozen=True)
class IncrementalResult:
    """One new hour on a state built over `days` days: the incremental runs, the full
    recomputation they replace and the bare aggregation of the same files."""

    days: int
    rows_per_hour: int
    data_rows: int  # the days before the new hour
    data_files: int
    new_rows: int
    state_bytes: int
    state_edges: int
    same_manifests: bool
    figures: Mapping[str, Figure]
    generated_at: str | None = None


@dataclass(frozen=True)
class IngestResult:
    """`flowfence ingest` of the JSON-lines export of a bench data set."""

    label: str
    rows: int  # rows of the Parquet data set exported
    files: int
    input_bytes: int
    store_rows: int  # rows read back from the store
    store_bytes: int
    export_seconds: float | None  # None: not known (an earlier export was reused)
    figures: Mapping[str, Figure]
    exported_at: str | None = None  # when a reused export was made (None: in this run)


@dataclass(frozen=True)
class Machine:
    nproc: int
    memory_bytes: int
    cpu: str
    python: str
    versions: Mapping[str, str]
    commit: str

    @classmethod
    def detect(cls, root: Path) -> Machine:
        versions = {}
        for dist in ("duckdb", "polars", "pyarrow", "flowfence"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = "not installed"
        return cls(
            nproc=len(os.sched_getaffinity(0)),
            memory_bytes=_meminfo_total(),
            cpu=_cpu_model(),
            python=platform.python_version(),
            versions=versions,
            commit=_commit(root),
        )


@dataclass(frozen=True)
class BenchRun:
    machine: Machine
    command: str
    date: str
    threads: int
    memory_limit: str
    topology: str
    namespaces: int
    seed: int
    repeat: int
    existing_policies: str | None
    sizes: tuple[SizeResult, ...]
    elapsed: float
    load: tuple[float, float]  # 1-minute load average before and after: other work skews figures
    temp_dir: str = ""
    incremental: IncrementalResult | None = None
    ingest: IngestResult | None = None
    skipped: tuple[str, ...] = ()  # what this run left out, said in RESULTS.md
    large_repeat: int = 1  # processes per figure at the largest sizes
    tight_memory_limit: str = ""  # one more run at the largest size with this memory_limit


def _meminfo_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit(root: Path) -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "jobs", "sql"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} + uncommitted changes in jobs/ or sql/" if dirty else head

"""`flowfence ingest --max-line-bytes`: a line longer than the limit is malformed, read past
without being held whole, and the lines around it are stored (issue 14)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flowfence.cli.app import main
from flowfence.flows import sources
from flowfence.ingest.convert import ingest

DATA = Path(__file__).resolve().parent / "ingest_data"
_FELIX = json.loads((DATA / "flows.log").read_text().splitlines()[0])


def flow(port: int, **extra: Any) -> bytes:
    """A Felix flow-log line the fast path and the line parser both accept."""
    return json.dumps({**_FELIX, "dest_port": port, **extra}).encode() + b"\n"


def stored_ports(store: Path) -> list[int]:
    con = duckdb.connect()
    try:
        sources.bind_flows(con, store)
        return [r[0] for r in con.sql("SELECT dest_port FROM flows ORDER BY 1").fetchall()]
    finally:
        con.close()


@pytest.mark.parametrize("compressed", [False, True])
def test_a_line_over_the_limit_is_malformed_and_its_neighbours_are_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], compressed: bool
) -> None:
    # an otherwise valid flow: only its length makes it malformed
    text = flow(1001) + flow(1002, padding="x" * 100_000) + flow(1003)
    source = tmp_path / ("flows.log.gz" if compressed else "flows.log")
    source.write_bytes(gzip.compress(text) if compressed else text)
    store = tmp_path / "store"
    argv = ["ingest", str(source), "--out", str(store), "--output", "json"]
    assert main([*argv, "--max-line-bytes", "4KiB"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["rows"], out["malformed"]) == (2, 1)
    assert [(m["line"], m["reason"]) for m in out["malformed_samples"]] == [
        (2, "line longer than 4096 bytes")
    ]
    assert stored_ports(store) == [1001, 1003]


def test_a_line_at_the_limit_is_read_and_the_default_limit_is_large(tmp_path: Path) -> None:
    short = flow(1002)
    exact = flow(1002, padding="x" * (4096 - len(flow(1002, padding="")) + 1))
    assert len(exact) == 4096 + 1  # 4096 bytes and the newline
    # plain: the scan measures the line (fast path); gzip: the line reader does
    (tmp_path / "a.log").write_bytes(flow(1001) + exact + short)
    (tmp_path / "a.log.gz").write_bytes(gzip.compress(flow(1004) + exact + short))
    summary = ingest([tmp_path / "a.log", tmp_path / "a.log.gz"], tmp_path / "a", max_line=4096)
    assert (summary.rows, summary.malformed) == (6, 0)
    (tmp_path / "b.log").write_bytes(flow(1001) + flow(1002, padding="x" * 100_000))
    assert ingest([tmp_path / "b.log"], tmp_path / "b").rows == 2
    assert (
        main(
            [
                "ingest",
                str(tmp_path / "b.log"),
                "--out",
                str(tmp_path / "c"),
                "--max-line-bytes",
                "1k",
            ]
        )
        == 2
    )


def test_memory_stays_bounded_whatever_the_line_length(tmp_path: Path) -> None:
    source = tmp_path / "flows.log"
    with source.open("wb") as handle:
        handle.write(flow(1001) + b'{"padding": "')
        for _ in range(16):
            handle.write(b"x" * (1 << 20))
        handle.write(b'"}\n' + flow(1003))
    tracemalloc.start()
    try:
        summary = ingest([source], tmp_path / "store", max_line=1 << 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (summary.rows, summary.malformed) == (2, 1)
    assert peak < 8 << 20  # the 16 MiB line was never held whole

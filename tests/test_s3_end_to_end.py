"""The whole job against a local S3 server (moto on 127.0.0.1): flow logs and state in the
bucket, through `flowfence.cli.app.main`, compared with the same run on local disk; an incremental
second run; two writers racing for the state manifest."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl
import pytest
from conftest import CliResult, DemoInputs
from ingest_export import enterprise_docs, raw_rows, write_lines
from s3server import S3, moto_endpoint, s3_fixture  # noqa: F401

from flowfence.cli import app as cli
from flowfence.core import checkpoints, objects, objectstore
from flowfence.state import tables as state

Runner = Callable[[Sequence[str]], CliResult]
LATER = "2026-11-03T00:00:00Z"


def _args(demo: DemoInputs, flows: str, state_at: str, out: Path, now: str) -> list[str]:
    return [
        "run",
        "--flows",
        flows,
        "--state",
        state_at,
        "--out",
        str(out),
        "--now",
        now,
        "--namespaces",
        str(demo.namespaces),
        "--existing-policies",
        str(demo.policies),
    ]


def _tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.*"))}


def _policies(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in _tree(out).items() if k.startswith("policies/")}


def _remote_tables(s3: S3, prefix: str) -> dict[str, pl.DataFrame]:
    manifest = json.loads(s3.get(f"{prefix}/manifest.json"))
    return {n: pl.read_parquet(s3.get(f"{prefix}/{k}")) for n, k in manifest["tables"].items()}


def _local_tables(directory: Path) -> dict[str, pl.DataFrame]:
    manifest = json.loads((directory / "manifest.json").read_bytes())
    return {n: pl.read_parquet(directory / f) for n, f in manifest["tables"].items()}


def test_the_job_runs_on_s3_like_on_local_disk(
    s3: S3, demo_inputs: DemoInputs, run_cli: Runner, tmp_path: Path
) -> None:
    s3.upload(demo_inputs.flows, "flows")
    now = demo_inputs.now
    local = run_cli(
        _args(demo_inputs, str(demo_inputs.flows), str(tmp_path / "st"), tmp_path / "a", now)
    )
    assert local.code == 0, local.err
    remote = run_cli(_args(demo_inputs, s3.url("flows"), s3.url("state"), tmp_path / "b", now))
    assert remote.code == 0, remote.err
    assert "Read 24 files (28805 rows) this run; state generation 1." in remote.out

    # The same manifests and reports, byte for byte.
    expected = _tree(tmp_path / "a")
    assert any(k.startswith("policies/") for k in expected)
    assert _tree(tmp_path / "b") == expected

    # The state is in the bucket, nothing else is, and it holds what the local state holds
    # (the sealed-file table differs only in the paths and modification times it records).
    manifest = json.loads(s3.get("state/manifest.json"))
    assert manifest["generation"] == 1
    named = {f"state/{k}" for k in manifest["tables"].values()}
    assert set(s3.keys("state")) == named | {"state/manifest.json"}
    mine, theirs = _remote_tables(s3, "state"), _local_tables(tmp_path / "st")
    assert mine.keys() == theirs.keys() == set(state.TABLES)
    for name in set(state.TABLES) - {"files", "open_files", "runs"}:
        assert mine[name].equals(theirs[name]), name
    columns = ["rel", "unit", "start", "end", "size", "empty"]
    for name in ("files", "open_files"):
        assert mine[name].select(columns).equals(theirs[name].select(columns)), name

    # Incremental: a second run with nothing new changes nothing, the manifest included, and
    # reports exactly what the same rerun on local disk reports.
    etag = objects.read_object(s3.fs, objectstore.parse(s3.url("state/manifest.json")))
    again = run_cli(_args(demo_inputs, s3.url("flows"), s3.url("state"), tmp_path / "b", now))
    assert again.code == 0, again.err
    assert "state unchanged" in again.out
    assert _policies(tmp_path / "b") == _policies(tmp_path / "a")
    after = objects.read_object(s3.fs, objectstore.parse(s3.url("state/manifest.json")))
    assert after == etag
    local_again = run_cli(
        _args(demo_inputs, str(demo_inputs.flows), str(tmp_path / "st"), tmp_path / "a", now)
    )
    assert local_again.code == 0, local_again.err
    assert _tree(tmp_path / "b") == _tree(tmp_path / "a")

    # A later run builds on the remote state exactly as the local one does.
    local2 = run_cli(
        _args(demo_inputs, str(demo_inputs.flows), str(tmp_path / "st"), tmp_path / "a", LATER)
    )
    remote2 = run_cli(_args(demo_inputs, s3.url("flows"), s3.url("state"), tmp_path / "b", LATER))
    assert (local2.code, remote2.code) == (0, 0), remote2.err
    assert _tree(tmp_path / "b") == _tree(tmp_path / "a")
    assert json.loads(s3.get("state/manifest.json"))["generation"] == 2
    assert len(s3.keys("state")) == len(state.TABLES) + 1  # old tables collected


@pytest.mark.parametrize("first", [False, True], ids=["new-state", "existing-state"])
def test_a_second_writer_that_loses_the_manifest_gets_exit_1(
    s3: S3,
    demo_inputs: DemoInputs,
    run_cli: Runner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    first: bool,
) -> None:
    s3.upload(demo_inputs.flows, "flows")
    if first:
        base = run_cli(
            _args(
                demo_inputs,
                s3.url("flows"),
                s3.url("state"),
                tmp_path / "base",
                "2026-11-01T12:00:00Z",
            )
        )
        assert base.code == 0, base.err
    args = _args(demo_inputs, s3.url("flows"), s3.url("state"), tmp_path / "loser", LATER)
    winner_args = _args(demo_inputs, s3.url("flows"), s3.url("state"), tmp_path / "winner", LATER)
    real = checkpoints.reached
    started: list[str] = []
    raced: list[int] = []

    # The other writer starts and commits while this run is between its read and its commit.
    def race(step: str) -> None:
        if step == "after-read" and not started:
            started.append(step)
            raced.append(cli.main(winner_args))
        real(step)

    monkeypatch.setattr(checkpoints, "reached", race)
    loser = run_cli(args)
    assert raced == [0]
    assert loser.code == 1
    assert loser.err.startswith(f"flowfence: error: state s3://{s3.bucket}/state: ")
    assert "another flowfence run committed a new generation" in loser.err
    assert "no output was written" in loser.err
    assert not (tmp_path / "loser" / "policies").exists()
    # The winner's generation stands, whole: readable, with only its tables in the bucket.
    manifest = json.loads(s3.get("state/manifest.json"))
    assert manifest["generation"] == (2 if first else 1)
    named = {f"state/{k}" for k in manifest["tables"].values()}
    assert set(s3.keys("state")) == named | {"state/manifest.json"}
    monkeypatch.setattr(checkpoints, "reached", real)
    retry = run_cli(args)
    assert retry.code == 0, retry.err
    # The retry builds on the winner's state: the same policies (its report tells a rerun).
    assert "state unchanged" in retry.out
    assert _policies(tmp_path / "loser") == _policies(tmp_path / "winner")
    assert _policies(tmp_path / "loser")


def test_ingest_into_s3_then_run_from_it(
    s3: S3, demo_inputs: DemoInputs, run_cli: Runner, tmp_path: Path
) -> None:
    # The demo day as Felix writes it (flows.log JSON lines), ingested straight into the bucket.
    log = write_lines(
        tmp_path / "felix" / "flows.log", enterprise_docs(raw_rows(demo_inputs.flows))
    )
    ingested = run_cli(["ingest", str(log), "--out", s3.url("store"), "--format", "enterprise"])
    assert ingested.code == 0, ingested.err
    assert "ingested 1 files" in ingested.out
    assert "s3://" in ingested.out
    hours = {k.split("/")[2] for k in s3.keys("store") if k.endswith(".parquet")}
    assert hours == {f"hour={h:02d}" for h in range(24)}
    again = run_cli(["ingest", str(log), "--out", s3.url("store"), "--format", "enterprise"])
    assert again.code == 0 and "skipped 1 already in the store" in again.out

    now = demo_inputs.now
    local = run_cli(
        _args(demo_inputs, str(demo_inputs.flows), str(tmp_path / "st"), tmp_path / "a", now)
    )
    remote = run_cli(_args(demo_inputs, s3.url("store"), s3.url("state"), tmp_path / "b", now))
    assert (local.code, remote.code) == (0, 0), remote.err
    assert _tree(tmp_path / "b") == _tree(tmp_path / "a")


def test_bad_or_empty_locations_are_bad_input(
    s3: S3, demo_inputs: DemoInputs, run_cli: Runner, tmp_path: Path
) -> None:
    now = demo_inputs.now
    empty = run_cli(_args(demo_inputs, s3.url("nothing"), s3.url("state"), tmp_path / "o", now))
    assert empty.code == 2
    assert f"s3://{s3.bucket}/nothing: no Parquet files" in empty.err
    bad = run_cli(_args(demo_inputs, str(demo_inputs.flows), "s3://Not_A_Bucket/x", tmp_path, now))
    assert bad.code == 2
    assert "bad bucket name 'Not_A_Bucket'" in bad.err
    s3.upload(demo_inputs.flows, "flows")
    store = run_cli(["ingest", "--out", "s3://bucket//x", str(demo_inputs.namespaces)])
    assert store.code == 2 and "bad key segment" in store.err
    listed = s3.keys()
    assert listed and all(k.startswith("flows/") for k in listed)  # nothing else written

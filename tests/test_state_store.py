"""state_store.py: the learning state on the local S3 server (moto on 127.0.0.1), committed
with conditional puts, and the local directory behind the same interface."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from s3server import S3, moto_endpoint, s3_fixture  # noqa: F401

from flowfence.core import objects, objectstore
from flowfence.core.errors import ConfigError, StateError
from flowfence.state import store as state_store
from flowfence.state import tables as state
from flowfence.state.store import StateConflict

T0 = datetime(2026, 11, 1)


def _activity(*flows: int) -> pl.DataFrame:
    rows = [("shop", datetime(2026, 11, 1, h), n) for h, n in enumerate(flows)]
    return pl.DataFrame(rows, schema=state.ACTIVITY_SCHEMA, orient="row")


def _next(prior: state.State, *flows: int, hour: int = 1) -> state.State:
    return replace(
        prior,
        origin=T0,
        watermark=datetime(2026, 11, 1, hour),
        now=datetime(2026, 11, 1, hour),
        activity=_activity(*flows),
    )


def _commit(s3: S3, prefix: str, *flows: int) -> state.State:
    with state_store.opened(s3.url(prefix)) as store:
        prior = store.load()
        store.collect_garbage(prior)
        return store.commit(prior, _next(prior, *flows, hour=prior.generation + 1))


def test_location_keeps_urls_and_makes_paths(tmp_path: Path) -> None:
    assert state_store.location("s3://bucket/state/") == "s3://bucket/state"
    assert state_store.location(str(tmp_path)) == tmp_path
    with pytest.raises(ConfigError, match="bucket"):
        state_store.location("s3://Bad_Bucket/state")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        state_store.location(tmp_path / "file")


def test_remote_state_round_trips_and_keeps_unchanged_tables(s3: S3) -> None:
    first = _commit(s3, "state", 5)
    assert first.generation == 1
    keys = s3.keys("state")
    manifest = json.loads(s3.get("state/manifest.json"))
    assert manifest["generation"] == 1
    assert sorted(manifest["tables"]) == sorted(state.TABLES)
    assert sorted(f"state/{k}" for k in manifest["tables"].values()) == [
        k for k in keys if k != "state/manifest.json"
    ]
    # Every table object carries the writer's token; the state reads with plain Polars.
    assert all(
        k.endswith(".parquet") and len(k.split("-")) == 3 for k in manifest["tables"].values()
    )
    remote = s3.get(f"state/{manifest['tables']['activity']}")
    assert pl.read_parquet(remote).equals(_activity(5))

    with state_store.opened(s3.url("state")) as store:
        loaded = store.load()
        assert loaded.generation == 1
        assert loaded.activity.equals(_activity(5))
        assert loaded.watermark == datetime(2026, 11, 1, 1)
        second = store.commit(loaded, _next(loaded, 5, 7, hour=2))
    assert second.generation == 2
    after = json.loads(s3.get("state/manifest.json"))
    assert after["generation"] == 2
    # Only the activity table changed: the others keep their objects, the old one is gone.
    changed = {n for n in state.TABLES if after["tables"][n] != manifest["tables"][n]}
    assert changed == {"activity"}
    assert f"state/{manifest['tables']['activity']}" not in s3.keys("state")
    assert len(s3.keys("state")) == len(state.TABLES) + 1


def test_second_writer_from_the_same_generation_loses(s3: S3) -> None:
    _commit(s3, "state", 1)
    with (
        state_store.opened(s3.url("state")) as a,
        state_store.opened(s3.url("state")) as b,
    ):
        prior_a, prior_b = a.load(), b.load()
        a.commit(prior_a, _next(prior_a, 1, 2, hour=2))
        before = s3.keys("state")
        with pytest.raises(StateConflict, match="another flowfence run committed") as lost:
            b.commit(prior_b, _next(prior_b, 9, 9, 9, hour=3))
    assert lost.value.exit_code == 1
    # A's generation stands and B left no tables behind.
    assert json.loads(s3.get("state/manifest.json"))["generation"] == 2
    assert s3.keys("state") == before
    with state_store.opened(s3.url("state")) as c:
        assert c.load().activity.equals(_activity(1, 2))


def test_two_first_runs_cannot_both_create_the_state(s3: S3) -> None:
    with (
        state_store.opened(s3.url("fresh")) as a,
        state_store.opened(s3.url("fresh")) as b,
    ):
        prior_a, prior_b = a.load(), b.load()
        assert prior_a.generation == prior_b.generation == 0
        a.commit(prior_a, _next(prior_a, 3))
        with pytest.raises(StateConflict):
            b.commit(prior_b, _next(prior_b, 4))
    with state_store.opened(s3.url("fresh")) as c:
        assert c.load().activity.equals(_activity(3))


def test_garbage_collection_spares_a_concurrent_next_generation(s3: S3) -> None:
    _commit(s3, "state", 1)
    root = objectstore.parse(s3.url("state"))
    orphan = root.join("activity-000001-deadbeef.parquet")  # a loser of generation 1
    pending = root.join("activity-000002-0badf00d.parquet")  # someone writing generation 2
    foreign = root.join("notes.txt")
    for url in (orphan, pending, foreign):
        objects.write_object(s3.fs, url, b"x")
    with state_store.opened(s3.url("state")) as store:
        store.collect_garbage(store.load())
    keys = s3.keys("state")
    assert f"state/{orphan.name}" not in keys
    assert f"state/{pending.name}" in keys
    assert "state/notes.txt" in keys


def test_unusable_remote_state_is_refused_naming_the_url(s3: S3) -> None:
    url = objectstore.parse(s3.url("broken/manifest.json"))
    objects.write_object(s3.fs, url, b"{not json")
    with (
        pytest.raises(StateError, match=r"s3://.*/broken: manifest.json is corrupt"),
        state_store.opened(s3.url("broken")) as store,
    ):
        store.load()

    _commit(s3, "gone", 1)
    manifest = json.loads(s3.get("gone/manifest.json"))
    objects.delete(s3.fs, [objectstore.parse(s3.url(f"gone/{manifest['tables']['runs']}"))])
    with (
        pytest.raises(StateError, match=r"table runs-000001-[0-9a-f]{8}\.parquet .* is missing"),
        state_store.opened(s3.url("gone")) as store,
    ):
        store.load()

    newer = {**manifest, "schema": state.SCHEMA_VERSION + 1}
    objects.write_object(
        s3.fs, objectstore.parse(s3.url("gone/manifest.json")), json.dumps(newer).encode()
    )
    with (
        pytest.raises(StateError, match=r"state s3://[^ ]+/gone: .*newer flowfence"),
        state_store.opened(s3.url("gone")) as store,
    ):
        store.load()


def test_a_local_state_copied_to_the_bucket_is_used(s3: S3, tmp_path: Path) -> None:
    directory = tmp_path / "state"
    with state_store.opened(directory) as store:
        prior = store.load()
        store.commit(prior, _next(prior, 4, 2))
    for file in directory.iterdir():
        if file.name != "lock":
            s3.upload(file, f"moved/{file.name}")
    second = _commit(s3, "moved", 4, 2, 8)
    assert second.generation == 2
    tables = json.loads(s3.get("moved/manifest.json"))["tables"]
    assert tables["activity"].startswith("activity-000002-")
    assert tables["edges"] == "edges-000001.parquet"  # unchanged, kept under its local name


def test_remote_tables_without_a_manifest_are_refused_until_reset(s3: S3) -> None:
    _commit(s3, "state", 5)
    manifest = json.loads(s3.get("state/manifest.json"))
    table_keys = sorted(f"state/{k}" for k in manifest["tables"].values())
    objects.delete(s3.fs, [objectstore.parse(s3.url("state/manifest.json"))])
    with (
        state_store.opened(s3.url("state")) as store,
        pytest.raises(StateError, match=r"but no manifest\.json") as refused,
    ):
        store.load()
    assert s3.url("state") in str(refused.value) and "--reset-state" in str(refused.value)
    assert s3.keys("state") == table_keys  # nothing deleted
    with state_store.opened(s3.url("state")) as store:
        aside = store.reset()
        assert aside is not None and aside.startswith(s3.url("state/reset-"))
        prior = store.load()
        assert prior.generation == 0
        store.collect_garbage(prior)
        store.commit(prior, _next(prior, 7))
    kept = aside.removeprefix(s3.url() + "/")
    assert [k for k in s3.keys("state") if k.startswith(kept)] == sorted(
        f"{kept}/{k}" for k in manifest["tables"].values()
    )
    assert json.loads(s3.get("state/manifest.json"))["generation"] == 1


def test_a_lost_first_race_leaves_no_pending_marker(s3: S3) -> None:
    with (
        state_store.opened(s3.url("fresh")) as a,
        state_store.opened(s3.url("fresh")) as b,
    ):
        prior_a, prior_b = a.load(), b.load()
        a.commit(prior_a, _next(prior_a, 3))
        with pytest.raises(StateConflict):
            b.commit(prior_b, _next(prior_b, 4))
    assert not [k for k in s3.keys("fresh") if k.endswith(state.PENDING)]
    # So a manifest lost later is still refused, not taken for a dead first run's leftovers.
    objects.delete(s3.fs, [objectstore.parse(s3.url("fresh/manifest.json"))])
    with state_store.opened(s3.url("fresh")) as c, pytest.raises(StateError, match="reset"):
        c.load()

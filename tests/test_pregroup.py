"""The pre-aggregation groups nested key columns by hash (flows/pregroup.py), exactly.

A 64-bit collision cannot be produced on purpose here, so the fallback is exercised by
swapping the `row_hash` fragment for a weak hash that collides by construction: the bound view
must not change, whichever columns end up grouped by hash and whichever by value.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sources import T0, required, write

from flowfence.flows import edges, encodings, pregroup
from flowfence.flows.sources import bind_flows

NESTED = ("dest_domains", "dest_labels", "policies", "source_labels")
_STRUCT_LABELS = pa.struct([("labels", pa.list_(pa.string()))])
_STRUCT_POLICIES = pa.struct(
    [("enforced_policies", pa.list_(pa.string())), ("pending_policies", pa.list_(pa.string()))]
)
# Weak stand-ins for DuckDB's hash: every value of a column shares one, or values of the same
# printed length do.
CONSTANT = "CAST(0 AS UBIGINT)"
BY_LENGTH = "CAST(length(CAST({col} AS VARCHAR)) AS UBIGINT)"


def rows(n: int, **over: Any) -> dict[str, Any]:
    """test_sources.required's rows, all on one port: rows with equal nested values merge."""
    return required(n, **{"dest_port": pa.array([5432] * n, pa.int32()), **over})


VALUE, HASH = "value", "hash"  # group by value always; by DuckDB's hash always


@contextmanager
def row_hash(mode: str) -> Iterator[None]:
    """Bind grouping nested keys by VALUE, by DuckDB's HASH, or by `mode` as the row_hash
    fragment ({col}: the raw column); the last two whatever the sample of keys says."""
    real = encodings.fragment

    def fragment(section: str, column: str | None) -> str:
        if section == "row_hash":
            return mode.replace("{col}", f'"{column}"')
        return real(section, column)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pregroup, "HASH_FROM", 2**62 if mode == VALUE else 0)
        if mode not in (VALUE, HASH):
            mp.setattr(encodings, "fragment", fragment)
        yield


def view(path: Path, mode: str, **kw: Any) -> tuple[list[tuple[Any, ...]], Any]:
    """The bound view's rows (sorted) and its edges, grouped as `mode` says (row_hash)."""
    con = duckdb.connect()
    with row_hash(mode):
        bind_flows(con, path, **kw)
    got = sorted(con.table("flows").fetchall(), key=repr)
    return got, edges.aggregate(con)


def steps_of(path: Path) -> encodings.Plan:
    rel = duckdb.connect().read_parquet(str(path))
    return encodings.plan(dict(zip(rel.columns, rel.types, strict=True)))


def nested_file(tmp: Path) -> Path:
    return write(
        tmp / "f.parquet",
        rows(
            2,
            source_labels=pa.array([{"labels": ["a=1"]}, {"labels": ["b=2"]}], _STRUCT_LABELS),
            dest_labels=pa.array([["x=1"], []], pa.list_(pa.string())),
            dest_domains=pa.array([None, ["b.example"]], pa.list_(pa.string())),
            policies=pa.array(
                [{"enforced_policies": ["0|t|t.p|allow|0"], "pending_policies": []}] * 2,
                _STRUCT_POLICIES,
            ),
        ),
    )


def test_nested_keys_are_the_list_struct_and_map_columns(tmp_path: Path) -> None:
    steps = steps_of(nested_file(tmp_path))
    assert encodings.nested_keys(steps) == NESTED
    # the hourly activity reads no nested column; a column set without them has none either
    assert encodings.nested_keys(steps, "hour") == ()
    lean = frozenset({"start_time", "end_time", "rows", "dest_labels"})
    assert encodings.nested_keys(steps, "day", lean) == ("dest_labels",)
    # absent optional columns read no input column, so nothing to hash
    bare = write(tmp_path / "bare.parquet", rows(1))
    assert encodings.nested_keys(steps_of(bare)) == ()


def test_a_grouping_by_hash_keys_on_the_hashes_and_only_of_nested_columns(
    tmp_path: Path,
) -> None:
    steps = steps_of(nested_file(tmp_path))
    plain = encodings.grouping(steps)
    hashed = encodings.grouping(steps, hashed=frozenset({"policies", "dest_labels"}))
    swapped = {"policies": "__hash_policies", "dest_labels": "__hash_dest_labels"}
    assert hashed.keys == tuple(swapped.get(k, k) for k in plain.keys)
    assert len(hashed.view) == len(plain.view)
    with pytest.raises(ValueError, match="source_namespace"):
        encodings.grouping(steps, hashed=frozenset({"source_namespace"}))
    with pytest.raises(ValueError, match="dest_labels"):
        encodings.grouping(steps, "hour", hashed=frozenset({"dest_labels"}))


def test_lookups_keep_the_columns_whose_hashes_stand_for_one_value(tmp_path: Path) -> None:
    """Under the length hash, the two source label sets ("a=1", "b=2") share a hash, and the
    null domain list has a null one (a null hash counts as shared: it joins nothing); the
    dest labels (lengths 5 and 2) and the policies (one value) do not. Only the latter are
    grouped by hash, and the view is unchanged."""
    path = nested_file(tmp_path)
    con = duckdb.connect()
    with row_hash(BY_LENGTH):
        usable = pregroup.lookups(
            con, lambda: con.read_parquet(str(path)), NESTED, "flowfence_test"
        )
    assert sorted(usable) == ["dest_labels", "policies"]
    policies = con.table(usable["policies"]).fetchall()
    assert [p[1] for p in policies] == [
        {"enforced_policies": ["0|t|t.p|allow|0"], "pending_policies": []}
    ]
    # the rejected lookups are dropped, not left behind
    tables = {r[0] for r in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert tables == {"flowfence_test_dest_labels", "flowfence_test_policies"}
    rows_, frame = view(path, VALUE)
    for weak in (HASH, BY_LENGTH, CONSTANT):
        got = view(path, weak)
        assert got[0] == rows_ and got[1].equals(frame)
    assert len(rows_) == 2 and frame.height == 2
    assert sorted(frame.get_column("source_labels").to_list()) == [["a=1"], ["b=2"]]
    assert sorted(frame.get_column("dest_labels").to_list()) == [[], ["x=1"]]
    assert sorted(frame.get_column("dest_domains").to_list()) == [[], ["b.example"]]


_LABEL = st.sampled_from(["app=web", "app=api", "tier=1", "team=a", "x=", "-"])
_LIST = st.one_of(st.none(), st.lists(_LABEL, max_size=3))
_HIT = st.sampled_from(["0|t|t.p|allow|0", "0|t|t.q|deny|1", "1|__PROFILE__|kns.a|allow|0"])


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            _LIST,
            _LIST,
            st.one_of(st.none(), st.lists(st.sampled_from(["A.example", "b.example ", "-"]))),
            st.lists(_HIT, max_size=2),
            st.sampled_from(["list", "struct", "map"]),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=12,
    ),
    hash_text=st.sampled_from([HASH, CONSTANT, BY_LENGTH]),
    window=st.booleans(),
)
def test_grouping_by_hash_gives_the_view_grouping_by_value(
    data: list[tuple[Any, ...]], hash_text: str, window: bool
) -> None:
    """Random nested keys (repeats, nulls, empty lists, every label encoding in its own
    file, rows inside and outside a window): grouping by DuckDB's hash or by the weak ones
    (which send some or all columns back to their values) binds the view and the edges that
    grouping by value binds."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for encoding in ("list", "struct", "map"):
            mine = [d for d in data if d[4] == encoding]
            if not mine:
                continue
            n = len(mine)

            def labels(values: list[Any], encoding: str = encoding) -> pa.Array:
                if encoding == "list":
                    return pa.array(values, pa.list_(pa.string()))
                if encoding == "struct":
                    wrapped = [None if v is None else {"labels": v} for v in values]
                    return pa.array(wrapped, _STRUCT_LABELS)
                pairs = [
                    None if v is None else [tuple(x.split("=", 1)) for x in v if "=" in x]
                    for v in values
                ]
                return pa.array(pairs, pa.map_(pa.string(), pa.string()))

            starts = [T0 + timedelta(hours=d[5]) for d in mine]
            cols = rows(
                n,
                start_time=pa.array(starts, pa.timestamp("us")),
                end_time=pa.array([s + timedelta(minutes=5) for s in starts], pa.timestamp("us")),
                source_labels=labels([d[0] for d in mine]),
                dest_labels=labels([d[1] for d in mine]),
                dest_domains=pa.array([d[2] for d in mine], pa.list_(pa.string())),
                policies=pa.array([d[3] for d in mine], pa.list_(pa.string())),
            )
            write(root / f"{encoding}.parquet", cols)
        kw: dict[str, Any] = {}
        if window:
            at = T0.replace(tzinfo=UTC)
            kw = {"since": at + timedelta(hours=1), "until": at + timedelta(hours=3)}
        expected = view(root, VALUE, **kw)
        got = view(root, hash_text, **kw)
        assert got[0] == expected[0]
        assert got[1].equals(expected[1])


def test_a_hash_that_is_not_a_function_of_the_value_stops_the_bind(tmp_path: Path) -> None:
    """A group whose hash has no value in the lookup (here the "hash" is random, so the
    grouping's hashes are not the lookup's) fails the bind rather than binding the group with
    null labels and policies, which normalise to empty ones."""
    path = nested_file(tmp_path)
    with pytest.raises(duckdb.Error, match="grouping hash has no value in its lookup"):
        view(path, "CAST(random() * 1e15 AS UBIGINT)")


def test_the_lookup_reads_the_window_only(tmp_path: Path) -> None:
    """The lookup holds the (hash, value) pairs of the rows in the window: a value outside it
    that shares a hash with one inside does not send the column back to grouping by value."""
    starts = [T0, T0 + timedelta(days=2)]
    path = write(
        tmp_path / "f.parquet",
        rows(
            2,
            start_time=pa.array(starts, pa.timestamp("us")),
            end_time=pa.array([s + timedelta(minutes=5) for s in starts], pa.timestamp("us")),
            source_labels=pa.array([["a=1"], ["b=2"]], pa.list_(pa.string())),
        ),
    )
    at = T0.replace(tzinfo=UTC)
    for since, hashed in ((None, False), (at - timedelta(hours=1), True)):
        con = duckdb.connect()
        until = None if since is None else at + timedelta(hours=1)
        with row_hash(BY_LENGTH):
            bind_flows(con, path, since=since, until=until)
        tables = {r[0] for r in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert ("flowfence_flows_0_source_labels" in tables) is hashed
        expected = [["a=1"]] if hashed else [["a=1"], ["b=2"]]
        got = con.sql("SELECT source_labels FROM flows ORDER BY start_time").fetchall()
        assert [r[0] for r in got] == expected


def test_nested_keys_are_hashed_only_when_a_sample_holds_many_keys(tmp_path: Path) -> None:
    """The first SAMPLE_ROWS rows decide: HASH_FROM distinct keys or more there, and the
    nested columns are grouped by hash (their lookups exist), fewer and they are grouped by
    value. Both bind the same view."""
    labels = pa.array([["a=1"], ["a=1"], ["b=2"], ["c=3"]], pa.list_(pa.string()))
    path = write(tmp_path / "f.parquet", rows(4, source_labels=labels))

    def bound(hash_from: int, sample: int) -> tuple[bool, list[Any]]:
        con = duckdb.connect()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(pregroup, "HASH_FROM", hash_from)
            mp.setattr(pregroup, "SAMPLE_ROWS", sample)
            bind_flows(con, path)
        tables = {r[0] for r in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
        got = con.sql("SELECT source_labels, rows FROM flows ORDER BY 1").fetchall()
        return "flowfence_flows_0_source_labels" in tables, got

    expected = [(["a=1"], 2), (["b=2"], 1), (["c=3"], 1)]
    assert bound(3, 4) == (True, expected)  # 3 distinct keys in the 4 rows sampled
    assert bound(4, 4) == (False, expected)
    assert bound(3, 2) == (False, expected)  # the first 2 rows hold one key
    # the defaults: a few keys are grouped by value
    assert bound(pregroup.HASH_FROM, pregroup.SAMPLE_ROWS) == (False, expected)

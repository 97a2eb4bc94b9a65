"""The flow-log column contract and the SQL fragment that normalises each accepted encoding.

Calico writers disagree on physical types (times as TIMESTAMP or Unix seconds, labels as a
list, a struct or a map, policies as a list or a struct). Rather than casting row by row, we
look at the Parquet type DuckDB reports for each column of each file and pick one fixed
expression fragment from `sql/flows_normalise.sql` for it. The chosen fragments form a *plan*;
files with the same plan are read together. `grouping` turns a plan into a pre-aggregation
(raw rows grouped on their raw key columns and UTC hour, fragments applied once per group),
which is how sources.py binds the DuckDB view; `projection` is the per-row form the Spark
engine uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import duckdb
from duckdb.sqltypes import DuckDBPyType

from flowfence.core import sql

Kind = Literal[
    "time", "keyword", "text", "proto", "integer", "labels", "domains", "policies", "counter"
]

REQUIRED: dict[str, Kind] = {
    "start_time": "time",
    "end_time": "time",
    "source_type": "keyword",
    "source_namespace": "text",
    "source_name_aggr": "text",
    "dest_type": "keyword",
    "dest_namespace": "text",
    "dest_name_aggr": "text",
    "dest_port": "integer",
    "proto": "proto",
    "action": "keyword",
    "reporter": "keyword",
}

OPTIONAL: dict[str, Kind] = {
    "source_ip": "text",
    "dest_ip": "text",
    "source_labels": "labels",
    "dest_labels": "labels",
    "dest_service_namespace": "text",
    "dest_service_name": "text",
    "dest_service_port": "text",
    "dest_service_port_num": "integer",
    "dest_domains": "domains",
    "policies": "policies",
    "num_flows": "counter",
    "num_flows_started": "counter",
    "num_flows_completed": "counter",
    "bytes_in": "counter",
    "bytes_out": "counter",
    "packets_in": "counter",
    "packets_out": "counter",
    "host": "text",
}

# The `flows` view, in column order (ARCHITECTURE.md is the source of truth).
FLOWS_SCHEMA: tuple[tuple[str, str], ...] = (
    ("start_time", "TIMESTAMP"),
    ("end_time", "TIMESTAMP"),
    ("source_type", "VARCHAR"),
    ("source_namespace", "VARCHAR"),
    ("source_name_aggr", "VARCHAR"),
    ("dest_type", "VARCHAR"),
    ("dest_namespace", "VARCHAR"),
    ("dest_name_aggr", "VARCHAR"),
    ("dest_port", "INTEGER"),
    ("proto", "VARCHAR"),
    ("action", "VARCHAR"),
    ("reporter", "VARCHAR"),
    ("source_ip", "VARCHAR"),
    ("dest_ip", "VARCHAR"),
    ("source_labels", "VARCHAR[]"),
    ("dest_labels", "VARCHAR[]"),
    ("dest_service_namespace", "VARCHAR"),
    ("dest_service_name", "VARCHAR"),
    ("dest_service_port", "VARCHAR"),
    ("dest_service_port_num", "INTEGER"),
    ("dest_domains", "VARCHAR[]"),
    ("enforced_policies", "VARCHAR[]"),
    ("pending_policies", "VARCHAR[]"),
    ("num_flows", "BIGINT"),
    ("num_flows_started", "BIGINT"),
    ("num_flows_completed", "BIGINT"),
    ("bytes_in", "BIGINT"),
    ("bytes_out", "BIGINT"),
    ("packets_in", "BIGINT"),
    ("packets_out", "BIGINT"),
    ("host", "VARCHAR"),
    ("rows", "BIGINT"),
)

# Kinds whose raw columns hold lists, structs or maps (domains may also be one long string): as
# GROUP BY keys of the pre-aggregation they are wide, so they can be grouped on a hash
# (grouping's `hashed`).
_NESTED: frozenset[str] = frozenset({"labels", "domains", "policies"})

# Measures of a view row: how the per-row values combine when raw rows are grouped.
_FIRST, _LAST = "start_time", "end_time"
COUNTERS: tuple[str, ...] = tuple(c for c, kind in OPTIONAL.items() if kind == "counter")
_NET_TYPE = {"source_ip": "source_type", "dest_ip": "dest_type"}

EXPECTED: dict[Kind, str] = {
    "time": "TIMESTAMP, TIMESTAMPTZ or Unix seconds (integer or float)",
    "keyword": "a string",
    "text": "a string",
    "proto": "a protocol name (string) or an integer protocol number",
    "integer": "a number",
    "counter": "a number",
    "labels": "list<string> of k=v, struct{labels: list<string>} or map<string,string>",
    "domains": "list<string> or a comma-separated string",
    "policies": (
        "list<string> of policy hits or a struct of enforced_policies, pending_policies, "
        "transit_policies, all_policies lists"
    ),
}

# One step of a plan: the view column, the fragment section and the input column it reads
# (None when the input column is absent and the documented default applies).
Step = tuple[str, str, str | None]
Plan = tuple[Step, ...]

_ABSENT = {"VARCHAR": "absent_text", "INTEGER": "absent_integer", "VARCHAR[]": "absent_list"}
_INTS = {"tinyint", "smallint", "integer", "bigint", "hugeint"} | {
    "utinyint",
    "usmallint",
    "uinteger",
    "ubigint",
    "uhugeint",
}
_FLOATS = {"float", "double", "decimal"}
_NAIVE_TS = {"timestamp", "timestamp_s", "timestamp_ms", "timestamp_ns"}
_HIT_FIELDS = ("enforced_policies", "pending_policies", "transit_policies", "all_policies")


class WrongType(Exception):
    """A column whose Parquet type is not one of the accepted encodings."""

    def __init__(self, column: str, found: str) -> None:
        kind = REQUIRED.get(column) or OPTIONAL[column]
        super().__init__(f"column {column!r} has type {found}, expected {EXPECTED[kind]}")
        self.column = column
        self.found = found


def sections() -> dict[str, str]:
    """The fragments of sql/flows_normalise.sql by section name."""
    return sql.sections("flows_normalise")


def _children(ty: DuckDBPyType) -> dict[str, str]:
    return {name: str(child) for name, child in ty.children}


def _is_text_list(ty: DuckDBPyType | str) -> bool:
    return str(ty) == "VARCHAR[]"


def _choose(column: str, ty: DuckDBPyType) -> list[tuple[str, str]]:
    """(view column, section) for a present column; raises WrongType."""
    kind = REQUIRED.get(column) or OPTIONAL[column]
    tid = ty.id
    numeric = tid in _INTS or tid in _FLOATS
    if kind == "time":
        if tid in _NAIVE_TS:
            return [(column, "time_timestamp")]
        if tid == "timestamp with time zone":
            return [(column, "time_timestamptz")]
        if tid in _INTS:
            return [(column, "time_epoch_int")]
        if tid in _FLOATS:
            return [(column, "time_epoch_float")]
    elif kind in ("keyword", "text") and tid == "varchar":
        return [(column, "text_lower" if kind == "keyword" else "text")]
    elif kind == "proto" and (tid == "varchar" or tid in _INTS):
        return [(column, "proto_text" if tid == "varchar" else "proto_number")]
    elif kind == "integer" and numeric:
        return [(column, "port" if column == "dest_port" else "integer")]
    elif kind == "counter" and numeric:
        return [(column, "count_one" if column == "num_flows" else "count_zero")]
    elif kind == "labels":
        if _is_text_list(ty):
            return [(column, "labels_list")]
        if tid == "struct" and _is_text_list(_children(ty).get("labels", "")):
            return [(column, "labels_struct")]
        if tid == "map" and list(_children(ty).values()) == ["VARCHAR", "VARCHAR"]:
            return [(column, "labels_map")]
    elif kind == "domains" and (_is_text_list(ty) or tid == "varchar"):
        return [(column, "domains_list" if tid == "list" else "domains_text")]
    elif kind == "policies":
        return _choose_policies(column, ty)
    raise WrongType(column, str(ty))


def _choose_policies(column: str, ty: DuckDBPyType) -> list[tuple[str, str]]:
    if _is_text_list(ty):
        return [("enforced_policies", "hits_list"), ("pending_policies", "absent_list")]
    fields = _children(ty) if ty.id == "struct" else {}
    hits = {name: kind for name, kind in fields.items() if name in _HIT_FIELDS}
    if not hits or not all(_is_text_list(kind) for kind in hits.values()):
        raise WrongType(column, str(ty))
    if "enforced_policies" in hits:
        enforced = "hits_enforced_or_all" if "all_policies" in hits else "hits_enforced"
    else:
        enforced = "hits_all" if "all_policies" in hits else "absent_list"
    pending = "hits_pending" if "pending_policies" in hits else "absent_list"
    return [("enforced_policies", enforced), ("pending_policies", pending)]


def _absent(column: str) -> list[tuple[str, str]]:
    if column == "policies":
        return [("enforced_policies", "absent_list"), ("pending_policies", "absent_list")]
    if column == "num_flows":
        return [(column, "absent_one")]
    if OPTIONAL[column] == "counter":
        return [(column, "absent_zero")]
    return [(column, _ABSENT[dict(FLOWS_SCHEMA)[column]])]


def plan(types: Mapping[str, DuckDBPyType]) -> Plan:
    """The plan for one file, from its column types; every required column must be present.

    An all-null column (Parquet type NULL) counts as absent when optional, wrong when required.
    """
    steps: dict[str, Step] = {}
    for column in (*REQUIRED, *OPTIONAL):
        ty = types.get(column)
        present = ty is not None and ty.id != "null"
        if ty is not None and not present and column in REQUIRED:
            raise WrongType(column, "NULL (every value is null)")
        chosen = _choose(column, ty) if ty is not None and present else _absent(column)
        for out, section in chosen:
            uses_input = not section.startswith("absent_")
            steps[out] = (out, section, column if uses_input else None)
    steps["rows"] = ("rows", "one_row", None)
    return tuple(steps[name] for name, _ in FLOWS_SCHEMA)


def fragment(section: str, column: str | None) -> str:
    """The SQL text of one fragment with `{col}` bound to the quoted input column.

    Only identifiers from the fixed contract above are substituted, never data or paths.
    """
    text = sections()[section]
    return text if column is None else text.replace("{col}", f'"{column}"')


def projection(steps: Plan) -> list[duckdb.Expression]:
    """The per-row select list for a plan: each fragment bound to its input column, `rows` 1."""
    return [duckdb.SQLExpression(fragment(s, c)).alias(out) for out, s, c in steps]


@dataclass(frozen=True)
class Grouping:
    """A plan as a pre-aggregation: per-row select, GROUP BY, then the normalising select.

    rows: the per-row select list over the raw file: the raw key columns (IPs of non-`net`
    endpoints nulled), start_time/end_time and the counters normalised, and `hour`. keys: the
    GROUP BY columns of `rows`. measures: the aggregate select list (keys, min start_time, max
    end_time, counter sums, `rows` = count). view: the select list over the groups giving
    FLOWS_SCHEMA, the key fragments applied once per group.
    """

    rows: tuple[duckdb.Expression, ...]
    keys: tuple[str, ...]
    measures: tuple[duckdb.Expression, ...]
    view: tuple[duckdb.Expression, ...]


# The columns state_activity.sql reads: the hourly view binds only these.
HOURLY_COLUMNS = frozenset(
    {"start_time", "end_time", "reporter", "source_type", "dest_type", "source_namespace",
     "dest_namespace", "num_flows", "rows"}
)  # fmt: skip

# The columns state_edges.sql reads: the run's and replay's view binds only these. A raw
# column no query reads is not merely carried: as a GROUP BY key it splits groups and widens
# every row of the hash table (a distinct over 20M raw keys: 21.8 s with `host` and
# `dest_service_port`, 12.3 s without).
EDGE_COLUMNS = frozenset(
    {"start_time", "end_time", "reporter", "action", "source_type", "source_namespace",
     "source_name_aggr", "source_ip", "source_labels", "dest_type", "dest_namespace",
     "dest_name_aggr", "dest_ip", "dest_labels", "dest_port", "proto",
     "dest_service_namespace", "dest_service_name", "dest_service_port_num", "dest_domains",
     "enforced_policies", "pending_policies", "num_flows", "bytes_in", "bytes_out",
     "packets_in", "packets_out", "rows"}
)  # fmt: skip


def bound_columns(grain: str, columns: frozenset[str] | None) -> frozenset[str] | None:
    """The view columns a grouping at `grain` keeps: HOURLY_COLUMNS per hour, else `columns`
    (None: all)."""
    return HOURLY_COLUMNS if grain == "hour" else columns


def view_schema(columns: frozenset[str] | None = None) -> tuple[tuple[str, str], ...]:
    """FLOWS_SCHEMA, or the part of it naming `columns` (in FLOWS_SCHEMA's order)."""
    return FLOWS_SCHEMA if columns is None else tuple(c for c in FLOWS_SCHEMA if c[0] in columns)


def _kept(steps: Plan, grain: str, columns: frozenset[str] | None) -> Plan:
    """The steps of the view columns a grouping at `grain` keeps (bound_columns)."""
    if grain not in ("day", "hour"):
        raise ValueError(f"grain must be day or hour, not {grain!r}")
    columns = bound_columns(grain, columns)
    if columns is None:
        return steps
    # The window filters raw rows on both times (sources.py), the view counts `rows`.
    if missing := {_FIRST, _LAST, "rows"} - columns:
        raise ValueError(f"a grouping needs the view columns {sorted(missing)}")
    return tuple(step for step in steps if step[0] in columns)


def nested_keys(
    steps: Plan, grain: str = "day", columns: frozenset[str] | None = None
) -> tuple[str, ...]:
    """The raw key columns of `grouping(steps, grain, columns)` that hold lists, structs or
    maps (labels, domains, policies), sorted: the ones worth grouping by hash (`hashed`)."""
    kept = _kept(steps, grain, columns)
    return tuple(sorted({c for _, _, c in kept if c is not None and OPTIONAL.get(c) in _NESTED}))


def hash_key(column: str) -> str:
    """The name of the 64-bit hash of raw `column` in a grouping by hash (never a raw name)."""
    return f"__hash_{column}"


def grouping(
    steps: Plan,
    grain: str = "day",
    columns: frozenset[str] | None = None,
    hashed: frozenset[str] = frozenset(),
) -> Grouping:
    """The pre-aggregated form of `projection(steps)`: the same view rows merged per raw key
    and UTC `grain` ("day" or "hour") of start_time. Exact for every measure sql/ computes over
    the view at that grain or coarser (min, max, sums, distinct days, raw rows as sum(rows)),
    because each fragment is a function of raw values. Only the view columns in `columns`
    are kept (all when None; HOURLY_COLUMNS with grain "hour": the hourly activity needs few,
    and grouping every key per hour multiplies the groups by the hours an edge is seen in).

    hashed: raw key columns (of `nested_keys`) grouped on their hash (`hash_key`) instead of
    their value; the view then reads the raw column from a join the caller adds between
    `measures` and `view`, on a lookup of each hash to its one value (pregroup.py)."""
    steps = _kept(steps, grain, columns)
    if stray := hashed - set(nested_keys(steps)):
        raise ValueError(f"only nested key columns can be hashed, not {sorted(stray)}")
    by_out = {out: (section, column) for out, section, column in steps}
    rows: dict[str, str] = {}
    measures: dict[str, str] = {}
    view: list[duckdb.Expression] = []
    for out, section, column in steps:
        if out in (_FIRST, _LAST):
            rows[out] = fragment(section, column)
            measures[out] = fragment("group_first" if out == _FIRST else "group_last", out)
            view.append(duckdb.ColumnExpression(out))
        elif out in COUNTERS:
            rows[out] = fragment(section, column)
            measures[out] = fragment("group_sum", out)
            view.append(duckdb.ColumnExpression(out))
        elif out == "rows":
            measures[out] = fragment("group_rows", None)
            view.append(duckdb.ColumnExpression(out))
        else:
            if column is not None and column in _NET_TYPE:
                kind = fragment(*by_out[_NET_TYPE[column]])
                rows[column] = fragment("row_net_ip", column).replace("{type}", f"({kind})")
            elif column in hashed:
                rows[hash_key(column)] = fragment("row_hash", column)
            elif column is not None:
                rows[column] = f'"{column}"'
            view.append(duckdb.SQLExpression(fragment(section, column)).alias(out))
    keys = tuple(c for c in rows if c not in measures)
    rows["grain"] = fragment(f"row_{grain}", None).replace("{col}", f"({rows[_FIRST]})")
    select = [duckdb.SQLExpression(text).alias(name) for name, text in rows.items()]
    aggregates = [duckdb.ColumnExpression(k) for k in keys]
    aggregates += [duckdb.SQLExpression(text).alias(name) for name, text in measures.items()]
    return Grouping(tuple(select), (*keys, "grain"), tuple(aggregates), tuple(view))

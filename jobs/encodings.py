"""The flow-log column contract and the SQL fragment that normalises each accepted encoding.

Calico writers disagree on physical types (times as TIMESTAMP or Unix seconds, labels as a
list, a struct or a map, policies as a list or a struct). Rather than casting row by row, we
look at the Parquet type DuckDB reports for each column of each file and pick one fixed
expression fragment from `sql/flows_normalise.sql` for it. The chosen fragments form a *plan*;
files with the same plan are read together and projected once, so normalisation stays a
vectorised DuckDB projection however large the input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Literal

import duckdb
from duckdb.sqltypes import DuckDBPyType

from flowfence import sql

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
)

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
_SECTION = re.compile(r"^-- section: ([a-z_]+)\s*$")


class WrongType(Exception):
    """A column whose Parquet type is not one of the accepted encodings."""

    def __init__(self, column: str, found: str) -> None:
        kind = REQUIRED.get(column) or OPTIONAL[column]
        super().__init__(f"column {column!r} has type {found}, expected {EXPECTED[kind]}")
        self.column = column
        self.found = found


@cache
def sections() -> dict[str, str]:
    """The fragments of sql/flows_normalise.sql by section name, comments stripped."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in sql.load("flows_normalise").text.splitlines():
        marker = _SECTION.match(line)
        if marker:
            current = found.setdefault(marker.group(1), [])
        elif current is not None and not line.lstrip().startswith("--"):
            current.append(line)
    return {name: "\n".join(body).strip() for name, body in found.items()}


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
        return [(column, "integer")]
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
    return tuple(steps[name] for name, _ in FLOWS_SCHEMA)


def projection(steps: Plan) -> list[duckdb.Expression]:
    """The select list for a plan: each fragment with `{col}` bound to its input column.

    Only identifiers from the fixed contract above are substituted, never data or paths.
    """
    fragments = sections()
    exprs = []
    for out, section, column in steps:
        text = fragments[section]
        if column is not None:
            text = text.replace("{col}", f'"{column}"')
        exprs.append(duckdb.SQLExpression(text).alias(out))
    return exprs

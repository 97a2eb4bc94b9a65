"""The DuckDB fast path of `flowfence ingest` for Calico Enterprise flow-log files.

Parsing JSON line by line in Python (ingest_enterprise.py) costs tens of microseconds a row.
For a whole file in the shape Felix writes, DuckDB's `read_json` with every column read as
JSON and checked in SQL (sql/ingest_enterprise_fast.sql) does the same job an order of
magnitude faster, streaming, in one COPY into staging.

The fast path is all or nothing per file and accepts a strict subset of what the line parser
accepts (no `_source` hits, labels only as `{labels: [...]}`, integers only as JSON integers,
...), producing the same values. Any line outside that subset, or any malformed line, makes
the COPY fail; the caller then discards the staging and parses the file line by line, which
counts and reports malformed lines. Only fixed column names are put into the SQL text: the
file, the output directory and the file-name pattern are bound parameters.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import duckdb

from flowfence.core import sql
from flowfence.ingest.rows import NAMES
from flowfence.ingest.store import ID_LENGTH, literal_glob

_TEXT = {
    "source_namespace",
    "source_name_aggr",
    "source_ip",
    "dest_namespace",
    "dest_name_aggr",
    "dest_ip",
    "dest_service_namespace",
    "dest_service_name",
    "dest_service_port",
    "host",
}
_REQUIRED_TEXT = {"source_type", "dest_type", "action", "reporter"}
_EPOCH = {"start_time", "end_time"}
_LABELS = {"source_labels", "dest_labels"}
# Input columns read from each line; every one as JSON, checked by the fragments.
INPUT_COLUMNS = (*(n for n in NAMES if n not in ("enforced_policies", "pending_policies")),
                 "policies", "_source")  # fmt: skip


def sections() -> dict[str, str]:
    return sql.sections("ingest_enterprise_fast")


def _fill(section: str, col: str, json: str | None = None) -> str:
    return sections()[section].replace("{json}", json or f'"{col}"').replace("{col}", f'"{col}"')


def _hits(field: str) -> str:
    return _fill("string_list", "policies", f"json_extract(\"policies\", '$.{field}')")


def _holds(condition: str) -> str:
    return f"(CASE WHEN {condition} THEN true ELSE error('fast path: unexpected shape') END)"


def _expression(name: str) -> str:
    if name in _EPOCH:
        return _fill("epoch", name)
    if name in _REQUIRED_TEXT:
        return _fill("required_text", name)
    if name in _TEXT:
        return _fill("text", name)
    if name in _LABELS:
        return _fill("string_list", name, f"json_extract(\"{name}\", '$.labels')")
    if name == "dest_domains":
        return _fill("string_list", name)
    if name == "proto":
        return _fill("proto", name)
    if name == "enforced_policies":  # the deprecated all_policies when it is missing
        return f"coalesce({_hits('enforced_policies')}, {_hits('all_policies')})"
    if name == "pending_policies":
        return _hits("pending_policies")
    return _fill("integer", name)


@cache
def copy_statement() -> str:
    """The whole COPY with the projection and checks filled in (fixed identifiers only)."""
    projection = []
    for name in NAMES:
        expression = _expression(name)
        if name == "enforced_policies":
            expression = (
                f"struct_pack(enforced_policies := {expression}, "
                f"pending_policies := {_expression('pending_policies')})"
            )
            name = "policies"
        elif name == "pending_policies":
            continue
        projection.append(f'{expression} AS "{name}"')
    transit = _hits("transit_policies")
    checks = [
        _holds('"_source" IS NULL'),  # search hits go through the line parser
        _holds(_fill("labels_object", "source_labels")),
        _holds(_fill("labels_object", "dest_labels")),
        _holds(_fill("policies_object", "policies")),
        # not stored, but the line parser refuses a malformed one; never false
        f"({transit} IS NULL OR len({transit}) >= 0)",
    ]
    return (
        sections()["copy"]
        .replace("{projection}", ",\n".join(projection))
        .replace("{checks}", "\n AND ".join(checks))
    )


def copy_enterprise(
    con: duckdb.DuckDBPyConnection, file: Path, *, compressed: bool, staging: Path, sha256: str
) -> int:
    """COPY the whole file into `staging`; the row count. duckdb.Error when the file is not
    fast-path material (the caller falls back to the line parser)."""
    params = {
        "file": literal_glob(file),
        "columns": {name: "JSON" for name in INPUT_COLUMNS},
        "compression": "gzip" if compressed else "none",
        "out": str(staging),
        "pattern": f"ingest-{sha256[:ID_LENGTH]}-0_{{i}}",
    }
    found = con.execute(copy_statement(), params).fetchall()
    return int(found[0][0]) if found else 0

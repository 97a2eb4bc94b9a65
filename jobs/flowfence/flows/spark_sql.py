"""The DuckDB SQL in `sql/` translated to Spark SQL at run time, and Spark types read as DuckDB's.

The Spark engine runs the same `sql/state_edges.sql` and `sql/flows_normalise.sql` fragments the
DuckDB engine runs: sqlglot translates them (DuckDB -> Spark dialect) when the engine starts, so
there is no second copy of the queries to drift. Two things sqlglot cannot do alone are fixed
here: functions it does not know (kept verbatim, which Spark would reject at run time) are mapped
by `_SPARK_FUNCTIONS` or refused loudly, and every view column gets a final CAST to the type in
`encodings.FLOWS_SCHEMA`, so both engines hand the aggregation the same types.

The encoding of each column is chosen by the same `encodings.plan` as the DuckDB engine: the
Spark schema is spelled as DuckDB type names first (`duckdb_type`).

pyspark and sqlglot come with the `spark` extra: they are imported in the functions that use
them, so this module (and spark_engine.py) imports without them.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import duckdb
from duckdb.sqltypes import DuckDBPyType

from flowfence.core import sql
from flowfence.flows import edges, encodings

if TYPE_CHECKING:
    from pyspark.sql import types as T
    from sqlglot import exp

# DuckDB functions sqlglot 30 parses as anonymous (and would pass through unchanged), with the
# Spark function of the same meaning. Any other unknown function is refused, not guessed.
_SPARK_FUNCTIONS: dict[str, str] = {
    "epoch_us": "unix_micros",  # TIMESTAMP WITH TIME ZONE -> microseconds since the epoch
    "map_entries": "map_entries",  # MAP -> list of {key, value} structs, same field names
}


@cache
def _scalars() -> dict[type[T.DataType], str]:
    from pyspark.sql import types as T

    return {
        T.StringType: "VARCHAR",
        T.VarcharType: "VARCHAR",
        T.CharType: "VARCHAR",
        T.BooleanType: "BOOLEAN",
        T.ByteType: "TINYINT",
        T.ShortType: "SMALLINT",
        T.IntegerType: "INTEGER",
        T.LongType: "BIGINT",
        T.FloatType: "FLOAT",
        T.DoubleType: "DOUBLE",
        T.DateType: "DATE",
        T.BinaryType: "BLOB",
        T.NullType: "NULL",
        # Spark reads Parquet timestamps adjusted to UTC as TIMESTAMP (an instant) and the others
        # as TIMESTAMP_NTZ (a wall-clock time), which is what DuckDB calls them too.
        T.TimestampType: "TIMESTAMP WITH TIME ZONE",
        T.TimestampNTZType: "TIMESTAMP",
    }


def _fix(node: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        name = str(node.this).lower()
        if name not in _SPARK_FUNCTIONS:
            raise ValueError(f"no Spark translation for DuckDB function {name}()")
        return exp.Anonymous(this=_SPARK_FUNCTIONS[name], expressions=node.expressions)
    return node


def translate(text: str) -> str:
    """One DuckDB statement or expression as Spark SQL; `$name` parameters become `:name`."""
    import sqlglot
    from sqlglot.errors import ErrorLevel

    tree = sqlglot.parse_one(text, read="duckdb").transform(_fix)
    return tree.sql(dialect="spark", unsupported_level=ErrorLevel.RAISE)


@cache
def query(name: str) -> str:
    """`sql/<name>.sql` in Spark SQL; it reads the temporary view `flows`."""
    return translate(sql.load(name).text)


def params(name: str) -> frozenset[str]:
    return sql.load(name).params


def edges_query() -> str:
    return query(edges.EDGE_QUERY)


def edges_params() -> frozenset[str]:
    return sql.load(edges.EDGE_QUERY).params


def projection(steps: encodings.Plan) -> list[str]:
    """The Spark select list for a plan: each fragment, cast to its `flows` type, aliased.

    The same fragments as `encodings.projection`; `{col}` is bound only to identifiers from the
    fixed contract in encodings.py, never to data or paths.
    """
    fragments = encodings.sections()
    types = dict(encodings.FLOWS_SCHEMA)
    exprs = []
    for out, section, column in steps:
        text = fragments[section]
        if column is not None:
            text = text.replace("{col}", f'"{column}"')
        exprs.append(translate(f'CAST(({text}) AS {types[out]}) AS "{out}"'))
    return exprs


def duckdb_type(dtype: T.DataType) -> DuckDBPyType:
    """A Spark column type as the DuckDB type that the same Parquet column reads as.

    Types with no DuckDB counterpart here come back as BLOB, which no encoding accepts, so
    `encodings.plan` rejects them as it rejects a BLOB column.
    """
    return duckdb.sqltype(_type_name(dtype))


def _type_name(dtype: T.DataType) -> str:
    from pyspark.sql import types as T

    if isinstance(dtype, T.DecimalType):
        return f"DECIMAL({dtype.precision}, {dtype.scale})"
    if isinstance(dtype, T.ArrayType):
        return f"{_type_name(dtype.elementType)}[]"
    if isinstance(dtype, T.MapType):
        return f"MAP({_type_name(dtype.keyType)}, {_type_name(dtype.valueType)})"
    if isinstance(dtype, T.StructType):
        fields = ", ".join(f"{_quote(f.name)} {_type_name(f.dataType)}" for f in dtype.fields)
        return f"STRUCT({fields})" if fields else "BLOB"
    return _scalars().get(type(dtype), "BLOB")


def _quote(name: str) -> str:
    # Struct field names come from the file: quoted, so any name is one identifier.
    return '"' + name.replace('"', '""') + '"'

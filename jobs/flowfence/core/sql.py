"""Loads the queries in `sql/*.sql` by name and runs them with bound parameters.

Every query lives in its own file with a header comment saying what it takes and returns.
Values never reach SQL text: parameters use DuckDB's `$name` placeholders and are bound by
the driver. The parameters a query declares are found by scanning its text (outside comments
and string literals) and checked against what the caller passes, so a typo fails loudly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_STRIP = re.compile(r"--[^\n]*|'(?:[^']|'')*'", re.MULTILINE)


def sql_dir() -> Path:
    """Where the .sql files are: inside the installed package, or at the checkout root."""
    package = Path(__file__).resolve().parents[1]  # flowfence/
    # Installed: flowfence/sql inside the wheel. Checkout: sql/ at the repository root.
    for candidate in (package / "sql", package.parents[1] / "sql"):
        if candidate.is_dir() and any(candidate.glob("*.sql")):
            return candidate
    raise FileNotFoundError(f"no sql/ directory in or beside {package}")


@dataclass(frozen=True)
class Query:
    name: str
    text: str
    params: frozenset[str]
    doc: str

    def check(self, given: dict[str, Any]) -> None:
        missing = self.params - given.keys()
        extra = given.keys() - self.params
        if missing or extra:
            raise TypeError(
                f"query {self.name!r}: missing parameters {sorted(missing)}, "
                f"unexpected {sorted(extra)}"
            )


@cache
def load(name: str) -> Query:
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"bad query name {name!r}")
    path = sql_dir() / f"{name}.sql"
    text = path.read_text(encoding="utf-8")
    doc = "\n".join(line[2:].strip() for line in text.splitlines() if line.startswith("--")).strip()
    params = frozenset(_PARAM.findall(_STRIP.sub("", text)))
    return Query(name=name, text=text, params=params, doc=doc)


_SECTION = re.compile(r"^-- section: ([a-z_]+)\s*$")


@cache
def sections(name: str) -> dict[str, str]:
    """The fragments of a sectioned file (`-- section: <name>` markers), comments stripped.

    Some files hold SQL fragments chosen at run time (per Parquet type, per input shape) rather
    than one query; the fragments are fixed text of ours, never values.
    """
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in load(name).text.splitlines():
        marker = _SECTION.match(line)
        if marker:
            current = found.setdefault(marker.group(1), [])
        elif current is not None and not line.lstrip().startswith("--"):
            current.append(line)
    return {section: "\n".join(body).strip() for section, body in found.items()}


def names() -> list[str]:
    return sorted(p.stem for p in sql_dir().glob("*.sql"))


def relation(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """Run query `name` and return the relation (call `.pl()`, `.arrow()` or `.fetchall()`)."""
    query = load(name)
    query.check(params)
    return con.sql(query.text, params=params or None)


def execute(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> None:
    """Run a statement that returns nothing of interest (CREATE, COPY)."""
    query = load(name)
    query.check(params)
    con.execute(query.text, params or None)

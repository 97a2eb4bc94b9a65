"""A selector as a Polars expression over a frame of label maps, one row per map.

The frame holds one String column per label key, named `prefix + key`, null where the map has
no such key; the expression is, row by row, what `Selector.matches` says of that map
(selector_ast.py `compile_node`, node for node). Each leaf is made non-null, so `!`, `&&` and
`||` need no three-valued logic: an absent key is false for `==`, `in`, `has` and the substring
operators and true for `!=` and `not in`, as in Calico. A key no column names is absent
everywhere. This lets one policy set's thousands of selectors run over thousands of label
maps in Polars instead of one Python call per pair (vector_eval.py).
"""

from __future__ import annotations

from collections.abc import Collection

import polars as pl

from flowfence.calico.selector import NAMESPACE_LABEL, Selector
from flowfence.calico.selector_ast import (
    All,
    And,
    Compare,
    Global,
    Has,
    InSet,
    Node,
    Not,
    Or,
    ValueOp,
)


def to_expr(selector: Selector, prefix: str, columns: Collection[str]) -> pl.Expr:
    """`selector.matches` over the label columns `prefix + key` among `columns`."""
    return _node(selector.root, prefix, columns)


def _label(key: str, prefix: str, columns: Collection[str]) -> pl.Expr | None:
    """The label's column, None when no map has the key (every leaf is then a constant)."""
    name = prefix + key
    return pl.col(name) if name in columns else None


def _node(node: Node, prefix: str, columns: Collection[str]) -> pl.Expr:
    match node:
        case All():
            return pl.lit(True)
        case Global():
            label = _label(NAMESPACE_LABEL, prefix, columns)
            return pl.lit(True) if label is None else label.is_null()
        case Has(key):
            label = _label(key, prefix, columns)
            return pl.lit(False) if label is None else label.is_not_null()
        case Compare(key, op, value):
            label = _label(key, prefix, columns)
            if label is None:
                return pl.lit(op is ValueOp.NE)
            return _compare(label, op, value)
        case InSet(key, values, negated):
            label = _label(key, prefix, columns)
            if label is None:
                return pl.lit(negated)
            members = pl.Series([list(values)], dtype=pl.List(pl.String))
            inside = label.is_in(members).fill_null(False)
            return ~inside if negated else inside
        case Not(operand):
            return ~_node(operand, prefix, columns)
        case And(operands):
            return pl.all_horizontal(_node(o, prefix, columns) for o in operands)
        case Or(operands):
            return pl.any_horizontal(_node(o, prefix, columns) for o in operands)


def _compare(label: pl.Expr, op: ValueOp, value: str) -> pl.Expr:
    if op is ValueOp.EQ:
        return (label == value).fill_null(False)
    if op is ValueOp.NE:
        return (label != value).fill_null(True)
    if op is ValueOp.CONTAINS:
        return label.str.contains(value, literal=True).fill_null(False)
    if op is ValueOp.STARTS_WITH:
        return label.str.starts_with(value).fill_null(False)
    return label.str.ends_with(value).fill_null(False)

"""The selector syntax tree: immutable nodes, canonical text and compiled matchers.

The node set mirrors libcalico-go `lib/selector/parser/ast.go`; the text a tree renders to
follows Calico's `String()` (double quotes unless the value holds one, `&&`/`||` groups always
parenthesised, `!` written straight before its operand, set members sorted and de-duplicated),
so a selector we print reads the way `calicoctl` would print it. The one departure: a negation
of a negation renders as `!(!x)`, because Calico's parser folds `!!x` to `x` and the tree would
not survive a round trip otherwise.

Matching compiles the tree once into nested closures (no `eval`, no text), because one selector
is matched against many label maps.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

# Calico's tokenizer: a label key is a run of these ASCII characters, at most 512 of them
# (tokenizer.go `identifierChar`, `MaxLabelLength`). Kubernetes prefix/name syntax is a subset.
KEY_CHARS = frozenset(string.ascii_letters + string.digits + "_./-")
MAX_KEY_LENGTH = 512

# Namespaced endpoints carry this label; Calico rewrites `global()` in a namespaceSelector to
# `!has(projectcalico.org/namespace)` (updateprocessors/rules.go `getEndpointSelector`).
NAMESPACE_LABEL = "projectcalico.org/namespace"

Labels: TypeAlias = Mapping[str, str]
Matcher: TypeAlias = Callable[[Labels], bool]


class ValueOp(StrEnum):
    """Operators that compare one label's value with one string literal."""

    EQ = "=="
    NE = "!="
    CONTAINS = "contains"
    STARTS_WITH = "starts with"
    ENDS_WITH = "ends with"


def check_key(key: str) -> None:
    """Raise ValueError unless `key` is a label key Calico's tokenizer would read whole."""
    if not key or len(key) > MAX_KEY_LENGTH or not KEY_CHARS.issuperset(key):
        raise ValueError(f"not a Calico label key: {key!r}")


def check_value(value: str) -> None:
    """Raise ValueError if `value` cannot be written as a Calico string literal."""
    if "'" in value and '"' in value:
        raise ValueError(f"a selector value cannot hold both quote characters: {value!r}")


@dataclass(frozen=True, slots=True)
class All:
    """`all()` and the empty selector: matches everything."""


@dataclass(frozen=True, slots=True)
class Global:
    """`global()`: matches entities without a namespace (see module docstring of selector)."""


@dataclass(frozen=True, slots=True)
class Has:
    key: str

    def __post_init__(self) -> None:
        check_key(self.key)


@dataclass(frozen=True, slots=True)
class Compare:
    key: str
    op: ValueOp
    value: str

    def __post_init__(self) -> None:
        check_key(self.key)
        check_value(self.value)


@dataclass(frozen=True, slots=True)
class InSet:
    """`key in {...}` or, when `negated`, `key not in {...}`; values kept sorted and unique."""

    key: str
    values: tuple[str, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        check_key(self.key)
        for value in self.values:
            check_value(value)
        # Calico stores the set sorted and de-duplicated (stringset.go); code-point order on
        # str equals Go's byte order on the UTF-8 encoding.
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]

    def __post_init__(self) -> None:
        if len(self.operands) < 2:
            raise ValueError("And needs at least two operands")


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]

    def __post_init__(self) -> None:
        if len(self.operands) < 2:
            raise ValueError("Or needs at least two operands")


Node: TypeAlias = All | Global | Has | Compare | InSet | Not | And | Or


def canonical_quote(value: str) -> str:
    """Calico's own choice (ast.go `appendLabelOpAndQuotedString`): `"` unless the value has one."""
    quote = "'" if '"' in value else '"'
    return f"{quote}{value}{quote}"


def render(node: Node) -> str:
    parts: list[str] = []
    _collect(node, parts)
    return "".join(parts)


def _collect(node: Node, parts: list[str]) -> None:
    match node:
        case All():
            parts.append("all()")
        case Global():
            parts.append("global()")
        case Has(key):
            parts.append(f"has({key})")
        case Compare(key, op, value):
            parts.append(f"{key} {op.value} {canonical_quote(value)}")
        case InSet(key, values, negated):
            members = ", ".join(canonical_quote(v) for v in values)
            parts.append(f"{key} {'not in' if negated else 'in'} {{{members}}}")
        case Not(operand):
            parts.append("!")
            if isinstance(operand, Not):
                parts.append("(")
                _collect(operand, parts)
                parts.append(")")
            else:
                _collect(operand, parts)
        case And(operands) | Or(operands):
            joiner = " && " if isinstance(node, And) else " || "
            parts.append("(")
            for i, operand in enumerate(operands):
                if i:
                    parts.append(joiner)
                _collect(operand, parts)
            parts.append(")")


def uses_global(node: Node) -> bool:
    match node:
        case Global():
            return True
        case Not(operand):
            return uses_global(operand)
        case And(operands) | Or(operands):
            return any(uses_global(o) for o in operands)
        case _:
            return False


def _always(labels: Labels) -> bool:
    return True


def compile_node(node: Node) -> Matcher:
    """Turn a tree into one closure; semantics follow ast.go `Evaluate` for each node."""
    match node:
        case All():
            return _always
        case Global():
            return lambda labels: NAMESPACE_LABEL not in labels
        case Has(key):
            return lambda labels: key in labels
        case Compare(key, op, value):
            return _compile_compare(key, op, value)
        case InSet(key, values, negated):
            members = frozenset(values)
            if negated:
                # An absent label is "not in" any set (LabelNotInSetNode).
                return lambda labels: labels.get(key) not in members
            return lambda labels: labels.get(key) in members
        case Not(operand):
            inner = compile_node(operand)
            return lambda labels: not inner(labels)
        case And(operands):
            return _compile_and(tuple(compile_node(o) for o in operands))
        case Or(operands):
            return _compile_or(tuple(compile_node(o) for o in operands))


def _compile_compare(key: str, op: ValueOp, value: str) -> Matcher:
    if op is ValueOp.EQ:
        return lambda labels: labels.get(key) == value
    if op is ValueOp.NE:
        # An absent label is "not equal" (LabelNeValueNode).
        return lambda labels: labels.get(key) != value

    # The substring operators are false on an absent label (one closure per operator so the
    # operator is not re-dispatched on every match).
    if op is ValueOp.CONTAINS:

        def contains(labels: Labels) -> bool:
            actual = labels.get(key)
            return actual is not None and value in actual

        return contains
    if op is ValueOp.STARTS_WITH:

        def starts_with(labels: Labels) -> bool:
            actual = labels.get(key)
            return actual is not None and actual.startswith(value)

        return starts_with

    def ends_with(labels: Labels) -> bool:
        actual = labels.get(key)
        return actual is not None and actual.endswith(value)

    return ends_with


def _compile_and(matchers: tuple[Matcher, ...]) -> Matcher:
    if len(matchers) == 2:
        first, second = matchers
        return lambda labels: first(labels) and second(labels)

    def every(labels: Labels) -> bool:
        return all(matcher(labels) for matcher in matchers)

    return every


def _compile_or(matchers: tuple[Matcher, ...]) -> Matcher:
    if len(matchers) == 2:
        first, second = matchers
        return lambda labels: first(labels) or second(labels)

    def some(labels: Labels) -> bool:
        return any(matcher(labels) for matcher in matchers)

    return some

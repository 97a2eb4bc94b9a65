"""Calico label selectors: parse once, match many.

`parse(text)` accepts exactly what libcalico-go's selector parser accepts (see
`selector_parse`) and returns an immutable, hashable `Selector` whose `matches(labels)` follows
Calico's evaluation node for node:

- `k == 'v'`, `k in {...}`, `has(k)`, `k contains/starts with/ends with 'x'` are false when `k`
  is absent; `k != 'v'` and `k not in {...}` are true when `k` is absent;
- `all()` and the empty selector match everything;
- `global()`: Calico's selector library evaluates it as true, and the policy compiler
  (libcalico-go `updateprocessors/rules.go`, `getEndpointSelector`) rewrites it inside a
  rule's namespaceSelector to `!has(projectcalico.org/namespace)`, so that it selects only
  non-namespaced entities (host endpoints, GlobalNetworkSets). `matches` implements that
  rewritten meaning: `global()` is true exactly when the labels have no
  `projectcalico.org/namespace` key. Callers matching a namespaceSelector must therefore pass
  the *entity's* labels including `projectcalico.org/namespace` for namespaced entities;
  `uses_global` tells them when that matters. (The same rewrite turns `all()` in a
  namespaceSelector into `has(projectcalico.org/namespace)`; that context is the caller's to
  apply, `matches` keeps `all()` as "everything".)

`str(selector)` is the canonical text (Calico's `String()` form), which parses back to an equal
`Selector`. `quote(value)` is for code that writes selectors: it prefers single quotes, the
style of the policy recommendation engine's manifests (`projectcalico.org/name == 'ns'`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from flowfence.calico.selector_ast import (
    NAMESPACE_LABEL,
    Matcher,
    Node,
    compile_node,
    render,
    uses_global,
)
from flowfence.calico.selector_parse import SelectorError, parse_node

__all__ = ["NAMESPACE_LABEL", "Selector", "SelectorError", "parse", "quote"]


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector. Equality is structural (same tree), hashing uses the canonical text."""

    root: Node
    _text: str = field(init=False, repr=False, compare=False)
    _match: Matcher = field(init=False, repr=False, compare=False)
    _uses_global: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_text", render(self.root))
        object.__setattr__(self, "_match", compile_node(self.root))
        object.__setattr__(self, "_uses_global", uses_global(self.root))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self._match(labels)

    @property
    def uses_global(self) -> bool:
        """True when `global()` appears anywhere in the selector."""
        return self._uses_global

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Selector({self._text!r})"

    def __reduce__(self) -> tuple[type[Selector], tuple[Node]]:
        # The compiled closure cannot be pickled; rebuild it from the tree.
        return (Selector, (self.root,))

    def __hash__(self) -> int:
        # Equal trees render to equal text, so this agrees with the structural __eq__.
        return hash(self._text)


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Selector:
    """Parse a Calico selector; raises SelectorError (a PolicyError) with position and caret."""
    return Selector(parse_node(text))


def quote(value: str) -> str:
    """A Calico string literal for `value`: `'value'`, or `"value"` if it holds a `'`.

    Calico strings have no escape, so a value holding both quote characters cannot be written
    and raises ValueError.
    """
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"a selector value cannot hold both ' and \": {value!r}")

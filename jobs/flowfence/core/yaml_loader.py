"""The one YAML loader every reader uses: safe, and libyaml's C parser where PyYAML has it
(several times faster on a policy tree; the pure-Python one gives the same documents).

`load_all` also bounds what a small file can make its reader do. An alias shares a node
instead of copying it, so loading stays cheap, but every reader that walks the documents (a
`kind: List` of aliased Lists, for one) walks each sharing again: ten levels of ten aliases are a
1 KB file and ten billion items. Each document's node graph is measured before it is built:
aliases may add at most `ALIAS_BUDGET` nodes to what is written out, an alias may not contain
itself, and nesting stops at `MAX_DEPTH` levels. A file without aliases never hits the budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ALIAS_BUDGET = 10_000  # nodes aliases may add; a policy file has a few anchors, if any
MAX_DEPTH = 100  # levels of nesting; a Calico policy document has about a dozen


class Refused(yaml.YAMLError):
    """A document whose aliases or nesting would make its readers do unbounded work."""


def load_all(text: str | bytes) -> list[Any]:
    """Every document of `text`, as `yaml.load_all` with `LOADER` gives them; `Refused` when a
    document is beyond the bounds above."""
    return list(iter_all(text))


def iter_all(text: str | bytes) -> Iterator[Any]:
    """The documents of `text` one by one (those before a refused one are still given)."""
    loader = LOADER(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # check_node said there is one; for the type checker
                break
            _measure(node)
            yield loader.construct_document(node)
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _measure(root: yaml.Node) -> None:
    """Refuse `root` when expanding its aliases exceeds the budget, an alias contains itself,
    or it nests deeper than MAX_DEPTH. Linear in the distinct nodes: each is measured once."""
    distinct: set[int] = set()
    pending = [root]
    while pending:  # distinct nodes first: the budget is on top of what is written out
        node = pending.pop()
        if id(node) not in distinct:
            distinct.add(id(node))
            pending.extend(_children(node))
    limit = len(distinct) + ALIAS_BUDGET
    measured: dict[int, tuple[int, int]] = {}  # id -> (expanded nodes, levels below)
    open_nodes: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in open_nodes:
            raise Refused("an alias refers to a node that contains it")
        known = measured.get(key)
        if known is None:
            if depth > MAX_DEPTH:
                raise Refused(f"nested deeper than {MAX_DEPTH} levels")
            open_nodes.add(key)
            size, height = 1, 0
            for child in _children(node):
                child_size, child_height = measure(child, depth + 1)
                size, height = size + child_size, max(height, child_height + 1)
                if size > limit:
                    raise Refused(f"aliases expand it beyond {ALIAS_BUDGET} extra nodes")
            open_nodes.discard(key)
            known = measured[key] = (size, height)
        if depth + known[1] > MAX_DEPTH:
            raise Refused(f"nested deeper than {MAX_DEPTH} levels")
        return known

    measure(root, 0)

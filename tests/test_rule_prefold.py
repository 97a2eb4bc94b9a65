"""The namespace fold rule_groups does in Polars for crowded directions gives exactly the
rules, notes and flags the Python fold (fold.py) gives for the same edges."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rules import BASE, SCHEMA, ingress, to_ns

from flowfence.learn import rule_groups, rules

PEERS = [f"peer-{i:03d}" for i in range(120)] + ["a-much-longer-peer-namespace-name-" + "x" * 20]


_REAL = rule_groups.crowded_namespace_folds


def _python_only(
    groups: pl.DataFrame, _max: int, one: int, budget: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """No direction counts as crowded: every fold is left to fold.py."""
    return _REAL(groups, 10**9, one, budget)


@st.composite
def crowds(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for peer in draw(st.lists(st.sampled_from(PEERS), min_size=1, max_size=90, unique=True)):
        for _ in range(draw(st.integers(1, 2))):
            port = draw(st.sampled_from((80, 443, 8080, 8081, None)))
            proto = draw(st.sampled_from(("tcp", "tcp", "udp", "icmp")))
            port = None if proto == "icmp" else port
            counts = {"flows": draw(st.integers(1, 9)), "bytes": draw(st.integers(0, 999))}
            if draw(st.booleans()):
                out.append(ingress(source_type="wep", source_namespace=peer,
                                   source_name_aggr="x-*", dest_port=port, proto=proto,
                                   **counts))  # fmt: skip
            else:
                out.append(to_ns(peer, port, proto, **counts))
    return out


@settings(max_examples=120, deadline=None)
@given(crowds(), st.sampled_from((3, 10, 20)))
def test_polars_fold_equals_python_fold(rows: list[dict[str, Any]], max_rules: int) -> None:
    frame = pl.DataFrame(rows, schema=SCHEMA)
    conf = replace(BASE, max_rules=max_rules)
    fast = rules.build(frame, ["shop"], conf)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rule_groups, "crowded_namespace_folds", _python_only)
        slow = rules.build(frame, ["shop"], conf)
    assert fast == slow


def test_a_crowded_direction_is_folded_in_polars() -> None:
    rows = [to_ns(p, 443 if i % 3 else 80) for i, p in enumerate(PEERS)]
    rows += [ingress(source_type="wep", source_namespace=p, source_name_aggr="x-*", dest_port=8080)
             for p in PEERS[:30]]  # fmt: skip
    frame = pl.DataFrame(rows, schema=SCHEMA)
    conf = replace(BASE, max_rules=5)
    remote = rule_groups.remote(frame, conf)
    groups = rule_groups.groups(remote, frame)
    folds, rest = rule_groups.crowded_namespace_folds(groups, 5, 999, 932)
    assert folds.height >= 3 and rest.filter(pl.col("scope") == "Namespace").height == 0
    fast = rules.build(frame, ["shop"], conf)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rule_groups, "crowded_namespace_folds", _python_only)
        slow = rules.build(frame, ["shop"], conf)
    assert fast == slow
    assert len(fast["shop"].egress) <= 5 and fast["shop"].folded

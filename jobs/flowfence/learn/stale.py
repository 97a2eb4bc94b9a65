"""Stale rules, which Calico never removes: rules whose evidence is older than the stale period.

Staleness is measured against the data, not the clock: the cutoff is the newest flow in the
state minus `staleRulePeriod`, so a rule is stale only when at least that much flow-log data
was observed after its last sighting (a pause in the flow logs never makes rules stale).

The rules are built twice: from all the learnable evidence and from the evidence seen since
the cutoff. Every rule of the first set missing from the second is reported: `fully_stale`
when the rule itself was last seen before the cutoff (it disappears), otherwise it narrows (a
port or peer folded into it was last seen before the cutoff). `--prune-stale` keeps the second
set and deletes the stale evidence from the state, so exactly what the report proposes is
what pruning does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import polars as pl

from flowfence.learn.model import Evidence, Recommendation, Rule

_EPOCH = datetime(1970, 1, 1)
_NO_EVIDENCE = Evidence(_EPOCH, _EPOCH, 0, 0, 0, 0)


@dataclass(frozen=True)
class StaleRule:
    namespace: str
    rule: Rule
    fully_stale: bool


def cutoff(edges: pl.DataFrame, period: timedelta) -> datetime | None:
    """Newest flow in `edges` minus `period`; None without edges."""
    if edges.height == 0:
        return None
    newest = edges.get_column("last_seen").max()
    assert isinstance(newest, datetime)
    return newest - period


def stale_evidence(learnable: pl.DataFrame, before: datetime | None) -> pl.DataFrame:
    """The learnable edges last seen before the cutoff."""
    if before is None:
        return learnable.clear()
    return learnable.filter(pl.col("last_seen") < before)


def _identity(rule: Rule) -> Rule:
    return replace(rule, evidence=_NO_EVIDENCE)


def _diff(
    full: Mapping[str, Recommendation], fresh: Mapping[str, Recommendation], before: datetime
) -> Iterator[StaleRule]:
    for ns in sorted(full):
        kept = {_identity(r) for r in fresh[ns].rules} if ns in fresh else set()
        for rule in full[ns].rules:
            if _identity(rule) not in kept:
                yield StaleRule(ns, rule, rule.evidence.last_seen < before)


def compare(
    full: Mapping[str, Recommendation], fresh: Mapping[str, Recommendation], before: datetime
) -> tuple[StaleRule, ...]:
    """The rules of `full` that building from fresh evidence only drops or narrows."""
    return tuple(_diff(full, fresh, before))

"""The review of one run: decisions applied to the run's documents (apply_decisions.py), drift
of every frozen policy over this run's learnable edges, and the change set against the files
before the run. Pure: the caller reads the previous files and the decisions, turns the
documents to YAML between the two steps, and writes what comes back.

Order matters and is fixed by the run (run/pipeline.py): documents -> apply decisions (accept
freezes, enforce converts, dismiss drops; namespaces enforced in the cluster stop learning) ->
YAML -> `review`: drift of each frozen policy, then the changes against the previous files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from flowfence.calico.policies import DEFAULT_TIER, PolicySet
from flowfence.calico.policy_docs import policy_set
from flowfence.config.settings import Settings
from flowfence.learn import rules
from flowfence.learn.model import Recommendation, Rule
from flowfence.render.manifests import PolicyDoc
from flowfence.report.change_set import ChangeSet
from flowfence.review import changes, drift
from flowfence.review.apply_decisions import CALICO_API, Applied

TIER = "policies/tier.yaml"


@dataclass(frozen=True)
class Review:
    files: dict[str, bytes]  # policies/... -> bytes, after the decisions
    applied: Applied
    drift: dict[str, tuple[Rule, ...]]  # frozen namespaces -> learned rules they do not cover
    changes: ChangeSet
    in_cluster: tuple[str, ...]  # namespaces enforced in the cluster: learning stopped

    @property
    def documents(self) -> Mapping[str, PolicyDoc]:
        """The documents behind `files`."""
        return self.applied.documents


def _drift(
    namespace: str,
    base: PolicySet | Sequence[PolicyDoc],
    tier: str,
    learnable: pl.DataFrame,
    settings: Settings,
    labels: Mapping[str, Mapping[str, str]],
) -> tuple[Rule, ...]:
    mine = learnable.filter(pl.col("namespace") == namespace)
    if not mine.height:
        return ()
    model = base if isinstance(base, PolicySet) else policy_set(base)
    left = drift.uncovered(model, mine, tier, namespaces=labels)
    if not left.height:
        return ()
    return rules.build(left, [namespace], settings)[namespace].rules


def review(
    recs: Mapping[str, Recommendation],
    applied: Applied,
    files: Mapping[str, bytes],
    settings: Settings,
    *,
    previous: Mapping[str, bytes],
    learnable: pl.DataFrame,
    in_cluster: Mapping[str, PolicySet] | None = None,
    labels: Mapping[str, Mapping[str, str]] | None = None,
) -> Review:
    """Drift and changes of a run whose decisions were applied (`applied`, its documents turned
    into `files`), against `previous`, the files on disk before the run. `in_cluster` are the
    namespaces enforced in the cluster with their policies (drift.enforced_in_cluster)."""
    docs = applied.documents
    tier_doc = docs.get(TIER)
    cluster = in_cluster or {}
    found: dict[str, tuple[Rule, ...]] = {}
    for ns, doc in sorted(applied.frozen.items()):
        calico = doc.get("apiVersion") == CALICO_API
        base = [d for d in (tier_doc if calico else None, doc) if d is not None]
        tier = settings.tier_name if calico else DEFAULT_TIER
        found[ns] = _drift(ns, base, tier, learnable, settings, labels or {})
    stopped = tuple(ns for ns in sorted(cluster) if ns not in applied.applied)
    for ns in stopped:
        found[ns] = _drift(ns, cluster[ns], settings.tier_name, learnable, settings, labels or {})
    changed = {rel: docs[rel] for rel, data in files.items() if previous.get(rel) != data}
    change_set = changes.compute(
        previous, files, docs=docs, index=changes.index_rules(changed, recs)
    )
    drifted = {k: v for k, v in found.items() if v}
    return Review(dict(files), applied, drifted, change_set, stopped)

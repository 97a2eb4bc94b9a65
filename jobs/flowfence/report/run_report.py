"""The run report: computed once as a model, then rendered as JSON (here), Markdown
(report/markdown.py) and a terminal summary (cli/run.py).

JSON keys are stable (scripts and golden tests depend on them). Per namespace: its status and
the status of the previous run, its stagedAction and decision, how its manifest changed (the
rules added and removed, each with its evidence), its stale rules and, for an accepted or
enforced policy, its drift (learned rules the frozen policy does not cover). Run level: the
plan (manifests added, changed, removed), the excluded and rejected counts and the tallies
behind them, lapsed decisions, and the risks of frozen policies (`frozen_risks`: a hand edit
not frozen or kept, a frozen policy that allows more than the recommendation or is outside
our tier; review/frozen_risks.py). The YAML diff is in the model for report.md, not in the JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from flowfence.calico.names import Rejection


@dataclass(frozen=True)
class Evidence:
    first_seen: str
    last_seen: str
    flows: int
    bytes: int
    days: int
    edges: int


@dataclass(frozen=True)
class RuleEntry:
    direction: str
    action: str
    scope: str
    peer: str
    protocol: str
    ports: tuple[str, ...]
    evidence: Evidence | None = None  # None: a removed rule whose evidence is no longer known
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class NamespaceEntry:
    namespace: str
    name: str
    status: str
    lastUpdated: str  # mirrors Calico's annotation name
    stagedAction: str  # mirrors Calico's field name
    manifest: str | None
    rules: tuple[RuleEntry, ...]
    notes: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    rhythm: str | None = None  # "daily" / "weekly" (state/rhythm.py)
    last_flow: str | None = None
    previous_status: str | None = None  # the status the previous run recorded; None: new
    decision: dict[str, str] | None = None  # decision, reason, author, [decided, expires]
    change: str = "none"  # of its manifest: created, updated, removed, unchanged, none
    kind: str | None = None  # StagedNetworkPolicy, NetworkPolicy; None without a manifest
    previous_kind: str | None = None
    previous_stagedAction: str | None = None  # of the previous manifest
    added_rules: tuple[RuleEntry, ...] = ()
    removed_rules: tuple[RuleEntry, ...] = ()
    stale_rules: tuple[RuleEntry, ...] = ()  # proposed for removal (removed with --prune-stale)
    drift: tuple[RuleEntry, ...] = ()  # learned, not covered by the accepted/enforced policy
    diff: str = field(default="", repr=False)  # unified YAML diff (report.md only)


@dataclass(frozen=True)
class StaleRule:
    """A rule with evidence older than the stale period: it goes (`fully_stale`) or narrows
    when stale evidence is pruned; `pruned` when this run did (`--prune-stale`)."""

    namespace: str
    fully_stale: bool
    pruned: bool
    rule: RuleEntry


@dataclass(frozen=True)
class Exclusion:
    reason: str
    policy: str
    edges: int
    flows: int
    bytes: int


@dataclass(frozen=True)
class RunReport:
    now: str
    window: dict[str, str]
    flavor: str
    tier: str
    input: dict[str, int]
    namespaces: tuple[NamespaceEntry, ...]
    excluded_namespaces: tuple[dict[str, str], ...]
    excluded: tuple[Exclusion, ...]
    # Learned, but worth a look: a deciding tier of unknown order, a malformed trace.
    flagged: tuple[Exclusion, ...]
    rejected: tuple[Rejection, ...]  # what screening dropped (calico/names.py), per reason
    warnings: tuple[str, ...] = field(default=())
    stale_rules: tuple[StaleRule, ...] = field(default=())
    # The learning state after this run (state/tables.py): what it holds, not what this run
    # happened to read, so identical state and inputs give identical reports.
    incremental: dict[str, Any] = field(default_factory=dict)
    # The change (review.annotate): add, change, remove, unchanged, rules_added, rules_removed,
    # drifted, files_changed.
    plan: dict[str, int] = field(default_factory=dict)
    other_files: tuple[str, ...] = ()  # tier.yaml, kustomization.yaml when they changed
    lapsed_decisions: tuple[dict[str, str], ...] = ()
    # Both: every policy lists Ingress and Egress; WithRules: only directions with rules.
    policy_types: str = "Both"
    # Per frozen namespace: {namespace, risk (edited, kept-edits, allows-more, outside-tier),
    # detail, items (texts from the policy)}.
    frozen_risks: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for ns in data["namespaces"]:
            del ns["diff"]
        data["counts"] = {
            "excluded": {
                "edges": sum(e.edges for e in self.excluded),
                "flows": sum(e.flows for e in self.excluded),
            },
            "rejected": {
                "edges": sum(r.edges for r in self.rejected),
                "flows": sum(r.flows for r in self.rejected),
            },
        }
        data["summary"] = summary_counts(self)
        return data


def summary_counts(report: RunReport) -> dict[str, int]:
    rules = [r for ns in report.namespaces for r in ns.rules]
    return {
        "namespaces": sum(1 for ns in report.namespaces if ns.manifest),
        "no_data": sum(1 for ns in report.namespaces if ns.status == "NoData"),
        "egress_rules": sum(1 for r in rules if r.direction == "egress"),
        "ingress_rules": sum(1 for r in rules if r.direction == "ingress"),
        "excluded_flows": sum(e.flows for e in report.excluded),
        "rejected_edges": sum(r.edges for r in report.rejected),
        "rejected_flows": sum(r.flows for r in report.rejected),
        "stale_rules": sum(1 for r in report.stale_rules if not r.pruned),
        "pruned_rules": sum(1 for r in report.stale_rules if r.pruned),
    }


# The report files every run writes beside policies/: report.html for people, the JSON for
# scripts (run/pipeline.py writes them, run/quiet.py digests them).
FILES = ("report.json", "report.md", "report.html")


def to_json(report: RunReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=True) + "\n"

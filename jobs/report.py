"""The run summary: computed once as a model, then rendered as JSON and Markdown.

JSON keys are stable (scripts and golden tests depend on them); Markdown is written to be
pasted as a pull-request comment and is capped below GitHub's 65,536-character limit with a
pointer to the JSON when it would be longer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

MARKDOWN_LIMIT = 65_000


def rfc3339(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


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
    evidence: Evidence
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
    rhythm: str | None = None  # "daily" / "weekly" (schedule.py)
    last_flow: str | None = None


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
class Rejection:
    reason: str
    edges: int
    flows: int
    samples: tuple[str, ...]


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
    rejected: tuple[Rejection, ...]
    warnings: tuple[str, ...] = field(default=())
    stale_rules: tuple[StaleRule, ...] = field(default=())
    # The learning state after this run (jobs/state.py): what it holds, not what this run
    # happened to read, so identical state and inputs give identical reports.
    incremental: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
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


def to_json(report: RunReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=True) + "\n"


def _cell(text: str) -> str:
    # Untrusted strings (samples of rejected rows) must not break the Markdown table.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\n", " ")


def _rule_line(rule: RuleEntry) -> str:
    ports = ",".join(rule.ports) if rule.ports else "any"
    flags = f" ⚠ {', '.join(rule.flags)}" if rule.flags else ""
    ev = rule.evidence
    return (
        f"| {rule.direction} | {rule.scope} | `{_cell(rule.peer)}` | {rule.protocol} | {ports} "
        f"| {ev.flows} | {ev.bytes} | {ev.first_seen} | {ev.last_seen} |{flags}"
    )


def _tally_table(title: str, rows: tuple[Exclusion, ...]) -> list[str]:
    if not rows:
        return []
    return [
        f"### {title}",
        "",
        "| reason | policy | edges | flows | bytes |",
        "|---|---|---|---|---|",
        *(
            f"| {e.reason} | `{_cell(e.policy)}` | {e.edges} | {e.flows} | {e.bytes} |"
            for e in rows
        ),
        "",
    ]


def _stale_table(rows: tuple[StaleRule, ...]) -> list[str]:
    if not rows:
        return []
    out = [
        "### Stale rules",
        "",
        "| namespace | direction | scope | peer | protocol | ports | last seen | change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rule = row.rule
        ports = ",".join(rule.ports) if rule.ports else "any"
        change = "removed" if row.fully_stale else "narrowed"
        change = change if row.pruned else f"would be {change} (--prune-stale)"
        out.append(
            f"| `{row.namespace}` | {rule.direction} | {rule.scope} | `{_cell(rule.peer)}` "
            f"| {rule.protocol} | {ports} | {rule.evidence.last_seen} | {change} |"
        )
    return [*out, ""]


def to_markdown(report: RunReport) -> str:
    counts = summary_counts(report)
    lines = [
        "## flowfence recommendations",
        "",
        f"**Plan:** {counts['namespaces']} namespace policies, "
        f"{counts['egress_rules']} egress and {counts['ingress_rules']} ingress rules; "
        f"{counts['no_data']} namespaces without data; "
        f"{counts['excluded_flows']} flows left to higher tiers; "
        f"{counts['rejected_flows']} flows rejected as invalid input.",
        "",
        f"Window {report.window['since']} .. {report.window['until']}, flavor "
        f"`{report.flavor}`, tier `{report.tier}`.",
        "",
    ]
    risks = [f"- `{ns.namespace}`: {flag}" for ns in report.namespaces for flag in ns.flags] + [
        f"- `{ns.namespace}` {r.direction} {r.scope}: {flag}"
        for ns in report.namespaces
        for r in ns.rules
        for flag in r.flags
    ]
    if risks:
        lines += ["### Risks", "", *risks, ""]
    body: list[str] = []
    for ns in report.namespaces:
        if not ns.rules:
            body += [f"- `{ns.namespace}`: {ns.status}", ""]
            continue
        body += [
            "<details>",
            f"<summary><code>{ns.namespace}</code>: {ns.status}, {len(ns.rules)} rules</summary>",
            "",
            "| direction | scope | peer | protocol | ports | flows | bytes | first seen "
            "| last seen |",
            "|---|---|---|---|---|---|---|---|---|",
            *(_rule_line(r) for r in ns.rules),
            "",
            *(f"- note: {n}" for n in ns.notes),
            "</details>",
            "",
        ]
    tail = _tally_table("Left to higher tiers", report.excluded) + _tally_table(
        "Learned, but check", report.flagged
    )
    if report.rejected:
        tail += [
            "### Rejected input",
            "",
            "| reason | edges | flows | samples |",
            "|---|---|---|---|",
        ]
        tail += [
            f"| {r.reason} | {r.edges} | {r.flows} | {_cell(', '.join(r.samples))} |"
            for r in report.rejected
        ]
        tail.append("")
    tail += _stale_table(report.stale_rules)
    text = "\n".join(lines + body + tail)
    if len(text) > MARKDOWN_LIMIT:
        note = "\n_Report truncated; the full report is in `report.json`._\n"
        text = "\n".join(lines + tail)[: MARKDOWN_LIMIT - len(note)] + note
    return text

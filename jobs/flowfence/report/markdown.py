"""The Markdown change report (`DIR/report.md`), written to be pasted as a pull-request comment.

Layout, most important first: a terraform-plan-like summary line; risk call-outs (a
namespace's first policy, which turns it default-deny once enforced; a policy that becomes
enforced; a rule that widens access, such as a public fallback; rules removed from an
enforced policy; drift on accepted policies; a hand edit of a frozen policy, a frozen policy
that allows more than the recommendation or sits outside our tier); then one collapsible
`<details>` section per namespace that needs a look, with its rule changes, their evidence,
drift, stale rules and the YAML diff; then what higher tiers decided and the rejected input.

GitHub refuses comments over 65,536 characters, so the text is kept under `LIMIT`: first the
YAML diffs go, then whole sections from the end, each time with a pointer to `report.json`.
Nothing is ever cut in the middle of a table, a fence or a `<details>` block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from flowfence.report import markdown_escape, run_report
from flowfence.report.change_set import RuleView
from flowfence.report.markdown_model import Namespace, Report, from_report

LIMIT = 65_000
FIRST_POLICY_LINES = 3  # more first policies than this share one risk line
JSON_NAME = "report.json"


# Untrusted text: `cell` inside inline code, `prose` anywhere else (markdown_escape.py).
cell = markdown_escape.code
prose = markdown_escape.text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def summary_line(report: Report) -> str:
    counts = {"created": 0, "updated": 0, "removed": 0}
    status_only = 0
    for ns in report.namespaces:
        c = ns.change
        if c is not None and c.change in counts:
            counts[c.change] += 1
            quiet = not (c.added_rules or c.removed_rules) and c.kind == c.previous_kind
            status_only += c.change == "updated" and quiet and ns.status_changed
    added = sum(len(ns.change.added_rules) for ns in report.namespaces if ns.change)
    removed = sum(len(ns.change.removed_rules) for ns in report.namespaces if ns.change)
    drift = sum(1 for ns in report.namespaces if ns.drift)
    drifted = f"; {_plural(drift, 'accepted policy')} drifted." if drift else "."
    if not any(counts.values()) and not report.other_files:
        return "**No changes.** The policies match what the flows need" + drifted
    only = f" ({status_only} only in status)" if status_only else ""
    return (
        f"**Plan:** {counts['created']} to add, {counts['updated']} to change{only}, "
        f"{counts['removed']} to remove; {added} rules added, {removed} removed{drifted}"
    )


def risks(report: Report) -> list[str]:
    lines: list[str] = []
    first = [ns for ns in report.namespaces if ns.change is not None and ns.change.first_policy]
    if len(first) > FIRST_POLICY_LINES:
        names = ", ".join(f"`{ns.namespace}`" for ns in first)
        lines.append(
            f"- **first policy** for {len(first)} namespaces ({names}): once enforced, each "
            "denies all traffic in the directions its policy lists that its rules do not allow."
        )
    for ns in report.namespaces:
        c, name = ns.change, f"`{ns.namespace}`"
        if c is not None and c.first_policy and len(first) <= FIRST_POLICY_LINES:
            directions = [d for d in ("egress", "ingress") if d not in ns.open_directions]
            lines.append(
                f"- **first policy** for {name} ({', '.join(directions) or 'no rules'}): once "
                "enforced, the namespace denies all traffic in these directions that its rules "
                "do not allow."
            )
        if c is not None and c.staged_action == "Set" and c.previous_staged_action != "Set":
            lines.append(
                f"- **moved to the policy board** {name} (stagedAction Set): its rules stay as "
                "reviewed; traffic they do not cover is reported as drift."
            )
        if c is not None and c.newly_enforced:
            lines.append(f"- **enforced** {name}: traffic its rules do not allow is now denied.")
        if c is not None and c.kind == "NetworkPolicy" and c.removed_rules:
            lines.append(
                f"- **rules removed from an enforced policy** in {name}: "
                f"{_plural(len(c.removed_rules), 'rule')}; that traffic will be denied."
            )
        for rule in c.widening if c is not None else ():
            lines.append(f"- **widens access** in {name}: {_rule_text(rule)} {rule.widening}.")
        for rule in c.cutting if c is not None else ():
            text = f"{_rule_text(rule)} {rule.cuts}"
            lines.append(f"- **may cut observed traffic** in {name}: {text}.")
        if ns.open_directions:
            why = (
                "traffic there went to or came from peers no rule can express (host "
                "endpoints, protocol 0), which isolating it would deny"
                if report.policy_types == "Both"
                else "policyTypes WithRules, as Calico's engine does"
            )
            lines.append(
                f"- **left open** {name}: no {' or '.join(ns.open_directions)} rules, so its "
                f"policy does not isolate that direction ({why}); anything may reach it there."
            )
        if ns.drift:
            lines.append(
                f"- **drift** in accepted {name}: {_plural(len(ns.drift), 'learned rule')} "
                "the accepted policy does not cover; that traffic would be denied once enforced."
            )
    lines += [_frozen_risk(r) for r in report.frozen_risks]
    return lines


FROZEN_RISK_TITLES = {
    "edited": "hand edit not frozen",
    "kept-edits": "hand edit kept",
    "allows-more": "frozen policy allows more than the recommendation",
    "outside-tier": "frozen policy outside flowfence's tier",
}


def _frozen_risk(risk: dict[str, Any]) -> str:
    title = FROZEN_RISK_TITLES.get(str(risk["risk"]), str(risk["risk"]))
    # The items come from a policy file someone may have edited: code spans only.
    items = "".join(f" `{cell(str(i))}`" for i in risk.get("items", ()))
    return f"- **{title}** in `{cell(str(risk['namespace']))}`: {risk['detail']}.{items}"


def _rule_text(rule: RuleView) -> str:
    ports = ",".join(rule.ports) or "any port"
    return f"{rule.direction} {rule.protocol} {ports} `{cell(rule.peer)}`"


def _rule_table(title: str, rules: Sequence[RuleView]) -> list[str]:
    if not rules:
        return []
    rows = [
        f"**{title}**",
        "",
        "| direction | scope | peer | protocol | ports | flows | bytes | days | first seen "
        "| last seen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rules:
        ev = r.evidence
        seen = (
            f"{ev.flows} | {ev.bytes} | {ev.days} | {ev.first_seen} | {ev.last_seen}"
            if ev is not None
            else "- | - | - | - | -"
        )
        flags = f" ⚠ {', '.join(r.flags)}" if r.flags else ""
        rows.append(
            f"| {r.direction} | {r.scope} | `{cell(r.peer)}`{flags} | {r.protocol} "
            f"| {','.join(r.ports) or 'any'} | {seen} |"
        )
    return [*rows, ""]


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def section(ns: Namespace, *, with_diff: bool = True) -> str:
    c = ns.change
    facts: list[str] = [c.change if c is not None else "no manifest"]
    if c is not None and (c.added_rules or c.removed_rules):
        facts.append(f"+{len(c.added_rules)} -{len(c.removed_rules)} rules")
    facts.append(f"{ns.status} (was {ns.previous_status})" if ns.status_changed else ns.status)
    facts.append(f"stagedAction {ns.staged_action}")
    if ns.drift:
        facts.append(f"{len(ns.drift)} drift")
    if ns.stale:
        facts.append(f"{len(ns.stale)} stale")
    lines = [
        "<details>",
        f"<summary><code>{ns.namespace}</code>: {', '.join(facts)}</summary>",
        "",
    ]
    if ns.decision:
        lines += [f"Decision: {prose(ns.decision)}", ""]
    if c is not None:
        lines += _rule_table("Added rules", c.added_rules)
        lines += _rule_table("Removed rules", c.removed_rules)
    lines += _rule_table("Drift: learned, not covered by the accepted rules", ns.drift)
    lines += [f"- note: {prose(n)}" for n in ns.notes]
    if ns.notes:
        lines.append("")
    if c is not None and c.change == "created":
        # The whole file would repeat the table above; the pull request shows the file.
        lines += [f"New file `{c.path}`.", ""]
    elif with_diff and c is not None and c.diff:
        fence = _fence(c.diff)
        lines += [f"{fence}diff", c.diff.rstrip("\n"), fence, ""]
    elif c is not None and c.diff:
        lines += [f"_YAML diff left out for length; see `{c.path}`._", ""]
    return "\n".join([*lines, "</details>", ""])


def _tally(title: str, rows: Sequence[run_report.Exclusion]) -> list[str]:
    if not rows:
        return []
    return [
        f"### {title}",
        "",
        "| reason | policy | edges | flows | bytes |",
        "|---|---|---|---|---|",
        *(
            f"| {prose(e.reason)} | `{cell(e.policy)}` | {e.edges} | {e.flows} | {e.bytes} |"
            for e in rows
        ),
        "",
    ]


def _stale(rows: Sequence[run_report.StaleRule]) -> list[str]:
    if not rows:
        return []
    out = [
        "### Stale rules",
        "",
        "Not seen for the stale period; `--prune-stale` removes them (or narrows a rule whose "
        "other evidence is recent).",
        "",
        "| namespace | direction | scope | peer | protocol | ports | last seen | change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rule, ev = row.rule, row.rule.evidence
        change = "removed" if row.fully_stale else "narrowed"
        change = change if row.pruned else f"would be {change}"
        out.append(
            f"| `{row.namespace}` | {rule.direction} | {rule.scope} | `{cell(rule.peer)}` "
            f"| {rule.protocol} | {','.join(rule.ports) or 'any'} "
            f"| {ev.last_seen if ev else '-'} | {change} |"
        )
    return [*out, ""]


def _tail(report: Report) -> list[str]:
    lines = _tally("Left to higher tiers", report.excluded)
    lines += _tally("Learned, but check", report.flagged)
    if report.rejected:
        lines += [
            "### Rejected input",
            "",
            "| reason | edges | flows | samples |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {prose(r.reason)} | {r.edges} | {r.flows} | {prose(', '.join(r.samples))} |"
            for r in report.rejected
        ]
        lines.append("")
    if report.warnings:
        lines += ["### Warnings", "", *(f"- {prose(w)}" for w in report.warnings), ""]
    return lines


def _types_text(policy_types: str) -> str:
    if policy_types == "Both":
        return "every policy isolates ingress and egress (policyTypes `Both`)"
    return "policies isolate only directions with rules (policyTypes `WithRules`)"


def _head(report: Report) -> list[str]:
    lines = [
        "## flowfence plan",
        "",
        summary_line(report),
        "",
        f"Window {report.since} .. {report.until}, flavor `{report.flavor}`, "
        f"tier `{report.tier}`, {_types_text(report.policy_types)}. "
        f"Full detail in `{JSON_NAME}`.",
        "",
    ]
    found = risks(report)
    if found:
        lines += ["### Risks", "", *found, ""]
    if report.lapsed:
        lines += ["### Lapsed decisions", "", *(f"- {prose(x)}" for x in report.lapsed), ""]
    lines += _stale(report.stale)
    if report.other_files:
        lines += [f"Also changed: {', '.join(f'`{f}`' for f in report.other_files)}.", ""]
    return lines


def _quiet(report: Report) -> list[str]:
    names = [ns.namespace for ns in report.namespaces if not ns.needs_look]
    if not names:
        return []
    return [f"Unchanged ({len(names)}): {', '.join(f'`{n}`' for n in names)}.", ""]


def render(report: Report, limit: int = LIMIT) -> str:
    loud = [ns for ns in report.namespaces if ns.needs_look]
    head, tail = "\n".join(_head(report)), "\n".join(_quiet(report) + _tail(report))
    full = [section(ns) for ns in loud]
    text = "\n".join([head, *full, tail])
    if len(text) <= limit:
        return text
    short = [section(ns, with_diff=False) for ns in loud]
    note = f"\n_Report shortened to fit a comment; the full report is in `{JSON_NAME}`._\n"
    text = "\n".join([head, *short, tail]) + note
    if len(text) <= limit:
        return text
    # Keep whole sections from the top while they fit, then point at the JSON.
    kept: list[str] = []
    budget = limit - len(head) - 400
    for block in short:
        if sum(len(b) + 1 for b in kept) + len(block) + 1 > budget:
            break
        kept.append(block)
    left = len(short) - len(kept)
    note = (
        f"\n_{_plural(left, 'more namespace')} and the input tables left out to fit a comment; "
        f"the full report is in `{JSON_NAME}`._\n"
    )
    text = "\n".join([head, *kept]) + note
    if len(text) <= limit:
        return text
    # Even the risk list is too long (thousands of namespaces): keep whole lines of it.
    out: list[str] = []
    size = len(note)
    for line in head.split("\n"):
        if size + len(line) + 1 > limit:
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join(out) + note


def to_markdown(report: run_report.RunReport, limit: int = LIMIT) -> str:
    return render(from_report(report), limit)

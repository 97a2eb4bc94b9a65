"""Renders a ReplayReport as JSON and Markdown (the terminal table lives in cli/replay.py).

Both are deterministic: the report model is already sorted, timestamps are UTC ISO 8601 with
`Z`, and nothing depends on the clock.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flowfence.calico.evaluate import Endpoint
from flowfence.core.times import rfc3339
from flowfence.replay.audit import DeniedEdge, PolicyTally, ReplayReport
from flowfence.report import markdown_escape

SCHEMA_VERSION = 1


def endpoint_text(e: Endpoint) -> str:
    """`ns/name` for namespaced endpoints, the name for global ones, `pub 1.2.3.4` for nets."""
    name = e.name or "-"
    text = f"{e.namespace}/{name}" if e.namespace else name
    if e.ip:
        text = f"{text} {e.ip}"
    return f"{e.type}:{text}"


def port_text(d: DeniedEdge) -> str:
    proto = d.proto or "-"
    return f"{proto}/{d.dest_port}" if d.dest_port is not None else proto


def _time(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def _endpoint(e: Endpoint) -> dict[str, Any]:
    return {
        "type": e.type,
        "namespace": e.namespace,
        "name": e.name,
        "ip": e.ip,
        "labels": list(e.labels),
    }


def _tally(t: PolicyTally) -> dict[str, Any]:
    return {
        "tier": t.tier,
        "policy": t.policy,
        "end_of_tier": t.end_of_tier,
        "edges": t.edges,
        "allowed": {"flows": t.allowed_flows, "bytes": t.allowed_bytes},
        "denied": {"flows": t.denied_flows, "bytes": t.denied_bytes},
        "passed": {"flows": t.passed_flows, "bytes": t.passed_bytes},
    }


def _denied(d: DeniedEdge) -> dict[str, Any]:
    return {
        "direction": d.direction,
        "reporter": d.reporter,
        "source": _endpoint(d.source),
        "dest": _endpoint(d.dest),
        "dest_port": d.dest_port,
        "proto": d.proto,
        "dest_service": d.dest_service,
        "flows": d.flows,
        "bytes": d.bytes,
        "first_seen": _time(d.first_seen),
        "last_seen": _time(d.last_seen),
        "hit": d.hit,
        "trace": list(d.trace),
        "logged_policies": list(d.logged_policies),
        "possible": list(d.possible),
        "decided_by": d.decided_by,
    }


def to_dict(report: ReplayReport) -> dict[str, Any]:
    s = report.summary
    return {
        "schema_version": SCHEMA_VERSION,
        "tier": report.tier,
        "would_deny": report.would_deny,
        "summary": {
            "edges": s.edges,
            "allowed_edges": s.allowed_edges,
            "evaluated_edges": s.evaluated_edges,
            "skipped_edges": s.skipped_edges,
            "evaluated_flows": s.evaluated_flows,
            "evaluated_bytes": s.evaluated_bytes,
            "denied_edges": s.denied_edges,
            "denied_flows": s.denied_flows,
            "denied_bytes": s.denied_bytes,
            "undetermined_edges": s.undetermined_edges,
            "undetermined_flows": s.undetermined_flows,
            "undetermined_bytes": s.undetermined_bytes,
            "decided_earlier_edges": s.decided_earlier_edges,
            "decided_earlier_flows": s.decided_earlier_flows,
            "decided_earlier_bytes": s.decided_earlier_bytes,
        },
        "policies": [_tally(t) for t in report.policies],
        "denied": [_denied(d) for d in report.denied],
        "undetermined": [_denied(d) for d in report.undetermined],
        "decided_earlier": [_denied(d) for d in report.decided_earlier],
        "warnings": list(report.warnings),
    }


def to_json(report: ReplayReport) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"


def _cell(text: object) -> str:
    # Flow-log strings are untrusted: inert in the table (no markup, links or mentions).
    return markdown_escape.text(str(text))


def policy_label(t: PolicyTally) -> str:
    return f"{t.policy} (end of tier)" if t.end_of_tier else t.policy


def outcome_text(d: DeniedEdge) -> str:
    """What decides a listed edge: the denying hit, the earlier tier's logged hit, or the
    outcomes an undetermined edge's address class gets."""
    if d.decided_by is not None:
        return d.decided_by
    return d.hit or "undetermined: " + " or ".join(d.possible)


def sections(report: ReplayReport) -> tuple[tuple[str, str, tuple[DeniedEdge, ...]], ...]:
    """Section title, outcome column title and edges, per kind of listed edge."""
    return (
        ("Edges that would be denied", "denied by", report.denied),
        ("Edges undetermined (peer address not in the log)", "outcomes", report.undetermined),
        ("Edges decided by an earlier tier (not replayed)", "decided by", report.decided_earlier),
    )


def to_markdown(report: ReplayReport) -> str:
    s = report.summary
    scope = f" (tier `{report.tier}`)" if report.tier else ""
    lines = [
        f"# flowfence replay{scope}",
        "",
        f"- edges in the window: {s.edges} ({s.allowed_edges} allowed in the log)",
        f"- evaluated: {s.evaluated_edges} edges, {s.evaluated_flows} flows, "
        f"{s.evaluated_bytes} bytes; skipped (no policy point): {s.skipped_edges}",
        f"- would be denied: {s.denied_edges} edges, {s.denied_flows} flows, "
        f"{s.denied_bytes} bytes",
        f"- undetermined: {s.undetermined_edges} edges, {s.undetermined_flows} flows, "
        f"{s.undetermined_bytes} bytes",
        f"- decided by an earlier tier: {s.decided_earlier_edges} edges, "
        f"{s.decided_earlier_flows} flows, {s.decided_earlier_bytes} bytes",
        "",
        "## Policies",
        "",
        "| tier | policy | edges | allowed flows | allowed bytes | denied flows | denied bytes "
        "| passed flows | passed bytes |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for t in report.policies:
        lines.append(
            f"| {_cell(t.tier)} | {_cell(policy_label(t))} | {t.edges} | {t.allowed_flows} "
            f"| {t.allowed_bytes} | {t.denied_flows} | {t.denied_bytes} | {t.passed_flows} "
            f"| {t.passed_bytes} |"
        )
    for i, (title, column, edges) in enumerate(sections(report)):
        if i > 0 and not edges:  # the denials always get a section, the others when present
            continue
        lines += ["", f"## {title}", ""]
        if not edges:
            lines.append("None.")
            continue
        lines += [
            f"| direction | source | destination | port | flows | bytes | {column} |",
            "|---|---|---|---|--:|--:|---|",
        ]
        for d in edges:
            lines.append(
                f"| {d.direction} | {_cell(endpoint_text(d.source))} "
                f"| {_cell(endpoint_text(d.dest))} | {_cell(port_text(d))} | {d.flows} "
                f"| {d.bytes} | `{markdown_escape.code(outcome_text(d))}` |"
            )
    if report.warnings:
        lines += ["", "## Warnings", ""]
        lines += [f"- {_cell(w)}" for w in report.warnings]
    return "\n".join(lines) + "\n"

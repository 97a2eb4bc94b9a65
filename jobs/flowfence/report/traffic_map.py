"""The traffic map: namespace-to-namespace traffic as a matrix heatmap, from the run report.

A cell is a (source, destination) pair and its value the flows of the rules that pair
produced. Traffic between two namespaces shows twice in the rules (egress at the source,
ingress at the destination); the cell takes the larger side. Peers that are not namespaces
(network sets, domains, addresses) are grouped by their kind (`[Public]`, `[NetworkSet]`...).
Each cell links to the rules behind it: the source namespace's for traffic it sends, else the
destination's.

The chart is a Vega-Lite spec rendered to SVG here, with vl-convert (no browser, no
JavaScript in the page, no network), and inlined in the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import vl_convert

from flowfence.report import run_report

# vl-convert resolves links against the base URL of its data loader; the links here are all
# relative (an anchor or a path on the same server), so that prefix is taken off again.
_LOADER_BASE = "https://vega.github.io/vega-datasets/"
_HREF = re.compile(r'((?:xlink:)?href=")([^"]*)(")')
# Vega numbers gradients with a counter of the process; renumbered per picture, so that the same
# report gives the same bytes whatever was drawn before in the process.
_GRADIENT = re.compile(r"\bgradient_(\d+)\b")


@dataclass(frozen=True)
class Cell:
    source: str
    dest: str
    flows: int
    rules: int
    namespace: str  # the namespace whose rules the cell links to


def _peers(rule: run_report.RuleEntry) -> list[str]:
    if rule.scope == "Namespace" and rule.peer.startswith("namespace "):
        return rule.peer.removeprefix("namespace ").split(",")
    return [f"[{rule.scope}]"]


def cells(report: run_report.RunReport) -> tuple[Cell, ...]:
    """One cell per (source, destination) pair with rules, sorted."""
    sides: dict[tuple[str, str, str], tuple[int, int]] = {}
    for ns in report.namespaces:
        for rule in ns.rules:
            flows = rule.evidence.flows if rule.evidence is not None else 0
            for peer in _peers(rule):
                pair = (ns.namespace, peer) if rule.direction == "egress" else (peer, ns.namespace)
                key = (*pair, rule.direction)
                counts = sides.get(key, (0, 0))
                sides[key] = (counts[0] + flows, counts[1] + 1)
    found: dict[tuple[str, str], Cell] = {}
    for (source, dest, direction), (flows, rules) in sorted(sides.items()):
        owner = source if direction == "egress" else dest
        had = found.get((source, dest))
        if had is None or flows > had.flows:
            found[(source, dest)] = Cell(source, dest, flows, rules, owner)
    return tuple(found[k] for k in sorted(found))


def spec(found: tuple[Cell, ...], link: Callable[[str], str]) -> dict[str, object]:
    """The Vega-Lite heatmap of `found`; `link(namespace)` is where a cell points."""
    values = [
        {"source": c.source, "destination": c.dest, "flows": c.flows, "rules": c.rules,
         "href": link(c.namespace)}
        for c in found
    ]  # fmt: skip
    return {
        "data": {"values": values},
        "mark": {"type": "rect", "stroke": "white", "cursor": "pointer"},
        "width": {"step": 22},
        "height": {"step": 22},
        "encoding": {
            "y": {"field": "source", "type": "nominal", "title": "source (sends)"},
            "x": {
                "field": "destination",
                "type": "nominal",
                "title": "destination (receives)",
                "axis": {"orient": "top", "labelAngle": -45},
            },
            "color": {
                "field": "flows",
                "type": "quantitative",
                "scale": {"type": "log", "scheme": "blues"},
                "legend": {"title": "flows"},
            },
            "href": {"field": "href", "type": "nominal"},
            "tooltip": [
                {"field": "source"},
                {"field": "destination"},
                {"field": "flows", "type": "quantitative"},
                {"field": "rules", "type": "quantitative"},
            ],
        },
        "config": {"font": "sans-serif", "view": {"stroke": None}},
    }


def _relative(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2).removeprefix(_LOADER_BASE) + match.group(3)


def svg(report: run_report.RunReport, link: Callable[[str], str]) -> str | None:
    """The map as an SVG document, or None when no rule links two peers."""
    found = cells(report)
    if not found:
        return None
    text = _HREF.sub(_relative, vl_convert.vegalite_to_svg(spec(found, link), allowed_base_urls=[]))
    ids: dict[str, str] = {}
    return _GRADIENT.sub(
        lambda m: ids.setdefault(m.group(1), f"traffic-map-gradient-{len(ids)}"), text
    )

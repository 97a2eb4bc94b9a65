"""The traffic map: namespace-to-namespace traffic as a matrix heatmap, from the run report.

A cell is a (source, destination) pair and its value the flows of the rules that pair
produced. Traffic between two namespaces shows twice in the rules (egress at the source,
ingress at the destination); the cell takes the larger side. Peers that are not namespaces
(network sets, domains, addresses) are grouped by their kind (`[Public]`, `[NetworkSet]`...).
Each cell links to the rules behind it: the source namespace's for traffic it sends, else the
destination's.

A real cluster has hundreds of namespaces: a matrix of every pair would be tens of thousands of
cells (24 MB of SVG at 300 namespaces), unreadable and too big to commit each run. Each axis
shows the MAX_SIDE namespaces with the most flows on it; the rest fold into one `(N others)`
row or column, whose cells link to no single namespace's rules.

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


MAX_SIDE = 40  # namespaces shown per axis before the rest are folded


@dataclass(frozen=True)
class Cell:
    source: str
    dest: str
    flows: int
    rules: int
    namespace: str  # the namespace whose rules the cell links to; "" for a folded cell


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
    return _fold(tuple(found[k] for k in sorted(found)), MAX_SIDE)


def _kept(labels: dict[str, int], most: int) -> set[str]:
    """The labels of one axis to show: peer kinds always, then the namespaces with the most
    flows (ties by name), `most` in all counting the fold when there is one."""
    kinds = {label for label in labels if label.startswith("[")}
    names = sorted((n for n in labels if n not in kinds), key=lambda n: (-labels[n], n))
    if len(names) <= most:
        return kinds | set(names)
    return kinds | set(names[: most - 1])


def _fold(found: tuple[Cell, ...], most: int) -> tuple[Cell, ...]:
    sources: dict[str, int] = {}
    dests: dict[str, int] = {}
    for c in found:
        sources[c.source] = sources.get(c.source, 0) + c.flows
        dests[c.dest] = dests.get(c.dest, 0) + c.flows
    keep_sources, keep_dests = _kept(sources, most), _kept(dests, most)
    if len(keep_sources) == len(sources) and len(keep_dests) == len(dests):
        return found
    other_sources = f"({len(sources) - len(keep_sources)} others)"
    other_dests = f"({len(dests) - len(keep_dests)} others)"
    folded: dict[tuple[str, str], Cell] = {}
    for c in found:
        source = c.source if c.source in keep_sources else other_sources
        dest = c.dest if c.dest in keep_dests else other_dests
        had = folded.get((source, dest))
        if had is None:
            folded[(source, dest)] = Cell(source, dest, c.flows, c.rules, c.namespace)
            continue
        owner = had.namespace if had.namespace == c.namespace else ""
        folded[(source, dest)] = Cell(source, dest, had.flows + c.flows, had.rules + c.rules, owner)
    return tuple(folded[k] for k in sorted(folded))


def spec(found: tuple[Cell, ...], link: Callable[[str], str]) -> dict[str, object]:
    """The Vega-Lite heatmap of `found`; `link(namespace)` is where a cell points."""
    values = [
        {"source": c.source, "destination": c.dest, "flows": c.flows, "rules": c.rules,
         "href": link(c.namespace) if c.namespace else None}
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

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

The picture is an SVG drawn here by string building, inlined in the page: rows are sources,
columns destinations (labels on top, turned 45 degrees), one 22 px square per cell coloured by
its flows on a log scale from a light to a dark blue, a legend of those blues, a tooltip
(`<title>`) per cell and a link on each cell that has a namespace. We draw it ourselves rather
than with a charting library: a JavaScript engine (vl-convert's Deno/V8) booted in every run
cost half a second, and the bytes would change with each library upgrade, churning the
report.html that users commit. Here the same report gives the same bytes. Every string from the
report is XML-escaped; the SVG has no script, no event handler, no id and no external reference,
so it is safe inline under the page's Content-Security-Policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from flowfence.report import run_report

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


# The drawing, in px. Text is measured by an estimate per character (the SVG cannot ask the
# browser); generous for 10 px sans-serif, so labels are not cut off. Labels longer than
# LABEL_CHARS are shortened with an ellipsis, the whole name in their tooltip.
CELL = 22
FONT = 10
CHAR = 6.2
LABEL_CHARS = 30
TITLE_SPACE = 22  # an axis title and its gap
LEGEND_STEPS = 5
# The scale's blues, light to dark (close to Vega's "blues", which the map used before): two
# straight runs through a middle blue, which a single run from light to dark would grey out.
LIGHT = (207, 225, 242)
MIDDLE = (66, 146, 198)
DARK = (10, 74, 144)


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "\u2026"


def _width(text: str) -> int:
    return math.ceil(len(_label(text)) * CHAR)


def _blue(t: float) -> str:
    """The colour at `t` in 0..1 from LIGHT to DARK, as #rrggbb."""
    t = round(min(max(t, 0.0), 1.0), 6)  # a last-bit difference in log() moves no colour
    start, end, t = (LIGHT, MIDDLE, t * 2) if t <= 0.5 else (MIDDLE, DARK, t * 2 - 1)
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(start, end, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


@dataclass(frozen=True)
class _Scale:
    """Flows to a blue on a log scale over the flows drawn (0 flows drawn as 1)."""

    low: float
    high: float

    @classmethod
    def of(cls, found: tuple[Cell, ...]) -> _Scale:
        logs = [math.log(max(c.flows, 1)) for c in found]
        return cls(min(logs), max(logs))

    def t(self, flows: int) -> float:
        span = self.high - self.low
        return 0.0 if span == 0 else (math.log(max(flows, 1)) - self.low) / span

    def colour(self, flows: int) -> str:
        return _blue(self.t(flows))

    def steps(self) -> list[tuple[str, int]]:
        """The legend, most flows first: (colour, flows), a few values spread evenly over the
        scale, each drawn in the colour of a cell with that many flows."""
        values: list[int] = []
        for i in range(LEGEND_STEPS):
            flows = round(math.exp(self.high - (self.high - self.low) * i / (LEGEND_STEPS - 1)))
            if flows not in values:
                values.append(flows)
        return [(self.colour(flows), flows) for flows in values]


def _text(place: str, label: str) -> str:
    """A label placed by `place` (attributes); the whole text its tooltip when shortened."""
    shown = _label(label)
    tip = f"<title>{escape(label)}</title>" if shown != label else ""
    return f"<text {place}>{tip}{escape(shown)}</text>"


def _cell(c: Cell, x: int, y: int, fill: str, link: Callable[[str], str]) -> str:
    tip = f"source: {c.source}\ndestination: {c.dest}\nflows: {c.flows:,}\nrules: {c.rules:,}"
    rect = (
        f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}" stroke="white">'
        f"<title>{escape(tip)}</title></rect>"
    )
    if not c.namespace:
        return rect
    return f'<a href="{escape(link(c.namespace))}">{rect}</a>'


def draw(found: tuple[Cell, ...], link: Callable[[str], str]) -> str:
    """The SVG of `found` (not empty); `link(namespace)` is where a cell points."""
    sources = sorted({c.source for c in found})
    dests = sorted({c.dest for c in found})
    scale = _Scale.of(found)
    left = TITLE_SPACE + max(_width(s) for s in sources) + 6
    # A column label rises at 45 degrees: its height and its reach right are its length / sqrt 2.
    rise = [math.ceil(_width(d) / math.sqrt(2)) for d in dests]
    top = TITLE_SPACE + max(rise) + 8
    grid_right = left + len(dests) * CELL
    legend_x = grid_right + 24
    steps = scale.steps()
    legend_width = 16 + 6 + max(_width(f"{flows:,}") for _, flows in steps)
    width = max(
        legend_x + max(legend_width, _width("flows")),
        *(left + i * CELL + CELL // 2 + r + 4 for i, r in enumerate(rise)),
    )
    height = max(top + len(sources) * CELL, top + 18 + len(steps) * CELL) + 8
    # The axis titles centred on the grid, kept inside the picture when the grid is small.
    across = max(left + len(dests) * CELL // 2, _width("destination (receives)") // 2 + 4)
    down = max(top + len(sources) * CELL // 2, _width("source (sends)") // 2 + 4)
    row = {s: top + i * CELL for i, s in enumerate(sources)}
    column = {d: left + i * CELL for i, d in enumerate(dests)}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="{FONT}" '
        f'aria-label="Traffic map: flows per source and destination">',
        f'<g font-size="11" font-weight="bold" text-anchor="middle">'
        f'<text x="{across}" y="14">destination (receives)</text>'
        f'<text transform="translate(14,{down}) rotate(-90)">source (sends)</text></g>',
        f'<path d="M{left - 0.5},{top}v{len(sources) * CELL}M{left},{top - 0.5}'
        f'h{len(dests) * CELL}" stroke="#888" fill="none"/>',
        '<g class="columns">',
        *(
            _text(f'transform="translate({x + CELL // 2 + 3},{top - 4}) rotate(-45)"', d)
            for d, x in column.items()
        ),
        '</g><g class="rows" text-anchor="end">',
        *(_text(f'x="{left - 4}" y="{y + CELL // 2}" dy="0.35em"', s) for s, y in row.items()),
        '</g><g class="cells">',
        *(_cell(c, column[c.dest], row[c.source], scale.colour(c.flows), link) for c in found),
        '</g><g class="legend">',
        f'<text x="{legend_x}" y="{top + 11}" font-size="11" font-weight="bold">flows</text>',
    ]
    for i, (fill, flows) in enumerate(steps):
        y = top + 18 + i * CELL
        parts.append(f'<rect x="{legend_x}" y="{y}" width="16" height="{CELL}" fill="{fill}"/>')
        parts.append(f'<text x="{legend_x + 22}" y="{y + CELL // 2}" dy="0.35em">{flows:,}</text>')
    parts.append("</g></svg>")
    return "\n".join(parts) + "\n"


def svg(report: run_report.RunReport, link: Callable[[str], str]) -> str | None:
    """The map as an SVG document, or None when no rule links two peers."""
    found = cells(report)
    return draw(found, link) if found else None

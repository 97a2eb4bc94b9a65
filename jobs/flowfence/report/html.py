"""`DIR/report.html`: the run report as one self-contained page (no network, no server).

The overview (status, stagedAction, decision, rule counts, last change and risks per
namespace, sortable and filterable with a few lines of inline script), the traffic map (an SVG
rendered here, traffic_map.py) and each namespace's rules, changes and YAML. Styles are
inlined, and the page's Content-Security-Policy forbids loading anything.

Templates are Jinja2 with autoescaping on for every value and StrictUndefined (a misspelt
field fails the run's tests instead of rendering empty); they ship in the package
(`report/templates/`), and `flowfence serve` renders its pages with the same macros.
Deterministic: nothing in the page but what the report holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import jinja2
from markupsafe import Markup

from flowfence.core import times
from flowfence.report import html_model, run_report, traffic_map


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _time(value: datetime | None) -> str:
    return "" if value is None else times.rfc3339(value)


def environment(*packages: str) -> jinja2.Environment:
    """Templates of `packages` (each's `templates/` folder, first wins), then the report's."""
    loaders = [jinja2.PackageLoader(p, "templates") for p in (*packages, "flowfence.report")]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["number"] = _number
    env.filters["rfc3339"] = _time
    return env


_ENV = environment()


def anchor_link(namespace: str) -> str:
    return f"#ns-{namespace}"


# The manifests sit beside the page (DIR/policies/); on a large cluster they are megabytes, so
# the page carries the YAML of the first namespaces up to this many bytes and names the file of
# the rest, rather than copying every policy into each run's report.
YAML_BUDGET = 2 * 1024 * 1024


def to_html(report: run_report.RunReport, files: Mapping[str, bytes]) -> str:
    """The page for `report`, with the YAML of each namespace's manifest from `files`."""
    page = html_model.build(report)
    yaml: dict[str, str] = {}
    budget = YAML_BUDGET
    for ns in page.namespaces:
        data = files.get(ns.manifest) if ns.manifest is not None else None
        if data is not None and len(data) <= budget:
            yaml[ns.namespace] = data.decode("utf-8", "replace")
            budget -= len(data)
    drawn = traffic_map.svg(report, anchor_link)
    # The SVG is drawn by traffic_map.py, which escapes every string of the report in it: the
    # only markup the page takes as is.
    map_svg = Markup(drawn) if drawn is not None else None
    return _ENV.get_template("report.html.j2").render(page=page, yaml=yaml, map_svg=map_svg)

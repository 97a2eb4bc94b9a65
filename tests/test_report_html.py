"""`DIR/report.html`: written by every run beside report.md, self-contained (nothing loaded
from anywhere), deterministic, built from the same facts as report.json, and every string
from flow logs or decisions escaped."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import FLOW_NOW, DemoInputs, FlowLog

from flowfence.cli.app import main
from flowfence.report import html, html_model, run_report, traffic_map

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'


def run(demo: DemoInputs, out: Path) -> Path:
    assert main(demo.run_args(out)) == 0
    return out / "report.html"


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory, demo_inputs: DemoInputs) -> Path:
    out = tmp_path_factory.mktemp("html") / "out"
    run(demo_inputs, out)
    return out


def test_every_run_writes_report_html_with_every_namespace(demo_out: Path) -> None:
    page = (demo_out / "report.html").read_text(encoding="utf-8")
    data = json.loads((demo_out / "report.json").read_text())
    assert page.startswith("<!DOCTYPE html>")
    for entry in data["namespaces"]:
        assert f'id="ns-{entry["namespace"]}"' in page
        assert f'href="#ns-{entry["namespace"]}"' in page
    # The overview's counts are report.json's: frontend's 7 egress and 3 ingress rules.
    frontend = next(e for e in data["namespaces"] if e["namespace"] == "frontend")
    egress = sum(r["direction"] == "egress" for r in frontend["rules"])
    row = re.search(r'<tr><td><a href="#ns-frontend">frontend</a>.*?</tr>', page, re.S)
    assert row is not None
    assert f'<td class="num">{egress}</td>' in row.group(0)
    assert "Plan: 14 to add, 0 to change, 0 to remove; 72 rules added, 0 removed." in page
    # Each namespace's YAML is in the page (escaped, so quotes appear as entities).
    assert "namespace-isolation.frontend" in page
    assert "<svg" in page and "destination (receives)" in page


def test_report_html_is_self_contained(demo_out: Path) -> None:
    page = (demo_out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"<link\b", page, re.I)
    assert not re.search(r"@import|url\(", page, re.I)
    links = re.findall(r'\b(?:xlink:)?(?:href|src)\s*=\s*"([^"]*)"', page, re.I)
    assert links, "the page links its sections"
    outside = [u for u in links if not u.startswith("#")]
    assert outside == [], "everything the page links is inside it"
    # The only absolute URL left is the SVG's XML namespace name, which is never fetched.
    absolute = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert absolute == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in page


def test_report_html_is_deterministic(demo_inputs: DemoInputs, tmp_path: Path) -> None:
    first = run(demo_inputs, tmp_path / "a").read_bytes()
    second = run(demo_inputs, tmp_path / "b").read_bytes()
    assert first == second
    # A rerun at the same --now (a retry) reports the same change, so the same page.
    assert run(demo_inputs, tmp_path / "a").read_bytes() == first


def test_hostile_decision_strings_render_as_text(demo_inputs: DemoInputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--out", str(out), "--now", demo_inputs.now]
    assert main(["dismiss", "ads", "--reason", HOSTILE, "--author", "<b>mallory</b>", *args]) == 0
    page = run(demo_inputs, out).read_text(encoding="utf-8")
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>mallory" not in page
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    )
    assert "&lt;b&gt;mallory&lt;/b&gt;" in page
    # The page's only script is its own sorting and filtering.
    assert page.count("<script") == 1


def test_report_json_loads_back_into_the_same_report(demo_out: Path) -> None:
    text = (demo_out / "report.json").read_text()
    loaded = html_model.load(json.loads(text))
    assert run_report.to_json(loaded) == text


def test_traffic_map_cells_link_to_the_rules_behind_them(demo_out: Path) -> None:
    report = html_model.load(json.loads((demo_out / "report.json").read_text()))
    cells = {(c.source, c.dest): c for c in traffic_map.cells(report)}
    # frontend -> cart shows as frontend's egress and cart's ingress; one cell, frontend's.
    cell = cells[("frontend", "cart")]
    assert cell.namespace == "frontend" and cell.flows > 0
    assert ("cart", "frontend") not in cells
    # Traffic from outside the cluster is grouped by the kind of peer, linked to its receiver.
    public = cells[("[Public]", "frontend")]
    assert public.namespace == "frontend"
    drawn = traffic_map.svg(report, lambda ns: f"/namespaces/{ns}")
    assert drawn is not None
    assert 'href="/namespaces/frontend"' in drawn


def test_hostile_flow_log_strings_never_become_markup(flowlog: FlowLog, tmp_path: Path) -> None:
    """Strings from the cluster (namespaces, names, labels, domains) are untrusted: a run over
    rows carrying markup rejects them and neither report.html nor report.md carries the markup
    as markup, while the good traffic still gets its policy."""
    bad = "<img src=x onerror=alert(1)>"
    rows = [
        *flowlog.pair(dest_port=5432),
        *flowlog.pair(source_namespace=bad),
        *flowlog.pair(dest_name_aggr=f"pg-{bad}"),
        *flowlog.pair(source_labels=[f"app={bad}"]),
        flowlog.row(dest_type="net", dest_namespace="-", dest_domains=[f"{bad}.example.com"]),
    ]
    flows = flowlog.write(tmp_path / "f.parquet", rows)
    out = tmp_path / "out"
    assert main(["run", "--flows", str(flows), "--out", str(out), "--now", FLOW_NOW]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["counts"]["rejected"]["edges"] >= 4
    assert (out / "policies" / "db.yaml").exists()
    page = (out / "report.html").read_text(encoding="utf-8")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for text in (page, markdown):
        assert "<img" not in text and "onerror=alert(1)>" not in text
    # The page lists what was rejected, the markup shown as text.
    assert 'id="rejected"' in page and "&lt;img" in page
    for path in (out / "policies").glob("*.yaml"):
        assert "onerror" not in path.read_text(encoding="utf-8")


def test_a_large_cluster_map_folds_the_quiet_namespaces() -> None:
    """Hundreds of namespaces would make tens of thousands of cells: each axis keeps the
    MAX_SIDE busiest namespaces (peer kinds always) and folds the rest, flows conserved."""
    found = tuple(
        traffic_map.Cell(f"ns-{s:03}", dest, (s + 1) * (d + 1), 1, f"ns-{s:03}")
        for s in range(120)
        for d, dest in enumerate([*(f"ns-{d:03}" for d in range(0, 120, 7)), "[Public]"])
    )
    folded = traffic_map._fold(found, traffic_map.MAX_SIDE)
    sources = {c.source for c in folded}
    dests = {c.dest for c in folded}
    assert len(sources) == traffic_map.MAX_SIDE and "(81 others)" in sources
    assert "[Public]" in dests and len(dests) == 19  # 18 namespaces and the kind: no fold
    assert "ns-119" in sources and "ns-000" not in sources  # the busiest senders are kept
    assert sum(c.flows for c in folded) == sum(c.flows for c in found)
    assert sum(c.rules for c in folded) == sum(c.rules for c in found)
    assert all(c.namespace == "" for c in folded if c.source == "(81 others)")
    assert all(c.namespace == c.source for c in folded if c.source != "(81 others)")
    assert traffic_map._fold(found[:30], traffic_map.MAX_SIDE) == found[:30]


def test_the_page_names_the_policy_files_beyond_its_yaml_budget(
    demo_inputs: DemoInputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(html, "YAML_BUDGET", 4000)
    page = run(demo_inputs, tmp_path / "out").read_text(encoding="utf-8")
    shown = page.count("<summary>Policy YAML")
    named = page.count("left out here to keep the page small")
    assert shown >= 1 and named >= 1 and shown + named == 14


SVG = "{http://www.w3.org/2000/svg}"


def drawn_cells(svg: str) -> list[tuple[ET.Element, ET.Element | None]]:
    """(rect, its <a> or None) of each cell of a drawn map, parsed as XML."""
    root = ET.fromstring(svg)
    group = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "cells")
    found: list[tuple[ET.Element, ET.Element | None]] = []
    for child in group:
        if child.tag == f"{SVG}a":
            found += [(rect, child) for rect in child.findall(f"{SVG}rect")]
        else:
            assert child.tag == f"{SVG}rect"
            found.append((child, None))
    return found


def tooltip(rect: ET.Element) -> str:
    title = rect.find(f"{SVG}title")
    assert title is not None and title.text is not None
    return title.text


def darkness(fill: str) -> int:
    """The lower, the darker: the sum of the colour's channels."""
    assert re.fullmatch(r"#[0-9a-f]{6}", fill), fill
    return sum(int(fill[i : i + 2], 16) for i in (1, 3, 5))


def test_the_map_is_xml_with_one_linked_square_per_cell(demo_out: Path) -> None:
    """The picture is drawn here, not by a charting library: it parses as XML, has a square per
    cell with its tooltip, a link exactly where the cell has a namespace, and more flows draw
    darker. No script, no handler, no id, nothing fetched."""
    report = html_model.load(json.loads((demo_out / "report.json").read_text()))
    found = traffic_map.cells(report)
    drawn = traffic_map.svg(report, html.anchor_link)
    assert drawn is not None
    squares = drawn_cells(drawn)
    assert len(squares) == len(found)
    for cell, (rect, link) in zip(found, squares, strict=True):
        assert (rect.get("width"), rect.get("height"), rect.get("stroke")) == ("22", "22", "white")
        assert tooltip(rect) == (
            f"source: {cell.source}\ndestination: {cell.dest}\n"
            f"flows: {cell.flows:,}\nrules: {cell.rules:,}"
        )
        assert link is not None and link.get("href") == f"#ns-{cell.namespace}"
    most = max(found, key=lambda c: c.flows)
    least = min(found, key=lambda c: c.flows)
    fills = {c: str(rect.get("fill")) for c, (rect, _) in zip(found, squares, strict=True)}
    assert darkness(fills[most]) < darkness(fills[least])
    assert all(
        darkness(fills[most]) <= darkness(f) <= darkness(fills[least]) for f in fills.values()
    )
    for name in ("source (sends)", "destination (receives)", "flows", "[Public]", "frontend"):
        assert f">{name}</text>" in drawn
    assert not re.search(r"<script|\bon\w+\s*=|\bid=|url\(|xlink", drawn, re.I)
    # Drawn again, in a process that has drawn other maps since: the same bytes.
    traffic_map.draw(found[:3], str)
    assert traffic_map.svg(report, html.anchor_link) == drawn


def test_the_map_escapes_labels_and_links_no_folded_cell() -> None:
    hostile = '<script>alert("x")</script>&'
    found = (
        traffic_map.Cell(hostile, "[Public]", 5, 1, hostile),
        traffic_map.Cell("(3 others)", "db", 50, 2, ""),
        traffic_map.Cell("web", "db", 500, 1, "web"),
    )
    drawn = traffic_map.draw(found, lambda ns: f"/namespaces/{ns}?a=1&b=2")
    assert "<script" not in drawn and "&lt;script&gt;" in drawn
    squares = drawn_cells(drawn)  # still well-formed XML
    assert len(squares) == 3
    links = {tooltip(rect).splitlines()[0]: a for rect, a in squares}
    assert links["source: (3 others)"] is None  # a folded cell links to no namespace
    hostile_link = links[f"source: {hostile}"]
    assert hostile_link is not None
    assert hostile_link.get("href") == f"/namespaces/{hostile}?a=1&b=2"
    labels = [t.text for t in ET.fromstring(drawn).iter(f"{SVG}text")]
    assert hostile in labels and "(3 others)" in labels
    fills = [darkness(str(rect.get("fill"))) for rect, _ in squares]
    assert fills[0] > fills[1] > fills[2]  # 5, 50, 500 flows: darker and darker


def test_a_map_of_equal_flows_has_one_colour() -> None:
    found = tuple(traffic_map.Cell(s, "db", 7, 1, s) for s in ("a", "b", "c"))
    drawn = traffic_map.draw(found, str)
    assert len({rect.get("fill") for rect, _ in drawn_cells(drawn)}) == 1
    legend = next(g for g in ET.fromstring(drawn).iter(f"{SVG}g") if g.get("class") == "legend")
    assert [t.text for t in legend.iter(f"{SVG}text")] == ["flows", "7"]

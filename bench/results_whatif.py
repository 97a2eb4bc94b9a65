"""The RESULTS.md table of the read stage's parts and what-if variants (`--what-if`)."""

from __future__ import annotations

from bench.model import BenchRun
from bench.results import WHAT_IF_KINDS, _read, _table, ratio


def table(run: BenchRun) -> list[str]:
    """The read stage as it is, its parts, the alternatives and the run each would give."""
    rows: list[list[str]] = []
    for size in run.sizes:
        f = size.figures
        bare, flow = f.get("bare_edges"), f.get("run")
        if bare is None or flow is None or not all(k in f for k in WHAT_IF_KINDS):
            continue
        base = bare.seconds
        today = f["part_edges"].seconds
        cells = [size.label, f"{_read(flow):.2f} ({ratio(_read(flow), base)})"]
        for kind in ("part_edges", "part_activity"):
            cells.append(f"{f[kind].seconds:.2f} ({ratio(f[kind].seconds, base)})")
        cpu_today, cpu_base = f["part_edges"].cpu_seconds, bare.cpu_seconds
        for kind in ("whatif_per_day", "whatif_group_first"):
            alt, cpu_alt = f[kind].seconds, f[kind].cpu_seconds
            cells.append(f"{alt:.2f} ({ratio(alt, base)})")
            wall = ratio(max(0.0, flow.seconds - today + alt), base)
            cpu = ratio(max(0.0, flow.cpu_seconds - cpu_today + cpu_alt), cpu_base)
            cells.append(f"{wall} (CPU {cpu})")
        rows.append(cells)
    header = (
        "rows",
        "run's read stage",
        "bind + edge query",
        "bind + activity query",
        "per-day rewrite",
        "run with it (est.)",
        "group first",
        "run with it (est.)",
    )
    return _table(header, rows)

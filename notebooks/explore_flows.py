"""Exploring flow logs with flowfence: a marimo notebook.

Plain Python, diffable, and runnable three ways:

    marimo edit notebooks/explore_flows.py -- fixtures/data/demo      # interactive
    python notebooks/explore_flows.py fixtures/data/demo --out out/nb # headless, as make test
    marimo export html notebooks/explore_flows.py -o flows.html -- fixtures/data/demo

It reads flow logs through the job's own loader (`flowfence.flows.sources.bind_flows`) and SQL
(`sql/flows_summary.sql`, `sql/state_edges.sql` via `flowfence.flows.edges.aggregate`), and learns rules
with `flowfence.run.pipeline.compute`, so what you see here is what the recommender sees. Charts
are written as PNG files to `--out` as well as shown in the notebook.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import argparse
    import sys
    from dataclasses import replace
    from datetime import UTC
    from pathlib import Path

    import duckdb
    import marimo as mo
    import numpy as np
    import polars as pl
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    from flowfence.flows import edges
    from flowfence.run import pipeline
    from flowfence.flows import sources
    from flowfence.core import sql
    from flowfence.config.settings import load_settings

    return (
        Figure,
        LogNorm,
        Path,
        UTC,
        argparse,
        duckdb,
        edges,
        load_settings,
        mo,
        np,
        pipeline,
        pl,
        replace,
        sources,
        sql,
        sys,
    )


@app.cell
def _(Path, argparse, mo, sys):
    _parser = argparse.ArgumentParser(description="Explore Calico flow logs with flowfence.")
    _parser.add_argument(
        "flows",
        nargs="?",
        default=str(mo.notebook_dir().parent / "fixtures" / "data" / "demo"),
        help="Flow-log Parquet: a file, a directory or a date=/hour= tree (default: the demo).",
    )
    _parser.add_argument("--out", default="out/notebooks", help="Where the charts are written.")
    _parser.add_argument("--config", help="A PolicyRecommendationScope manifest.")
    _parser.add_argument("--settings", help="A FlowfenceConfig file.")
    args, _ = _parser.parse_known_args(sys.argv[1:])
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    return args, out_dir


@app.cell
def _(mo):
    mo.md(r"""
    # Exploring flow logs with flowfence

    The flow logs are bound as the normalised `flows` view exactly as `flowfence run`
    binds them, then summarised with the job's own SQL.
    """)
    return


@app.cell
def _(UTC, args, duckdb, sources, sql):
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # it would write to stdout
    bound = sources.bind_flows(con, args.flows)
    summary = sql.relation(con, "flows_summary").pl()
    first_start = summary["first_start"][0].replace(tzinfo=UTC)
    last_end = summary["last_end"][0].replace(tzinfo=UTC)
    print(f"{len(bound.files)} files (hive={bound.hive}), {summary['rows'][0]} rows")
    print(f"window {first_start.isoformat()} .. {last_end.isoformat()}")
    summary
    return con, first_start, last_end


@app.cell
def _(mo):
    mo.md(r"""
    ## Distinct edges: the unit every later stage works on
    """)
    return


@app.cell
def _(con, edges, pl):
    all_edges = edges.aggregate(con)
    print(all_edges.height, "distinct edges from", int(all_edges["rows"].sum()), "rows")

    def _peer_label(side):
        # Pods and hosts by namespace; network sets and outside addresses by what they are.
        kind, ns, name = (pl.col(f"{side}_{c}") for c in ("type", "namespace", "name_aggr"))
        return (
            pl.when(kind.is_in(["wep", "hep"]))
            .then(ns)
            .when(kind == "ns")
            .then(pl.format("netset:{}", pl.coalesce(ns, pl.lit("global"))))
            .otherwise(pl.format("{}:{}", kind, name))
        )

    # Each flow once: at its source when a pod or host sent it, else where it arrived.
    local = ("wep", "hep")
    once = all_edges.filter(
        ((pl.col("reporter") == "src") & pl.col("source_type").is_in(local))
        | ((pl.col("reporter") == "dst") & ~pl.col("source_type").is_in(local))
    ).with_columns(_peer_label("source").alias("src"), _peer_label("dest").alias("dst"))
    return all_edges, once


@app.cell
def _(mo):
    mo.md(r"""
    ## Namespace-to-namespace traffic matrix

    Flows from each source (row) to each destination (column), allowed and denied, each
    flow counted once. Addresses outside the cluster show as `net:pub` / `net:pvt`, network
    sets as `netset:<namespace>` (`netset:global` for GlobalNetworkSets).
    """)
    return


@app.cell
def _(Figure, LogNorm, np, once, out_dir, pl):
    pairs = once.group_by("src", "dst").agg(pl.col("flows").sum())
    sources_ = sorted(pairs["src"].unique().to_list())
    dests = sorted(pairs["dst"].unique().to_list())
    grid = np.zeros((len(sources_), len(dests)))
    for _s, _d, _f in pairs.iter_rows():
        grid[sources_.index(_s), dests.index(_d)] = _f
    matrix = pairs.pivot(on="dst", index="src", values="flows").sort("src").fill_null(0)

    heatmap = Figure(figsize=(1.0 + 0.62 * len(dests), 1.2 + 0.45 * len(sources_)), dpi=110)
    _ax = heatmap.add_subplot()
    _masked = np.ma.masked_equal(grid, 0)
    _image = _ax.imshow(_masked, cmap="viridis", norm=LogNorm(vmin=1, vmax=max(grid.max(), 2)))
    _ax.set_xticks(range(len(dests)), dests, rotation=60, ha="right")
    _ax.set_yticks(range(len(sources_)), sources_)
    _ax.set_xlabel("destination")
    _ax.set_ylabel("source")
    _ax.set_title("flows between namespaces (log scale)")
    for (_i, _j), _v in np.ndenumerate(grid):
        if _v:
            _text = f"{_v / 1000:.0f}k" if _v >= 10_000 else f"{_v:.0f}"
            _r, _g, _b, _ = _image.cmap(_image.norm(_v))
            _ink = "black" if 0.299 * _r + 0.587 * _g + 0.114 * _b > 0.5 else "white"
            _ax.text(_j, _i, _text, ha="center", va="center", fontsize=7, color=_ink)
    heatmap.colorbar(_image, ax=_ax, shrink=0.8, label="flows")
    heatmap.tight_layout()
    heatmap_png = out_dir / "traffic_matrix.png"
    heatmap.savefig(heatmap_png)
    print(f"traffic matrix {len(sources_)}x{len(dests)} -> {heatmap_png}")
    heatmap
    return (matrix,)


@app.cell
def _(matrix):
    matrix
    return


@app.cell
def _(mo):
    mo.md(r"""
    ## Top talkers by bytes
    """)
    return


@app.cell
def _(once, pl):
    top_talkers = (
        once.group_by("src", "source_name_aggr", "dst", "dest_name_aggr")
        .agg(pl.col("bytes").sum(), pl.col("flows").sum())
        .sort("bytes", "src", "dst", descending=[True, False, False])
        .head(10)
    )
    print(top_talkers)
    top_talkers
    return


@app.cell
def _(mo):
    mo.md(r"""
    ## When each rule was first needed

    The rules `flowfence run` learns over the whole window, placed at the time their first
    flow was seen. A namespace whose last rule arrived late (a nightly job, a weekly
    report) needs a long enough look-back before its policy can be trusted.
    """)
    return


@app.function
def peer(rule) -> str:
    """A short name for the peer of a learned rule."""
    if rule.namespaces:
        return "ns " + ",".join(rule.namespaces)
    if rule.service is not None:
        return f"svc {rule.service.namespace or '-'}/{rule.service.name}"
    if rule.netset is not None:
        return f"netset {rule.netset.namespace or 'global'}/{rule.netset.name}"
    if rule.domains:
        return "domains " + ",".join(rule.domains)
    return "nets " + ",".join(rule.nets)


@app.cell
def _(
    Path,
    args,
    first_start,
    last_end,
    load_settings,
    out_dir,
    pipeline,
    replace,
):
    _settings = load_settings(
        args.config and Path(args.config), args.settings and Path(args.settings)
    )
    # Learn from everything in the files: the look-back is the span of the data.
    settings = replace(_settings, initial_lookback=last_end - first_start)
    computation = pipeline.compute(
        pipeline.RunRequest(flows=args.flows, out=out_dir, settings=settings, now=last_end)
    )
    return (computation,)


@app.cell
def _(Figure, computation, first_start, last_end, out_dir, pl):
    rule_times = pl.DataFrame(
        [
            {
                "namespace": _ns,
                "direction": _rule.direction,
                "peer": peer(_rule),
                "ports": ",".join(str(_p) for _p in _rule.ports),
                "first_seen": _rule.evidence.first_seen,
            }
            for _ns, _rec in computation.recommendations.items()
            for _rule in _rec.rules
        ]
    ).sort("first_seen", "namespace", "direction", "peer")
    _namespaces = sorted(rule_times["namespace"].unique().to_list(), reverse=True)
    timeline = Figure(figsize=(9, 1.0 + 0.35 * len(_namespaces)), dpi=110)
    _ax = timeline.add_subplot()
    for _direction, _marker in (("egress", ">"), ("ingress", "<")):
        _part = rule_times.filter(pl.col("direction") == _direction)
        _ax.scatter(
            _part["first_seen"].to_list(),
            [_namespaces.index(_n) for _n in _part["namespace"]],
            marker=_marker,
            label=_direction,
            alpha=0.7,
        )
    _ax.set_yticks(range(len(_namespaces)), _namespaces)
    _ax.set_xlim(first_start.replace(tzinfo=None), last_end.replace(tzinfo=None))
    _ax.set_xlabel("first seen (UTC)")
    _ax.set_title("rules by the time their first flow was seen")
    _ax.legend(loc="lower right")
    _ax.grid(axis="x", alpha=0.3)
    timeline.autofmt_xdate()
    timeline.tight_layout()
    timeline_png = out_dir / "rule_timeline.png"
    timeline.savefig(timeline_png)
    _late = rule_times.sort("first_seen", descending=True).head(5)
    print(f"{rule_times.height} rules in {len(_namespaces)} namespaces -> {timeline_png}")
    print("latest first seen:")
    print(_late)
    timeline
    return


@app.cell
def _(mo):
    mo.md(r"""
    ## Denied flows
    """)
    return


@app.cell
def _(all_edges, pl):
    denied = (
        all_edges.filter(pl.col("action") == "deny")
        .group_by("reporter", "source_namespace", "dest_namespace", "dest_ip", "dest_port", "proto")
        .agg(pl.col("flows").sum())
        .sort("flows", descending=True)
    )
    print(denied.height, "denied edge groups")
    denied
    return


if __name__ == "__main__":
    app.run()

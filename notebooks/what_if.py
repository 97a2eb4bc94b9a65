"""What if we enforced it now? A marimo notebook.

Learns the namespace-isolation policies from the last `--learn-hours` of flow logs only, then
replays every flow of the whole window through them (staged policies previewed as enforced)
and shows, for one namespace, the recommended policy and the flows it would deny. A policy
learned over too short a window breaks whatever runs less often than the window: a nightly
backup, a weekly report.

    marimo edit notebooks/what_if.py -- fixtures/data/demo --learn-hours 12
    python notebooks/what_if.py fixtures/data/demo --namespace postgres --out out/nb

The same stages as the job: `flowfence.run.pipeline.compute` learns and renders the policies,
`flowfence.learn.exclude` keeps only the flows that reach the recommendation tier (not decided by a
tier before it), `flowfence.calico.policy_docs.policy_set` loads the rendered manifests and
`flowfence.replay.audit.compute` evaluates the flows with `flowfence.calico.evaluate.Evaluator`.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import argparse
    import sys
    from dataclasses import replace
    from datetime import UTC, timedelta
    from pathlib import Path

    import duckdb
    import marimo as mo
    import polars as pl
    import yaml

    from flowfence.flows import edges
    from flowfence.learn import exclude
    from flowfence.learn import namespaces
    from flowfence.run import pipeline
    from flowfence.replay import audit as replay
    from flowfence.flows import sources
    from flowfence.core import sql
    from flowfence.calico import names as validate
    from flowfence.config.settings import load_settings
    from flowfence.calico.policy_docs import policy_set

    return (
        Path,
        UTC,
        argparse,
        duckdb,
        edges,
        exclude,
        load_settings,
        mo,
        namespaces,
        pipeline,
        pl,
        policy_set,
        replace,
        replay,
        sources,
        sql,
        sys,
        timedelta,
        validate,
        yaml,
    )


@app.cell
def _(Path, argparse, load_settings, mo, sys):
    _parser = argparse.ArgumentParser(description="Replay flows through a freshly learned policy.")
    _parser.add_argument(
        "flows",
        nargs="?",
        default=str(mo.notebook_dir().parent / "fixtures" / "data" / "demo"),
        help="Flow-log Parquet: a file, a directory or a date=/hour= tree (default: the demo).",
    )
    _parser.add_argument(
        "--namespace", help="The namespace to show (default: the one with most denied flows)."
    )
    _parser.add_argument(
        "--learn-hours", type=float, default=12.0, help="Learn from this many final hours."
    )
    _parser.add_argument("--out", default="out/notebooks", help="Where the policy is written.")
    _parser.add_argument("--config", help="A PolicyRecommendationScope manifest.")
    _parser.add_argument("--settings", help="A FlowfenceConfig file.")
    args, _ = _parser.parse_known_args(sys.argv[1:])
    settings = load_settings(
        args.config and Path(args.config), args.settings and Path(args.settings)
    )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    return args, out_dir, settings


@app.cell
def _(UTC, args, duckdb, edges, sources, sql):
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # it would write to stdout
    sources.bind_flows(con, args.flows)
    _summary = sql.relation(con, "flows_summary").pl()
    first_start = _summary["first_start"][0].replace(tzinfo=UTC)
    last_end = _summary["last_end"][0].replace(tzinfo=UTC)
    all_edges = edges.aggregate(con)
    print(all_edges.height, "distinct edges from", int(all_edges["rows"].sum()), "rows")
    print(f"window {first_start.isoformat()} .. {last_end.isoformat()}")
    return all_edges, last_end


@app.cell
def _(mo):
    mo.md(r"""
    ## 1. Learn from the last hours only

    `flowfence run` with `--now` at the end of the data and `initialLookback` set to the
    learning window.
    """)
    return


@app.cell
def _(args, last_end, out_dir, pipeline, replace, settings, timedelta, yaml):
    learn_since = last_end - timedelta(hours=args.learn_hours)
    _learned = pipeline.compute(
        pipeline.RunRequest(
            flows=args.flows,
            out=out_dir,
            settings=replace(settings, initial_lookback=last_end - learn_since),
            now=last_end,
        )
    )
    # The manifests exactly as the job writes them to policies/.
    manifests = [
        _doc
        for _path, _data in sorted(_learned.files.items())
        if _path.startswith("policies/")
        for _doc in yaml.safe_load_all(_data)
        if _doc and _doc.get("kind") != "Kustomization"
    ]
    print(
        f"learned from {learn_since.isoformat()} on: {len(_learned.recommendations)} "
        f"namespaces, {len(manifests)} manifests"
    )
    return (manifests,)


@app.cell
def _(mo):
    mo.md(r"""
    ## 2. Replay the whole window

    Only the flows the recommendation tier would see: allowed, reported by a pod in a
    selected namespace, and not decided by a tier ordered before it (the job's own trace
    check). Each is evaluated where Calico evaluates it, with the learned policies enforced.
    """)
    return


@app.cell
def _(
    all_edges,
    exclude,
    manifests,
    namespaces,
    pl,
    policy_set,
    replay,
    settings,
    validate,
):
    _good, _ = validate.screen(all_edges)
    _selection = namespaces.select_namespaces(namespaces.discover_namespaces(_good), None, settings)
    candidates, _ = exclude.exclude(_good, _selection.selected, settings)
    replayed = replay.compute(candidates, policy_set(manifests), tier=settings.tier_name)
    per_namespace = (
        pl.DataFrame(
            [
                {
                    "namespace": (_d.source if _d.direction == "egress" else _d.dest).namespace,
                    "denied_edges": 1,
                    "denied_flows": _d.flows,
                }
                for _d in replayed.denied
            ],
            schema={"namespace": pl.String, "denied_edges": pl.Int64, "denied_flows": pl.Int64},
        )
        .group_by("namespace")
        .sum()
        .sort(["denied_flows", "namespace"], descending=[True, False])
    )
    _s = replayed.summary
    print(
        f"replayed {_s.evaluated_edges} edges ({_s.evaluated_flows} flows): "
        f"{_s.denied_edges} would be denied ({_s.denied_flows} flows)"
    )
    per_namespace
    return per_namespace, replayed


@app.cell
def _(args, manifests, mo, per_namespace):
    with_policy = sorted(
        _m["metadata"]["namespace"] for _m in manifests if "namespace" in _m["metadata"]
    )
    if args.namespace:
        namespace = args.namespace
    elif per_namespace.height:
        namespace = per_namespace["namespace"][0]
    else:
        namespace = with_policy[0]
    mo.md(f"## 3. The policy for `{namespace}` and what it would deny")
    return namespace, with_policy


@app.cell
def _(manifests, mo, namespace, out_dir, with_policy, yaml):
    if namespace not in with_policy:
        raise SystemExit(f"no policy learned for {namespace!r}; namespaces: {with_policy}")
    policy = next(_m for _m in manifests if _m["metadata"].get("namespace") == namespace)
    policy_yaml = yaml.safe_dump(policy, sort_keys=False)
    (out_dir / f"what-if-{namespace}.yaml").write_text(policy_yaml, encoding="utf-8")
    print(f"recommended policy {policy['kind']} {namespace}/{policy['metadata']['name']}:")
    print(policy_yaml)
    mo.md(f"```yaml\n{policy_yaml}```")
    return


@app.cell
def _(namespace, pl, replayed):
    def _endpoint(e):
        where = e.namespace or e.ip or "-"
        return f"{e.type}:{where}/{e.name or '-'}"

    would_deny = pl.DataFrame(
        [
            {
                "direction": _d.direction,
                "source": _endpoint(_d.source),
                "dest": _endpoint(_d.dest),
                "port": _d.dest_port,
                "proto": _d.proto,
                "flows": _d.flows,
                "first_seen": _d.first_seen,
                "last_seen": _d.last_seen,
                "hit": _d.hit,
            }
            for _d in replayed.denied
            if (_d.source if _d.direction == "egress" else _d.dest).namespace == namespace
        ],
        schema={
            "direction": pl.String, "source": pl.String, "dest": pl.String, "port": pl.Int32,
            "proto": pl.String, "flows": pl.Int64, "first_seen": pl.Datetime("us"),
            "last_seen": pl.Datetime("us"), "hit": pl.String,
        },
    )  # fmt: skip
    print(f"{namespace}: {would_deny.height} edges would be denied")
    with pl.Config(tbl_cols=-1, tbl_width_chars=120, fmt_str_lengths=40):
        print(would_deny.drop("hit", "last_seen"))
    would_deny
    return


if __name__ == "__main__":
    app.run()

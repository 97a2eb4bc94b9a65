"""`flowfence fixtures generate`: write deterministic raw Calico flow logs for demos and tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowfence.core import times
from flowfence.fixtures.generate import DEFAULT_ROWS_PER_HOUR, TOPOLOGIES, generate

DEFAULT_START = "2026-11-01T00:00:00Z"


def generate_command(
    out: Annotated[
        Path,
        typer.Option("--out", help="Directory to write date=YYYY-MM-DD/hour=HH/*.parquet into."),
    ],
    topology: Annotated[
        str,
        typer.Option(
            "--topology",
            help=(
                "demo: a small shop, one namespace per microservice. synthetic: --namespaces "
                "namespaces with Zipf-skewed traffic. large: a big cluster for benchmarks "
                "(--namespaces 300: over 500,000 distinct edges at 20M rows, 120,000 public "
                "client addresses)."
            ),
        ),
    ] = "demo",
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed; same seed, same bytes.")
    ] = 0,
    rows: Annotated[
        int | None,
        typer.Option(
            "--rows",
            min=1,
            help=(
                "Target row count over the whole span (default "
                f"{DEFAULT_ROWS_PER_HOUR['demo']}/hour for demo, "
                f"{DEFAULT_ROWS_PER_HOUR['synthetic']}/hour for synthetic, "
                f"{DEFAULT_ROWS_PER_HOUR['large']}/hour for large)."
            ),
        ),
    ] = None,
    namespaces: Annotated[
        int,
        typer.Option("--namespaces", min=1, help="Application namespaces (synthetic and large)."),
    ] = 50,
    start: Annotated[
        str, typer.Option("--start", help="First hour (RFC 3339), on a whole hour.")
    ] = DEFAULT_START,
    hours: Annotated[
        int | None, typer.Option("--hours", min=1, help="Hours to cover (default 24).")
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", min=1, help="Days to cover (24 hours each).")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace the date=* directories an earlier run wrote in --out."
        ),
    ] = False,
) -> None:
    """Write raw Calico flow logs (hive-partitioned Parquet) for a made-up cluster.

    The output is byte-identical for the same topology, seed and parameters. Rows are written
    one hour at a time, so memory stays bounded for any --rows. Prints the row and file count.
    """
    if topology not in TOPOLOGIES:
        raise typer.BadParameter(
            f"{topology!r} is not one of {', '.join(TOPOLOGIES)}", param_hint="--topology"
        )
    if hours is not None and days is not None:
        raise typer.BadParameter("give --hours or --days, not both", param_hint="--days")
    span = hours if hours is not None else 24 * (days if days is not None else 1)
    result = generate(
        topology,
        out,
        seed=seed,
        rows=rows,
        namespaces=namespaces,
        start=times.parse_option(start, "--start"),
        hours=span,
        overwrite=overwrite,
    )
    typer.echo(f"{result.rows} rows in {len(result.files)} files under {result.out}")


def register(app: typer.Typer) -> None:
    fixtures = typer.Typer(
        name="fixtures",
        help="Generate deterministic Calico flow-log fixtures.",
        no_args_is_help=True,
    )
    fixtures.command("generate")(generate_command)
    app.add_typer(fixtures, name="fixtures")

"""`flowfence replay`: audit a policy set (staged policies as enforced) against flow logs.

Thin: bind the flows, aggregate edges, call `replay.compute`, render. Data goes to stdout,
the one-line denial notice to stderr; `--fail-on-deny` exits 3 when anything would be denied
(undetermined edges and edges an earlier tier decided are listed, never counted as denied).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flowfence.calico import inventory, named_ports
from flowfence.calico.policy_docs import load_namespaces, load_policies
from flowfence.cli import options
from flowfence.config.settings import load_settings
from flowfence.core import database
from flowfence.core.errors import ExitCode
from flowfence.flows import edges, sources
from flowfence.flows.encodings import EDGE_COLUMNS
from flowfence.learn.exclude import known_tier_orders
from flowfence.replay import audit as replay
from flowfence.replay import render as replay_render


class Output(StrEnum):
    TABLE = "table"
    MARKDOWN = "markdown"
    JSON = "json"


def _table(
    console: Console,
    title: str,
    columns: tuple[str, ...],
    rows: Sequence[tuple[str, ...]],
    plain: bool,
) -> None:
    """A rich table on a terminal; elsewhere (a CronJob's log, a pipe) the title and
    tab-separated lines, never cut to a width."""
    if plain:
        # typer.echo, not rich: rich would expand the tabs into spaces.
        typer.echo(title)
        for row in (columns, *rows):
            typer.echo("\t".join(cell or "-" for cell in row))
        return
    table = Table(title=title)
    for name in columns:
        table.add_column(name, justify="right" if name in _NUMERIC else "left")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text(): flow-log strings are data
    console.print(table)


_POLICY_COUNTS = ("edges", "allowed flows", "allowed bytes", "denied flows", "denied bytes",
                  "passed flows", "passed bytes")  # fmt: skip
_NUMERIC = {*_POLICY_COUNTS, "flows", "bytes"}


def render_table(report: replay.ReplayReport, console: Console, *, plain: bool = False) -> None:
    s = report.summary
    scope = f" (tier {report.tier})" if report.tier else ""
    console.print(
        f"flowfence replay{scope}: {s.evaluated_edges} edges evaluated "
        f"({s.evaluated_flows} flows), {s.denied_edges} would be denied "
        f"({s.denied_flows} flows, {s.denied_bytes} bytes), {s.undetermined_edges} undetermined "
        f"({s.undetermined_flows} flows), {s.decided_earlier_edges} decided by an earlier tier "
        f"({s.decided_earlier_flows} flows)",
        markup=False,
        highlight=False,
        soft_wrap=plain,
    )
    policy_rows = [
        (t.tier, replay_render.policy_label(t),
         *(str(v) for v in (t.edges, t.allowed_flows, t.allowed_bytes, t.denied_flows,
                            t.denied_bytes, t.passed_flows, t.passed_bytes)))
        for t in report.policies
    ]  # fmt: skip
    _table(console, "Policies", ("tier", "policy", *_POLICY_COUNTS), policy_rows, plain)
    for title, column, listed_edges in replay_render.sections(report):
        if not listed_edges:
            continue
        rows = [
            (d.direction, replay_render.endpoint_text(d.source),
             replay_render.endpoint_text(d.dest), replay_render.port_text(d), str(d.flows),
             str(d.bytes), replay_render.outcome_text(d))
            for d in listed_edges
        ]  # fmt: skip
        columns = ("direction", "source", "destination", "port", "flows", "bytes", column)
        _table(console, f"{title} (worst first)", columns, rows, plain)
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=plain)


def replay_command(
    policies: Annotated[Path, typer.Option("--policies", help="Folder (or file) of policy YAML.")],
    flows: Annotated[
        Path, typer.Option("--flows", help="Flow-log Parquet: file, folder or hive tree.")
    ],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Window start (RFC 3339, e.g. 2026-11-01T00:00:00Z)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Window end (RFC 3339), exclusive.")
    ] = None,
    tier: Annotated[
        str | None, typer.Option("--tier", help="Report only this tier's policies.")
    ] = None,
    namespaces: Annotated[
        Path | None,
        typer.Option(
            "--namespaces",
            help="`kubectl get namespaces -o yaml` output; takes precedence over Namespace "
            "items in --inventory.",
        ),
    ] = None,
    settings_file: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            help="flowfence's own settings (kind FlowfenceConfig): its tierOrders place tiers "
            "outside the policy set; see docs/configuration.md.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    inventory_file: options.Inventory = None,
    output: Annotated[
        Output, typer.Option("--output", help="table, markdown or json.")
    ] = Output.TABLE,
    fail_on_deny: Annotated[
        bool, typer.Option("--fail-on-deny", help="Exit 3 when an allowed edge would be denied.")
    ] = False,
    memory_limit: options.MemoryLimit = None,
    threads: options.Threads = None,
    temp_dir: options.TempDir = None,
) -> None:
    """Replay allowed flows through a policy set, staged policies previewed as enforced."""
    since_at = options.time_option(since, "--since")
    until_at = options.time_option(until, "--until")
    # The run's own checks of the DuckDB options (a size, a positive count, a path).
    limits = load_settings(
        None, settings_file, memory_limit=memory_limit, threads=threads, temp_dir=temp_dir
    )
    policy_set = load_policies(policies)
    given = load_namespaces(namespaces) if namespaces is not None else None
    inv = inventory.load_inventory(inventory_file) if inventory_file is not None else None
    labels = inventory.namespace_labels(inv, given)
    notes = inventory.notes(inv, namespaces_given=given is not None) if inv is not None else ()
    # Reported with the policy set's own warnings: why named-port rules may match nothing.
    notes += named_ports.unresolved_notes(policy_set, inv)
    policy_set = dataclasses.replace(policy_set, warnings=(*policy_set.warnings, *notes))
    con = database.connect(limits)
    try:
        sources.bind_flows(con, flows, since=since_at, until=until_at, columns=EDGE_COLUMNS)
        # Unordered: replay.compute's report does not depend on the edges' order.
        frame = edges.aggregate(con, since=since_at, until=until_at, ordered=False)
    finally:
        con.close()
    report = replay.compute(
        frame,
        policy_set,
        namespaces=labels,
        tier=tier,
        tier_orders=known_tier_orders(limits),
        named_ports=named_ports.NamedPorts(inv),
    )
    if output is Output.JSON:
        typer.echo(replay_render.to_json(report), nl=False)
    elif output is Output.MARKDOWN:
        typer.echo(replay_render.to_markdown(report), nl=False)
    else:
        # Piped output (a CronJob's log) gets plain full lines, not a table cut to 80 columns.
        render_table(report, Console(), plain=not sys.stdout.isatty())
    if report.would_deny:
        s = report.summary
        typer.echo(
            f"flowfence: {s.denied_edges} allowed edges ({s.denied_flows} flows) would be denied",
            err=True,
        )
        if fail_on_deny:
            raise typer.Exit(int(ExitCode.REPLAY_DENIED))


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)

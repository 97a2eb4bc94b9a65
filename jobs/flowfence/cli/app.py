"""The `flowfence` command line: a thin typer app over the library.

Each subcommand lives in `cli/<name>.py` and exposes `register(app)`. This module is the
one place where exceptions become exit codes and messages: stdout carries only data, stderr
only diagnostics.
"""

from __future__ import annotations

import importlib
import signal
import sys
from types import FrameType

import typer

from flowfence import __version__
from flowfence.core.errors import ExitCode, FlowfenceError

# Subcommand modules, in the order `--help` lists them.
# A module that does not exist yet is skipped, so a command lands with its module.
COMMANDS = ("run", "replay", "validate", "decisions", "serve", "ingest", "receive", "fixtures")

app = typer.Typer(
    name="flowfence",
    help=(
        "Learn least-privilege Calico namespace-isolation policies from flow logs.\n\n"
        "Reads Calico flow-log Parquet, aggregates the traffic each namespace needs and writes "
        "one StagedNetworkPolicy per namespace plus a change report."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"flowfence {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """flowfence: namespace-isolation policy recommendations for Calico."""


def _register_commands() -> None:
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"flowfence.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"flowfence.cli.{name}":
                continue
            raise
        module.register(app)


_register_commands()


def error(message: str) -> None:
    """One diagnostic line on stderr, never on stdout."""
    typer.echo(f"flowfence: error: {message}", err=True)


class Interrupted(FlowfenceError):
    exit_code = ExitCode.INTERRUPTED


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # Raised as our own exception, not KeyboardInterrupt, so the CLI framework cannot turn
    # it into "Aborted!" with exit code 1.
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point. Returns the exit code when called with `argv` (tests)."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        app(args=argv, prog_name="flowfence")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except FlowfenceError as exc:
        error(str(exc))
        code = int(exc.exit_code)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()

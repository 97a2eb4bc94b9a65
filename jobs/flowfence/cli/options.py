"""Options several commands share, defined once so they read and behave the same everywhere.

Times: every time option (`--now`, `--since`, `--until`, `--expires`, `--start`) is RFC 3339
with an offset and goes through `core.times`; a time without one is refused (exit 2) with a
hint to append `Z`. DuckDB resources: `run` and `replay` take the same `--memory-limit`,
`--threads` and `--temp-dir`, with the same environment variables, and the same `--inventory`.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from flowfence.core import times
from flowfence.core.errors import ConfigError

MemoryLimit = Annotated[
    str | None,
    typer.Option(
        "--memory-limit",
        envvar="FLOWFENCE_MEMORY_LIMIT",
        help="DuckDB memory_limit (4GB, 512MiB).",
    ),
]
Threads = Annotated[
    int | None,
    typer.Option("--threads", envvar="FLOWFENCE_THREADS", help="DuckDB threads."),
]
TempDir = Annotated[
    Path | None,
    typer.Option("--temp-dir", envvar="FLOWFENCE_TEMP_DIR", help="DuckDB spill directory."),
]
Inventory = Annotated[
    Path | None,
    typer.Option(
        "--inventory",
        help="`kubectl get pods -A -o json` output: resolves named ports (`port: http`) "
        "against the destination pods' container ports. From `kubectl get pods,namespaces -A "
        "-o json` it also gives the namespace list and labels, unless --namespaces is given "
        "(which takes precedence).",
        exists=True,
        dir_okay=False,
    ),
]
Now = Annotated[
    str | None,
    typer.Option("--now", help=f"Fix the clock (RFC 3339, e.g. {times.EXAMPLE})."),
]


def time_option(value: str | None, option: str) -> datetime | None:
    """An RFC 3339 time option (UTC), None when not given; exit 2 naming `option` otherwise."""
    return None if value is None else times.parse_option(value, option)


def now_option(value: str | None) -> datetime:
    """`--now`, or the wall clock (to the second) when not given."""
    return times.now() if value is None else times.parse_option(value, "--now")


_SIZE = re.compile(r"(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}


def parse_size(text: str, option: str) -> int:
    """A byte size such as `16MiB` (`--max-body`, `--max-line-bytes`)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{option}: {text!r} is not a size such as 16MiB")
    return int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]


_LISTEN = re.compile(r"\[?([^\[\]]*?)\]?:(\d{1,5})")


def parse_listen(text: str, example: str, any_host: str | None = None) -> tuple[str, int]:
    """`--listen HOST:PORT` (IPv6 as `[::1]:PORT`). `any_host`: the host of `:PORT`, which is
    refused without it; port 0 (any free port) is allowed only together with `any_host`."""
    match = _LISTEN.fullmatch(text.strip())
    port = int(match.group(2)) if match is not None else -1
    lowest = 0 if any_host is not None else 1
    host = (match.group(1) if match is not None else "") or any_host
    if match is None or not lowest <= port <= 65535 or not host:
        raise ConfigError(f"--listen: {text!r} is not HOST:PORT (IPv6 as {example})")
    return host, port

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flowfence import __version__
from flowfence.cli.app import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"flowfence {__version__}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "replay", "fixtures"):
        assert command in out


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowfence.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("flowfence ")


def test_the_cli_has_polars_return_freed_memory_in_the_background() -> None:
    """Issue 12 (memory, time): the command line sets Polars' jemalloc to return freed pages
    after a second, from a background thread, before polars is loaded (it reads the variable
    only then); a value the user set is kept."""
    code = (
        "import os, sys; import flowfence.cli; "
        "print('polars' in sys.modules, os.environ['_RJEM_MALLOC_CONF'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
    assert run.stdout.split() == ["False", conf]
    env["_RJEM_MALLOC_CONF"] = "dirty_decay_ms:5000"
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert run.stdout.split() == ["False", "dirty_decay_ms:5000"]

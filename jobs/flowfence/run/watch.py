"""Watch mode: run every `interval` until SIGTERM or SIGINT, for a long-lived Deployment.

The first signal asks to stop: a run in progress finishes (state, policies and report are
written) and the loop ends with exit 0; between runs the loop ends at once. A second signal
stops at once (the state is crash-safe, so the next start simply redoes that run). Runs are
spaced `every` apart from their starts; a run longer than that is followed by the next one
immediately.

A run that fails for a reason that may pass (the flow logs unreadable for a moment, another
run holding the state lock, a disk error) is reported and the loop goes on; bad
configuration or a refused state ends it with that error's exit code.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from flowfence.core.errors import (
    ConfigError,
    ExitCode,
    FlowfenceError,
    PolicyError,
    StateError,
)
from flowfence.core.lock import LockHeld

SIGNALS = (signal.SIGINT, signal.SIGTERM)
RunOnce = Callable[[int], None]
_TICK = 0.1


class StopNow(FlowfenceError):
    """A second signal: stop without finishing the run."""

    exit_code = ExitCode.INTERRUPTED


@dataclass
class Stop:
    """Set by the first signal; the loop checks it between runs. A plain flag: a signal
    handler must not take locks the interrupted code may hold (threading.Event does)."""

    requested: bool = False
    signal_name: str | None = None

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning early once a stop is requested."""
        end = time.monotonic() + seconds
        while not self.requested and (left := end - time.monotonic()) > 0:
            time.sleep(min(_TICK, left))


@contextmanager
def handle_signals(stop: Stop, notify: Callable[[str], None]) -> Iterator[Stop]:
    """Install the watch handlers for the `with` block, then restore the previous ones."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.requested:
            raise StopNow(f"interrupted by a second {name}")
        stop.signal_name = name
        stop.requested = True
        notify(f"{name}: stopping after the run in progress (send it again to stop now)")

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fatal(exc: FlowfenceError) -> bool:
    if isinstance(exc, LockHeld):
        return False
    return isinstance(exc, ConfigError | PolicyError | StateError | StopNow)


def loop(
    run_once: RunOnce,
    every: float,
    stop: Stop,
    notify: Callable[[str], None],
    *,
    max_runs: int | None = None,
) -> int:
    """Call `run_once(n)` every `every` seconds until `stop` is set; returns the exit code."""
    n = 0
    while not stop.requested and (max_runs is None or n < max_runs):
        n += 1
        began = time.monotonic()
        try:
            run_once(n)
        except FlowfenceError as exc:
            if _fatal(exc):
                raise
            notify(f"run {n} failed: {exc}")
        else:
            notify(f"run {n} done")
        if stop.requested or (max_runs is not None and n >= max_runs):
            break
        wait = max(0.0, every - (time.monotonic() - began))
        notify(f"next run in {wait:.0f}s")
        stop.sleep(wait)
    if stop.signal_name:
        notify(f"stopped by {stop.signal_name} after {n} run(s)")
    return 0

"""Named pause points of a run, for crash and concurrency tests.

`FLOWFENCE_PAUSE_AT=after-read` (a comma-separated list of steps) makes the job stop at that
step: it writes the step name to `FLOWFENCE_PAUSE_FILE` (when set), then waits while that file
exists, or forever without one. A test waits for the file, then kills the process (SIGKILL: a
crash at exactly that point) or deletes the file to let the run go on. Without the variable,
`reached` does nothing.

Steps, in the order a run passes them:

- `after-lock`: the state lock is held, nothing read yet;
- `after-read`: the new flow logs are read and aggregated, nothing written;
- `after-state-tables`: the new state tables are written, the manifest still names the old;
- `after-manifest`: the new manifest is in place, the old tables not yet deleted;
- `after-state`: the state commit is complete;
- `after-policies`: `policies/` is written, the reports are not;
- `after-report`: everything is written, the lock is still held.

And three of the ingest store, where its files are in place and its manifest does not list
them, or a merged file is in place beside the files it replaces:

- `ingest-after-move`: on disk (ingest/store.py, per input of `ingest` and `receive`), the
  input's files are renamed into their partitions;
- `ingest-after-upload`: on an object store (ingest/store_s3.py), the objects are uploaded;
- `compact-after-rename`: `ingest --compact` renamed a partition's merged file in, the old
  files are still there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flowfence.core import atomic

STEPS = (
    "after-lock",
    "after-read",
    "after-state-tables",
    "after-manifest",
    "after-state",
    "after-policies",
    "after-report",
)
INGEST_STEPS = ("ingest-after-move", "ingest-after-upload", "compact-after-rename")
PAUSE_AT = "FLOWFENCE_PAUSE_AT"
PAUSE_FILE = "FLOWFENCE_PAUSE_FILE"
_POLL = 0.02


def _wanted() -> set[str]:
    raw = os.environ.get(PAUSE_AT, "")
    steps = {s.strip() for s in raw.split(",") if s.strip()}
    known = (*STEPS, *INGEST_STEPS)
    unknown = steps - set(known)
    if unknown:
        raise ValueError(f"{PAUSE_AT}: unknown steps {sorted(unknown)}; known: {', '.join(known)}")
    return steps


def reached(step: str) -> None:
    """Pause here if `FLOWFENCE_PAUSE_AT` names `step` (see the module doc)."""
    if step not in STEPS and step not in INGEST_STEPS:
        raise ValueError(f"unknown step {step!r}")
    if step not in _wanted():
        return
    marker = os.environ.get(PAUSE_FILE)
    if marker:
        atomic.write_text(Path(marker), f"{step} {os.getpid()}\n")
    while marker is None or Path(marker).exists():
        time.sleep(_POLL)

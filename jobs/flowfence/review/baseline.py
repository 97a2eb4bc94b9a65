"""The baseline a run compares with: the policy files and statuses before the run.

A rerun at the same `--now` (a retry, or a run killed between the policies and the report)
must report the same change as the run that committed the state, so that run records what it
changed (`baseline_table`, the state's `baseline` table) and the rerun undoes it (`baseline`).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from flowfence.state import tables

STATUS = "status:"


def baseline(
    disk: Mapping[str, bytes], recorded: pl.DataFrame, statuses: Mapping[str, str]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The policy files and namespace statuses before the run that committed `recorded`
    (tables.BASELINE_SCHEMA): the files on disk and the state's statuses, that run undone."""
    files, before = dict(disk), dict(statuses)
    for row in recorded.iter_rows(named=True):
        item: str = row["item"]
        if item.startswith(STATUS):
            ns = item.removeprefix(STATUS)
            if row["present"]:
                before[ns] = bytes(row["data"]).decode()
            else:
                before.pop(ns, None)
        elif row["present"]:
            files[item] = row["data"]
        else:
            files.pop(item, None)
    return files, before


def baseline_table(
    before: Mapping[str, bytes],
    after: Mapping[str, bytes],
    old_status: Mapping[str, str],
    new_status: Mapping[str, str],
) -> pl.DataFrame:
    """What `baseline` needs to undo a run: the changed files' and statuses' earlier values."""
    rows = [
        (path, path in before, before.get(path))
        for path in sorted({*before, *after})
        if before.get(path) != after.get(path)
    ]
    rows += [
        (f"{STATUS}{ns}", ns in old_status, old_status[ns].encode() if ns in old_status else None)
        for ns in sorted({*old_status, *new_status})
        if old_status.get(ns) != new_status.get(ns)
    ]
    return pl.DataFrame(rows, schema=tables.BASELINE_SCHEMA, orient="row")

"""The one DuckDB connection (core/database.py): the run's resource limits reach DuckDB,
extra options too, and the progress bar is off whatever later turns it on."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowfence.config.settings import Settings
from flowfence.core import database

SETTINGS = (
    "SELECT current_setting('threads'), current_setting('memory_limit'), "
    "current_setting('temp_directory'), current_setting('preserve_insertion_order'), "
    "current_setting('enable_progress_bar'), current_setting('enable_progress_bar_print')"
)


def test_settings_limits_and_options_reach_duckdb(tmp_path: Path) -> None:
    limits = Settings(memory_limit="256MiB", threads=1, temp_dir=tmp_path)
    con = database.connect(limits, preserve_insertion_order=False)
    try:
        assert con.sql(SETTINGS).fetchall() == [
            (1, "256.0 MiB", str(tmp_path), False, False, False)
        ]
    finally:
        con.close()


def test_without_limits_duckdb_keeps_its_defaults() -> None:
    con = database.connect()
    try:
        threads, memory, _, order, bar, printed = con.sql(SETTINGS).fetchall()[0]
        assert threads >= 1 and memory != "256.0 MiB" and order is True
        assert (bar, printed) == (False, False)
    finally:
        con.close()


def test_a_bar_forced_on_later_still_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    con = database.connect(database.Resources(threads=1))
    try:
        con.execute("SET progress_bar_time = 0")  # DuckDB turns the bar back on with this
        assert con.sql("SELECT count(*) FROM range(2000000) t(x) WHERE x % 7 = 3").fetchall()
    finally:
        con.close()
    assert capfd.readouterr().out == ""

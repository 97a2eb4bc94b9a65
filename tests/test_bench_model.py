"""The bench's stage split: its parts and `other` add up to the total of one real run."""

from __future__ import annotations

import pytest

from bench.model import Figure, Sample
from bench.results import RUN_COLUMNS, stage_rows


def _sample(seconds: float, **stages: float) -> Sample:
    return Sample(seconds=seconds, peak_rss=1, stages={"pipeline": seconds - 0.01, **stages})


def _cells(rows: list[str]) -> list[float]:
    last = rows[-1].strip("|").split("|")
    return [float(c) for c in last[1:]]


def test_the_split_is_read_off_the_median_run() -> None:
    # Stage by stage, the medians (derive 2.0, write 2.0) sum past the median total (3.0).
    fig = Figure(
        "run",
        (
            _sample(3.0, read=0.5, derive=2.0, write=0.3),
            _sample(3.5, read=0.5, derive=0.5, write=2.0),
            _sample(4.5, read=0.5, derive=2.5, write=2.5),
        ),
    )
    *parts, total = _cells(stage_rows([("x", fig)], RUN_COLUMNS))
    assert total == 3.5  # the median run
    assert sum(parts) == pytest.approx(total, abs=1e-9)
    assert parts[-1] >= 0  # `other` needs no clamping


def test_planning_inside_the_read_is_not_counted_twice() -> None:
    fig = Figure("run", (_sample(2.0, plan=0.2, bind=0.3, read=1.0, derive=0.5),))
    names = [name for name, _ in RUN_COLUMNS]
    *parts, total = _cells(stage_rows([("x", fig)], RUN_COLUMNS))
    split = dict(zip([*names, "other"], parts, strict=True))
    assert split["scan"] == 0.5  # read 1.0 - plan 0.2 - bind 0.3
    assert split["plan"] + split["bind"] + split["scan"] == pytest.approx(1.0)
    assert total == 2.0
    assert sum(parts) == pytest.approx(total, abs=1e-9)

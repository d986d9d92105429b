"""Progress bars of training and prediction show elapsed time, ETA and throughput."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress, TimeRemainingColumn

from srbench.progress import RateColumn, progress_columns


def _render(progress: Progress) -> str:
    buf = io.StringIO()
    Console(file=buf, width=200, force_terminal=False).print(progress.make_tasks_table(progress.tasks))
    return buf.getvalue()


def test_columns_have_eta_and_throughput_in_the_given_unit():
    columns = progress_columns("slices")
    assert any(isinstance(c, TimeRemainingColumn) for c in columns)
    assert [c.unit for c in columns if isinstance(c, RateColumn)] == ["slices"]


def test_rate_reads_items_per_second_or_seconds_per_item():
    now = [0.0]
    progress = Progress(*progress_columns("slices"), get_time=lambda: now[0])
    task = progress.add_task("predict", total=10)
    assert "- slices/s" in _render(progress)  # no estimate yet
    for t in (1.0, 1.5):
        now[0] = t
        progress.advance(task, 4)  # 4 slices in the 0.5 s after the first update
    assert "8.0 slices/s" in _render(progress) and "eta 0:00:01" in _render(progress)
    slow = Progress(*progress_columns("steps"), get_time=lambda: now[0])
    task = slow.add_task("train", total=5)
    for t in (2.0, 6.0):
        now[0] = t
        slow.advance(task, 1)
    assert "4.0 s/step" in _render(slow)

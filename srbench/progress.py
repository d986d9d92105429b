"""Progress-bar columns shared by training and prediction: count, elapsed time, ETA and throughput."""

from __future__ import annotations

from rich.progress import (BarColumn, MofNCompleteColumn, ProgressColumn, Task, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Throughput as ``12.3 slices/s`` (or ``s/step`` when slower than one per second), from rich's speed estimate
    over the last 30 s (the whole task's once finished); ``-`` until there is one."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text(f"- {self.unit}/s", style="progress.data.speed")
        if speed < 1:  # seconds per item read better than 0.04 items/s
            return Text(f"{1 / speed:.1f} s/{self.unit.rstrip('s')}", style="progress.data.speed")
        return Text(f"{speed:.1f} {self.unit}/s", style="progress.data.speed")


def progress_columns(unit: str, *extra: ProgressColumn) -> tuple[ProgressColumn, ...]:
    """description, bar, n/total, ``extra`` columns, elapsed, ETA, throughput in ``unit`` per second."""
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *extra, TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), RateColumn(unit))

"""The Metric interface: a named, directed, batched image-quality measure.

A metric takes a batch of predictions and references shaped ``(N, 1, H, W)``, float32, on any device,
with intensities in ``[0, 1]`` (data range 1), and returns one score per image, shape ``(N,)``.
Masking follows the paper's skull-stripped convention: both images are multiplied by the mask before the
metric sees them (done by the scorer, not by each metric).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

HIGHER = "higher"
LOWER = "lower"


@dataclass(frozen=True)
class MetricInfo:
    """What a leaderboard needs to know about a metric."""

    name: str
    direction: str  # HIGHER or LOWER is better
    value_range: tuple[float, float]
    definition: str  # one line, the convention in words
    digits: int = 4  # decimals a table shows


class Metric:
    """Base class of all metrics. Subclasses set ``info`` and implement ``compute``."""

    info: MetricInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def direction(self) -> str:
        return self.info.direction

    def unavailable_reason(self) -> str | None:
        """None when the metric can be computed here; otherwise a one-line notice with the fix."""
        return None

    def compute(self, pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Scores of ``pred`` against ``ref``, both ``(N, 1, H, W)`` in [0, 1]; returns ``(N,)`` float64."""
        raise NotImplementedError

    def __call__(self, pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        if pred.shape != ref.shape or pred.ndim != 4 or pred.shape[1] != 1:
            raise ValueError(f"{self.name}: expected two (N, 1, H, W) batches, got {tuple(pred.shape)} and {tuple(ref.shape)}")
        return self.compute(pred.float(), ref.float()).double()

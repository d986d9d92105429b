"""The Metric interface: a named, directed, batched image-quality measure, and the one check of its inputs.

A metric takes a batch of predictions and references shaped ``(N, 1, H, W)``, float32, on any device, with
intensities in ``[0, 1]`` (data range 1), and returns one score per image, shape ``(N,)``. The inputs are
checked here and only here (:func:`check_batch`: shape, finite, range): ``Metric.__call__`` checks then calls
``compute``, and the scorer (:mod:`srbench.scoring`) checks each batch once for all its metrics, so a metric's
``compute`` is written for valid input and never checks again. Masking follows the paper's skull-stripped
convention: both images are multiplied by the mask before the metric sees them (the scorer's job).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import SRBenchError

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


class MetricUnavailable(SRBenchError):
    """A metric cannot be computed here (e.g. missing weights); the message is the one-line fix."""


class MetricInputError(SRBenchError, ValueError):
    """Images a metric cannot score: wrong shape, non-finite values, or outside [0, 1]."""


def check_batch(pred: torch.Tensor, ref: torch.Tensor, who: str = "metric",
                clip_pred: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, ref)`` as float32, after checking them: two ``(N, 1, H, W)`` batches of one shape, finite, the
    reference in [0, 1]; the prediction in [0, 1] too, or, with ``clip_pred``, clipped to it (the paper clips
    predictions before scoring). One min/max pass per tensor; no copy of a float32 input except the clipped one."""
    if pred.shape != ref.shape or pred.ndim != 4 or pred.shape[1] != 1:
        raise MetricInputError(f"{who}: expected two (N, 1, H, W) batches of one shape, got {tuple(pred.shape)} "
                               f"and {tuple(ref.shape)}")
    pred, ref = pred.float(), ref.float()
    _require(ref, who, "reference", in_unit_range=True)
    _require(pred, who, "prediction", in_unit_range=not clip_pred)
    return (pred.clamp(0.0, 1.0) if clip_pred else pred), ref


def _require(t: torch.Tensor, who: str, which: str, in_unit_range: bool) -> None:
    if t.numel() == 0:
        raise MetricInputError(f"{who}: {which} is empty")
    lo, hi = (float(v) for v in torch.aminmax(t))  # NaN propagates into both, inf into one
    finite = math.isfinite(lo) and math.isfinite(hi)
    if not finite or (in_unit_range and (lo < 0.0 or hi > 1.0)):
        need = "finite and in [0, 1] (data range 1)" if in_unit_range else "finite"
        raise MetricInputError(f"{who}: {which} must be {need}; got min {lo:.4g}, max {hi:.4g}")


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
        """Scores of ``pred`` against ``ref``, both checked ``(N, 1, H, W)`` float32 in [0, 1]; returns ``(N,)``."""
        raise NotImplementedError

    def __call__(self, pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        pred, ref = check_batch(pred, ref, self.name)
        return self.compute(pred, ref).double()

"""Validation scoring during training: the only signal checkpoints, early stopping and schedules are chosen on.

The test split is scored once per run, by the runner, after training; nothing here ever sees it. A
``Validator`` scores a method's predictions on (a declared, evenly spaced subset of) the validation slices
exactly as the runner scores test slices: prediction clipped to [0, 1], both images multiplied by the mask,
data range 1, one of the built-in metrics (``srbench.metrics``), mean over slices.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .errors import SRBenchError
from .metrics import BUILTIN_METRICS
from .scoring import score_arrays


def evenly_spaced(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k`` is None or >= n).

    >>> evenly_spaced(12, 4)
    [0, 4, 7, 11]
    """
    if k is None or k >= n:
        return list(range(n))
    return [int(round(i)) for i in np.linspace(0, n - 1, k)]


class Validator:
    """Mean ``metric`` of ``predict`` on the validation pairs; ``higher_is_better`` says how to compare."""

    def __init__(self, pairs: SlicePairs, metric: str = "psnr", slices: int | None = None, batch_size: int = 4):
        metrics = {m.info.name: m for m in BUILTIN_METRICS}
        if metric not in metrics:
            raise SRBenchError(f"validation metric {metric!r} is not one of {', '.join(metrics)}")
        self.metric = metrics[metric]()
        if self.metric.unavailable_reason():
            raise SRBenchError(f"validation metric {metric!r} is unavailable: {self.metric.unavailable_reason()}")
        keep = evenly_spaced(len(pairs), slices)
        self.lr, self.hr = pairs.lr[keep], pairs.hr[keep]
        self.mask = pairs.mask[keep] if pairs.mask is not None else None
        self.batch_size = batch_size
        self.higher_is_better = self.metric.direction == "higher"
        self.n = len(keep)

    def __call__(self, predict: Callable[[torch.Tensor, torch.Generator], torch.Tensor], device: torch.device,
                 seed: int = 0) -> float:
        generator = torch.Generator().manual_seed(seed)  # the same draws at every evaluation: comparable scores
        out = []
        with torch.no_grad():
            for start in range(0, self.n, self.batch_size):
                batch = torch.from_numpy(self.lr[start:start + self.batch_size][:, None]).to(device)
                out.append(predict(batch, generator).float().cpu().numpy()[:, 0])
        sr = np.concatenate(out)
        if not np.isfinite(sr).all():
            return float("-inf") if self.higher_is_better else float("inf")  # a diverged network never wins
        scores = score_arrays(sr, self.hr, [self.metric], mask=self.mask).values[self.metric.name]
        return float(np.mean(scores))

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best


class NetworkValidation:
    """What the training engine calls: scores ``method``'s predictions with the loop's current inference weights.

    ``network(loop)`` names them (e.g. the EMA copy); they stand in for ``method.net`` while the validation
    slices are predicted by the method's own ``predict_slices``, so validation predicts exactly as inference does.
    """

    def __init__(self, method: "Method", validator: Validator, network: Callable):
        self.method, self.validator, self.network = method, validator, network
        self.n, self.higher_is_better, self.better = validator.n, validator.higher_is_better, validator.better

    def __call__(self, loop) -> float:
        saved, self.method.net = self.method.net, self.network(loop)
        try:
            return self.validator(self.method.predict_slices, self.method.device, self.method.seed)
        finally:
            self.method.net = saved

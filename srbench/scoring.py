"""Scoring a prediction against its reference, slice by slice, with the paper's conventions.

Both volumes are normalised by the reference's [min, max] to [0, 1] (callers that already normalised pass
``lo=0, hi=1``); the prediction is clipped to [0, 1]; with a mask both are multiplied by it (the paper's
skull-stripped convention) and slices whose mask is empty are skipped. Axial slices = first NumPy axis.
Slices are scored in batches: each batch is checked once (:func:`srbench.metric.check_batch`) and then
every metric scores it; the metric definitions are in :mod:`srbench.metrics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .metric import MetricInputError, check_batch

BATCH = 64  # slices per batch: large enough for the BLAS, small enough for a 384^2 batch of moments in memory


@dataclass
class SliceScores:
    indices: list[int]
    values: dict  # metric name -> np.ndarray (one per kept slice) or None when unavailable


def usable_slices(ref: np.ndarray, mask: np.ndarray | None, candidates=None) -> tuple[list[int], list[int]]:
    """Slices to score and slices skipped (empty mask; or, without a mask, a constant reference slice)."""
    candidates = range(len(ref)) if candidates is None else candidates
    keep, skip = [], []
    for k in candidates:
        empty = (not mask[k].any()) if mask is not None else float(np.ptp(ref[k])) == 0.0
        (skip if empty else keep).append(int(k))
    return keep, skip


def score_arrays(pred: np.ndarray, ref: np.ndarray, metrics, mask: np.ndarray | None = None,
                 indices=None, device: str = "cpu") -> SliceScores:
    """Score aligned (K, H, W) stacks already in [0, 1] (``indices`` names their slice numbers)."""
    if pred.shape != ref.shape:
        raise MetricInputError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    indices = list(range(len(ref))) if indices is None else list(indices)
    if mask is not None:
        m = (mask > 0).astype(np.float32)
        # A NaN or inf stays non-finite under the mask (x 0 gives NaN), so the check in score_slices still sees it.
        pred, ref = pred * m, ref * m
    values = score_slices(pred, ref, metrics, device=device) if len(ref) else {m.name: None for m in metrics}
    return SliceScores(indices=indices, values=values)


def score_slices(pred: np.ndarray, ref: np.ndarray, metrics, batch_size: int = BATCH,
                 device: str | torch.device = "cpu") -> dict[str, np.ndarray | None]:
    """Score stacks of slices ``(N, H, W)``: ``{metric name: (N,) float64 array}``.

    ``ref`` must be in [0, 1]; ``pred`` is clipped to [0, 1] (a NaN or inf in either is an error). ``metrics``
    holds Metric instances or classes. A metric whose ``unavailable_reason()`` is not None is skipped: its entry
    is None (ask the metric for the reason). Masking, if any, is the caller's (:func:`score_arrays`).
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.ndim != 3 or pred.shape != ref.shape:
        raise MetricInputError(f"score_slices: expected two (N, H, W) stacks of one shape, got {pred.shape} and "
                               f"{ref.shape}")
    if len(pred) == 0:
        raise MetricInputError("score_slices: no slices")
    if batch_size < 1:
        raise ValueError("score_slices: batch_size must be >= 1")
    instances = [m() if isinstance(m, type) else m for m in metrics]
    names = [m.name for m in instances]
    if len(set(names)) != len(names):
        raise ValueError(f"score_slices: duplicate metric names {names}")
    out: dict[str, np.ndarray | None] = {m.name: None for m in instances}
    available = [m for m in instances if m.unavailable_reason() is None]
    for m in available:
        out[m.name] = np.empty(len(pred), dtype=np.float64)
    device = torch.device(device)
    with torch.no_grad():
        for start in range(0, len(pred), batch_size):
            stop = min(start + batch_size, len(pred))
            # from_numpy shares memory: the only copies are the clipped prediction and a move to the device.
            p = torch.from_numpy(pred[start:stop, None]).to(device)
            r = torch.from_numpy(ref[start:stop, None]).to(device)
            p, r = check_batch(p, r, "score_slices", clip_pred=True)
            for m in available:
                out[m.name][start:stop] = m.compute(p, r).double().cpu().numpy()
    return out


def aggregate(values) -> tuple[float, float]:
    """``(mean, SD)`` of per-slice or per-volume scores, for "mean ± SD" tables.

    SD is the sample standard deviation (ddof = 1, the n - 1 denominator), the usual convention of
    mean ± SD in papers; it is NaN when there is one value (undefined, not 0). Empty input or a non-finite
    value is an error.
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("aggregate: no values")
    if not np.isfinite(a).all():
        raise ValueError(f"aggregate: {int((~np.isfinite(a)).sum())} non-finite values")
    std = float(np.std(a, ddof=1)) if a.size > 1 else math.nan
    return float(np.mean(a)), std


def summarise(values: dict) -> dict:
    """Per-metric mean and SD over slices (None for an unavailable metric)."""
    out = {}
    for name, v in values.items():
        if v is None:
            out[name] = None
        else:
            mean, std = aggregate(v)
            out[name] = {"mean": mean, "std": std, "n": int(len(v))}
    return out

"""Scoring a prediction against its reference, slice by slice, with the paper's conventions.

Both volumes are normalised by the reference's [min, max] to [0, 1] (callers that already normalised pass
``lo=0, hi=1``); the prediction is clipped to [0, 1]; with a mask both are multiplied by it (the paper's
skull-stripped convention) and slices whose mask is empty are skipped. Axial slices = first NumPy axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SRBenchError
from .metrics import aggregate, score_slices


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
        raise SRBenchError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if not np.isfinite(pred).all():
        raise SRBenchError("prediction contains NaN or Inf")
    indices = list(range(len(ref))) if indices is None else list(indices)
    pred = np.clip(pred, 0.0, 1.0)
    if mask is not None:
        m = (mask > 0).astype(np.float32)
        pred, ref = pred * m, ref * m
    values = score_slices(pred, ref, metrics, device=device) if len(ref) else {m.name: None for m in metrics}
    return SliceScores(indices=indices, values=values)


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

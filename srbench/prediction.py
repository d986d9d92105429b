"""The contract of a method's output, checked in one place: ``srbench run``, ``srbench infer`` and the plugin
conformance kit (``srbench.testing``) all pass every prediction through :func:`check_prediction`.

``predict_volume(lr, grid, slices)`` must return a NumPy array of shape ``(len(slices), H, W)`` (H, W: the grid's
axial size), of a floating dtype, all finite, in [0, 1] up to a tolerance: values within ``RANGE_LIMITS`` are
clipped to [0, 1] (the design's rule: predictions are clipped before scoring); values beyond them mean the
plugin forgot to map its network's range back and are refused rather than clipped into a plausible image.
A failure is one ``SRBenchError`` line naming the method, its plugin and what was wrong.
"""

from __future__ import annotations

import numpy as np

from .errors import SRBenchError
from .plugins import origin

RANGE_LIMITS = (-0.5, 1.5)


def method_label(name: str) -> str:
    """``method 'x' (plugin 'p')``: who to blame, as every output error says it."""
    plugin = origin("methods", name)[0]
    return f"method {name!r} (plugin {plugin!r})" if plugin != "?" else f"method {name!r}"


def check_prediction(pred, n_slices: int, plane: tuple[int, int], name: str, where: str = "") -> np.ndarray:
    """``pred`` as float32 in [0, 1], once it is checked to be what ``predict_volume`` promises for ``n_slices``
    slices of a ``plane`` = (H, W) grid; else a one-line error naming the method, its plugin and ``where``."""
    who = method_label(name) + (f" on {where}" if where else "")
    check_shape(pred, n_slices, plane, who)
    check_values(pred, who)
    return np.clip(pred.astype(np.float32, copy=False), 0.0, 1.0)


def check_shape(pred, n_slices: int, plane: tuple[int, int], who: str) -> None:
    """A NumPy array of shape (n_slices, H, W)."""
    expected = (n_slices, *plane)
    if not isinstance(pred, np.ndarray):
        kind = "None" if pred is None else f"{type(pred).__module__}.{type(pred).__name__}"
        hint = " (call .cpu().numpy())" if type(pred).__module__.startswith("torch") else ""
        raise SRBenchError(f"{who}: predict_volume returned {kind}, expected a NumPy array {expected}{hint}")
    if pred.shape != expected:
        hint = ""
        if pred.ndim == 4 and pred.shape[:1] == expected[:1]:
            hint = ": predict_slices returns (N, 1, H, W); predict_volume returns (N, H, W)"
        elif pred.ndim == 3 and len(pred) != n_slices:
            hint = ": one output slice per requested slice index"
        raise SRBenchError(f"{who}: predict_volume returned shape {pred.shape}, expected {expected} "
                           f"(len(slices), H, W of the HR grid, odd sizes included){hint}")


def check_values(pred: np.ndarray, who: str) -> None:
    """Floating, finite, and within ``RANGE_LIMITS``."""
    if not np.issubdtype(pred.dtype, np.floating):
        raise SRBenchError(f"{who}: predict_volume returned {pred.dtype} values, expected float32 in [0, 1]")
    bad = ~np.isfinite(pred)
    if bad.any():
        raise SRBenchError(f"{who}: {int(bad.sum())} NaN or Inf value(s) in the prediction")
    if pred.size:
        lo, hi = float(pred.min()), float(pred.max())
        if lo < RANGE_LIMITS[0] or hi > RANGE_LIMITS[1]:
            raise SRBenchError(f"{who}: prediction range [{lo:.3g}, {hi:.3g}] is far outside [0, 1]: srbench gives "
                               "intensities in [0, 1] and scores them there; map back from a network's [-1, 1] "
                               "inside the plugin")

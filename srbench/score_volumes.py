"""``srbench score``: any two volumes on one grid, scored slice by slice with the paper's conventions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import SRBenchError
from .scoring import score_arrays, summarise, usable_slices
from .volume import minmax_range, normalise, read_volume, require_finite, require_same_grid, to_array


def _metrics():
    from .plugins import get_registry

    try:
        return list(get_registry().metrics.values())
    except SRBenchError:
        from .metrics import BUILTIN_METRICS

        return [m() for m in BUILTIN_METRICS]


def score_volumes(pred_path: Path, ref_path: Path, mask_path: Path | None = None, device: str = "cpu") -> dict:
    """Both normalised by the reference's [min, max]; prediction clipped; masked; empty-mask slices skipped."""
    mask = read_volume(mask_path) if mask_path is not None else None
    return score_images(read_volume(pred_path), read_volume(ref_path), mask, device,
                        names=(str(pred_path), str(ref_path), str(mask_path)))


def score_images(pred_img, ref_img, mask_img=None, device: str = "cpu", names=("prediction", "reference", "mask")
                 ) -> dict:
    """:func:`score_volumes` on SimpleITK images (``names`` for messages: prediction, reference, mask)."""
    require_same_grid(pred_img, ref_img, names[0], names[1])
    ref, pred = to_array(ref_img), to_array(pred_img)
    require_finite(ref, names[1])
    require_finite(pred, names[0])
    mask = None
    if mask_img is not None:
        require_same_grid(mask_img, ref_img, names[2], names[1])
        mask = to_array(mask_img) > 0
    lo, hi = minmax_range(ref, names[1])
    ref, pred = normalise(ref, lo, hi), normalise(pred, lo, hi)
    keep, skipped = usable_slices(ref, mask, None) if mask is not None else (list(range(len(ref))), [])
    if not keep:
        raise SRBenchError(f"{names[2]}: mask is empty on every slice")
    metrics = _metrics()
    scores = score_arrays(pred[keep], ref[keep], metrics, mask=None if mask is None else mask[keep], device=device)
    summary = summarise(scores.values)
    slices = []
    for i, k in enumerate(keep):
        slices.append({"index": k, **{n.lower(): float(v[i]) for n, v in scores.values.items() if v is not None}})
    # Lower-case keys whatever the metrics call themselves; NaN (the SD of one slice) becomes null, as JSON has no NaN.
    return {"metrics": {n.lower(): (None if s is None else {"mean": _finite(s["mean"]), "std": _finite(s["std"])})
                        for n, s in summary.items()},
            "slices": slices, "skipped": skipped,
            "unavailable": {m.name.lower(): m.unavailable_reason() for m in metrics if m.unavailable_reason()}}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None

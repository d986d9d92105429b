"""Split isolation: changing one split's HR content must leave every other split's LR inputs bit-identical.

A dataset is split before anything is degraded or interpolated; each case is degraded and put back on its HR
grid on its own (``runner.prepare``). This check proves it for a dataset, a degradation and the interpolators
methods use: it computes every case's LR-on-HR-grid input, then, for each split in turn, asks the dataset for a
copy whose cases of that split hold noise (``Dataset.perturbed``: for the demo, noise in the slabs' common
source volume), recomputes the other splits' inputs and compares them bit for bit. A pipeline that degraded the
whole template and then cut slabs would fail it: a cubic B-spline prefilter is global along an axis.

    srbench check-splits --dataset demo [--degradation SPEC] [--interpolators nearest,linear,bspline]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .runner import make_dataset, make_degradation, prepare
from .volume import INTERPOLATORS, resample_to, to_array


@dataclass
class Leak:
    perturbed: str      # the split whose HR content was replaced by noise
    split: str          # another split
    case_id: str
    interpolator: str
    max_abs_diff: float  # 0.0: bit-identical


def lr_inputs(dataset, degradation, interpolators, seed: int = 0) -> dict[tuple[str, str, str], np.ndarray]:
    """(split, case id, interpolator) -> the case's LR volume put back on its HR grid, as methods receive it."""
    out = {}
    for split in dataset.manifest().splits:
        for case in dataset.cases(split):
            p = prepare(case, degradation, seed)
            for interp in interpolators:
                out[split, case.case_id, interp] = to_array(resample_to(p.lr, p.hr, interp))[p.slices]
    return out


def check(dataset, degradation, interpolators=tuple(INTERPOLATORS), seed: int = 0) -> list[Leak]:
    """One row per (perturbed split, other split's case, interpolator); a split is isolated when every row of
    the other splits has ``max_abs_diff == 0``."""
    base = lr_inputs(dataset, degradation, interpolators, seed)
    rows = []
    for split in dataset.manifest().splits:
        changed = lr_inputs(dataset.perturbed(split, seed=seed + 1), degradation, interpolators, seed)
        for (other, case_id, interp), before in base.items():
            if other == split:
                continue
            after = changed[other, case_id, interp]
            diff = float(np.abs(after - before).max()) if after.shape == before.shape else float("inf")
            rows.append(Leak(split, other, case_id, interp, diff))
    return rows


def check_spec(dataset: str, degradation: str | None = None, interpolators=None, data_root: str | None = None,
               seed: int = 0) -> tuple[str, list[Leak]]:
    """``check`` from command-line names; returns the degradation spec used and the rows."""
    ds = make_dataset(dataset, data_root)
    spec = degradation or ds.default_degradation
    _, deg = make_degradation(spec)
    return spec, check(ds, deg, tuple(interpolators or INTERPOLATORS), seed)

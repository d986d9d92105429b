"""Bicubic: cubic B-spline interpolation from the LR grid to the HR grid (SimpleITK sitkBSpline)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

import srbench
from srbench.method import Method
from srbench.volume import resample_to, to_array


class Bicubic(Method):
    name = "bicubic"
    version = "1.0.0"
    summary = "Cubic B-spline interpolation of the LR volume onto the HR grid (3-D, SimpleITK sitkBSpline)."
    citation = "Unser, Splines: a perfect fit for signal and image processing, IEEE SPM 1999."
    license = "Apache-2.0 (SimpleITK)"
    input_interpolator = "bspline"
    presets = {"tiny": {}, "paper": {}}

    def predict_volume(self, lr: sitk.Image, grid: sitk.Image, slices: Sequence[int], progress=None) -> np.ndarray:
        out = to_array(resample_to(lr, grid, "bspline"))[list(slices)]
        if progress is not None:
            progress(len(out))
        return out


@srbench.hookimpl
def register_methods(register):
    register(Bicubic)

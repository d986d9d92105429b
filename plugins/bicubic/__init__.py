"""Interpolation baselines, named as SR users read them (one plugin, two methods):

- ``bicubic``: Keys cubic convolution, a = -0.5 (MATLAB ``imresize(..., 'bicubic')``, Pillow ``BICUBIC``,
  BasicSR's ``imresize``), separable in 3-D, edge samples repeated, no antialiasing (``srbench.cubic``).
  PyTorch's ``interpolate(mode="bicubic")`` is the same kernel with a = -0.75 (OpenCV's choice).
- ``bspline``: the cubic B-spline (SimpleITK ``sitkBSpline``: prefiltered, so smoother than Keys and not
  interpolating the raw samples' neighbourhood the same way); srbench's "bicubic" before version 2.

Which one the Res-SRDiff paper's "Bicubic" was: most likely the cubic B-spline. The paper does not define it,
but the official code's data preparation puts LR on the HR grid with SimpleITK's B-spline, which is also what
its networks receive as input, and SimpleITK has no Keys kernel; this is an inference from the code, not a
statement of the paper. Both are offered so that a table can say which one it shows.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from srbench.cubic import resample_cubic
from srbench.method import Method
from srbench.volume import resample_to, to_array


class _Interpolation(Method):
    """An interpolator from the LR grid straight onto the HR grid: nothing to fit, deterministic."""

    presets = {"tiny": {}, "paper": {}}

    def _resample(self, lr: sitk.Image, grid: sitk.Image, slices: list[int]) -> np.ndarray:
        raise NotImplementedError

    def predict_volume(self, lr: sitk.Image, grid: sitk.Image, slices: Sequence[int], progress=None) -> np.ndarray:
        out = self._resample(lr, grid, list(slices))
        if progress is not None:
            progress(len(out))
        return out


class Bicubic(_Interpolation):
    name = "bicubic"
    version = "2.0.0"  # 1.x was the cubic B-spline, now `bspline`
    summary = ("Keys cubic convolution (a = -0.5, as MATLAB imresize; no antialiasing, edges repeated) of the LR "
               "volume onto the HR grid, separable in 3-D.")
    citation = "Keys, Cubic convolution interpolation for digital image processing, IEEE TASSP 1981."
    license = "MIT (srbench)"
    input_interpolator = "cubic"

    def _resample(self, lr, grid, slices):
        return resample_cubic(lr, grid, slices)


class BSpline(_Interpolation):
    name = "bspline"
    version = "1.0.0"
    summary = ("Cubic B-spline interpolation of the LR volume onto the HR grid (3-D, SimpleITK sitkBSpline); "
               "most likely the paper's 'Bicubic'.")
    citation = "Unser, Splines: a perfect fit for signal and image processing, IEEE SPM 1999."
    license = "Apache-2.0 (SimpleITK)"
    input_interpolator = "bspline"

    def _resample(self, lr, grid, slices):
        return to_array(resample_to(lr, grid, "bspline"))[slices]


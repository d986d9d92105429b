"""Keys cubic convolution ("bicubic" as MATLAB ``imresize`` and PyTorch ``interpolate(mode="bicubic")`` mean it).

Keys (1981), a = -0.5: the kernel ``k(s) = (a+2)|s|^3 - (a+3)|s|^2 + 1`` for |s| <= 1, ``a|s|^3 - 5a|s|^2 + 8a|s|
- 4a`` for 1 < |s| < 2, 0 beyond. Four taps per axis, applied separably in 3-D (tricubic). It interpolates (the
output passes through the input samples) with no prefilter, unlike the cubic B-spline (``sitkBSpline``), which
smooths and needs a global prefilter. Samples beyond the input's edge repeat the edge sample (PyTorch's
border handling; MATLAB mirrors instead, which differs in the outermost two output voxels only). No
antialiasing: the kernel is not widened on axes where the output is coarser than the input (PyTorch's
``antialias=False``); SR only ever upsamples, where MATLAB's antialiasing does nothing either.

SimpleITK, scipy and scikit-image offer only B-splines at order 3, so the kernel is written here; the tests
compare it with PyTorch's bicubic on every pair of axes.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import SRBenchError

A = -0.5  # Keys' parameter, as MATLAB and PyTorch


def keys_kernel(s: np.ndarray, a: float = A) -> np.ndarray:
    s = np.abs(s)
    near = ((a + 2) * s - (a + 3)) * s * s + 1
    far = ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
    return np.where(s <= 1, near, np.where(s < 2, far, 0.0))


def weight_matrix(positions: np.ndarray, n_in: int, a: float = A) -> np.ndarray:
    """(len(positions), n_in) weights: output sample j = sum_i W[j, i] * input[i], at continuous input index
    ``positions[j]``; taps beyond the input are folded onto its edge samples (edge replication)."""
    base = np.floor(positions).astype(int)
    frac = positions - base
    w = np.zeros((len(positions), n_in))
    rows = np.arange(len(positions))
    for tap in (-1, 0, 1, 2):
        np.add.at(w, (rows, np.clip(base + tap, 0, n_in - 1)), keys_kernel(frac - tap, a))
    return w


def _axis_positions(image: sitk.Image, grid: sitk.Image) -> list[np.ndarray]:
    """Per sitk axis (x, y, z): the continuous index in ``image`` of each of ``grid``'s voxel centres along it.

    Separable only when the two grids share their axes (the same direction); any other pair is refused."""
    origin = np.array(image.TransformPhysicalPointToContinuousIndex(grid.GetOrigin()))
    steps = []
    for axis in range(3):
        unit = [0] * 3
        unit[axis] = 1
        point = grid.TransformContinuousIndexToPhysicalPoint(unit)
        steps.append(np.array(image.TransformPhysicalPointToContinuousIndex(point)) - origin)
    jacobian = np.array(steps)  # row: one grid step along axis -> its displacement in image indices
    if np.abs(jacobian - np.diag(np.diag(jacobian))).max() > 1e-6 * max(1.0, np.abs(jacobian).max()):
        raise SRBenchError("cubic convolution needs the source and target grids to share their axes (same "
                           "direction); resample with bspline instead")
    return [origin[axis] + np.arange(grid.GetSize()[axis]) * jacobian[axis, axis] for axis in range(3)]


def resample_cubic(image: sitk.Image, grid: sitk.Image, z_slices=None, a: float = A) -> np.ndarray:
    """``image`` sampled on ``grid``'s voxel centres by Keys cubic convolution; a (z, y, x) float32 array,
    restricted to the axial indices ``z_slices`` of ``grid`` when given."""
    px, py, pz = _axis_positions(image, grid)
    if z_slices is not None:
        pz = pz[np.asarray(list(z_slices), dtype=int)]
    data = sitk.GetArrayFromImage(image).astype(np.float64)  # (z, y, x)
    nz, ny, nx = data.shape
    out = (weight_matrix(pz, nz, a) @ data.reshape(nz, -1)).reshape(len(pz), ny, nx)  # along z
    out = np.matmul(weight_matrix(py, ny, a), out)  # along y, every axial slice at once
    return (out @ weight_matrix(px, nx, a).T).astype(np.float32)  # along x

"""`bicubic` (Keys cubic convolution) and `bspline` (cubic B-spline), each against an independent implementation."""

import numpy as np
import pytest
import SimpleITK as sitk

from srbench.cubic import keys_kernel, resample_cubic, weight_matrix
from srbench.errors import SRBenchError
from srbench.infer import grid_with_spacing
from srbench.plugins import get_registry
from srbench_plugins.bicubic import Bicubic, BSpline


def _lr(shape=(6, 7, 8), spacing=(2.0, 3.0, 1.5), seed=0) -> sitk.Image:
    image = sitk.GetImageFromArray(np.random.default_rng(seed).random(shape).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin((1.0, -2.0, 3.0))
    return image


def test_keys_kernel_interpolates_and_sums_to_one():
    assert keys_kernel(np.array([0.0, 1.0, 2.0, -1.0])).tolist() == [1.0, 0.0, 0.0, 0.0]
    for t in np.linspace(0, 1, 7):
        assert keys_kernel(np.array([t + 1, t, 1 - t, 2 - t])).sum() == pytest.approx(1.0)
    # a = -0.5 reproduces quadratics exactly (Keys' third-order accuracy) away from the edges
    x = np.arange(12.0) ** 2
    pos = np.linspace(3, 8, 11)
    np.testing.assert_allclose(weight_matrix(pos, 12) @ x, pos ** 2, atol=1e-12)


def test_3d_keys_equals_pytorch_bicubic_axis_pair_by_axis_pair():
    """PyTorch's bicubic is the same kernel with a = -0.75: with that a, the 3-D resampling on an
    align_corners=False grid equals torch bicubic over (y, x) then over (z, ·), border included."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    lr = _lr()
    grid = grid_with_spacing(lr, (1.0, 1.0, 0.5))  # x2 in x, x3 in y, x3 in z
    ours = resample_cubic(lr, grid, a=-0.75)
    t = torch.from_numpy(sitk.GetArrayFromImage(lr).astype(np.float64))
    yx = F.interpolate(t[:, None], scale_factor=(3, 2), mode="bicubic", align_corners=False)[:, 0]
    zyx = F.interpolate(yx.permute(2, 0, 1)[:, None], scale_factor=(3, 1), mode="bicubic",
                        align_corners=False)[:, 0].permute(1, 2, 0)
    assert ours.shape == tuple(zyx.shape) == (18, 21, 16)
    np.testing.assert_allclose(ours, zyx.numpy(), atol=1e-6)


def test_keys_a_minus_half_equals_pillow_bicubic_inside():
    """Pillow's BICUBIC is Keys with a = -0.5 (MATLAB's); it renormalises the kernel at the border, so the
    comparison leaves out the outermost two LR samples' reach."""
    Image = pytest.importorskip("PIL.Image")
    plane = np.random.default_rng(1).random((7, 8)).astype(np.float32)
    theirs = np.asarray(Image.fromarray(plane, mode="F").resize((24, 21), Image.BICUBIC))
    rows, cols = weight_matrix((np.arange(21) + 0.5) / 3 - 0.5, 7), weight_matrix((np.arange(24) + 0.5) / 3 - 0.5, 8)
    ours = rows @ plane @ cols.T
    np.testing.assert_allclose(ours[7:-7, 7:-7], theirs[7:-7, 7:-7], atol=1e-6)
    assert np.abs(ours - theirs).max() > 1e-3  # the border does differ: the test compares what it claims


def test_bicubic_method_predicts_the_requested_slices_with_keys():
    lr = _lr()
    grid = grid_with_spacing(lr, (1.0, 1.0, 0.5))
    full = resample_cubic(lr, grid)
    method = Bicubic(preset="tiny", device="cpu")
    counted = []
    out = method.predict_volume(lr, grid, [2, 5, 9], progress=counted.append)
    np.testing.assert_allclose(out, full[[2, 5, 9]], atol=1e-6)
    assert counted == [3] and method.card()["input_interpolator"] == "cubic"


def test_bspline_method_equals_scipy_cubic_spline_inside():
    """SimpleITK's B-spline (mirror-boundary prefilter) against scipy.ndimage.map_coordinates(order=3)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    lr = _lr(shape=(9, 10, 11), spacing=(1.0, 1.0, 1.0))
    grid = grid_with_spacing(lr, (0.5, 0.5, 0.5))
    ours = BSpline(preset="tiny", device="cpu").predict_volume(lr, grid, range(grid.GetSize()[2]))
    idx = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) / 2 - 0.5 for n in ours.shape], indexing="ij"))
    theirs = ndimage.map_coordinates(sitk.GetArrayFromImage(lr).astype(np.float64), idx, order=3, mode="mirror")
    inside = (slice(4, -4),) * 3
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=1e-5)
    assert np.abs(ours - resample_cubic(lr, grid)).max() > 1e-3  # B-spline and Keys really differ


def test_both_are_registered_by_one_plugin_and_rotated_grids_are_refused():
    reg = get_registry()
    assert reg.owners[("methods", "bicubic")] == reg.owners[("methods", "bspline")] == "bicubic"
    lr = _lr()
    grid = grid_with_spacing(lr, (1.0, 1.0, 1.0))
    c, s = np.cos(0.3), np.sin(0.3)
    grid.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    with pytest.raises(SRBenchError, match="share their axes"):
        resample_cubic(lr, grid)

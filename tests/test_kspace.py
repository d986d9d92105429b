"""k-space truncation against the analytic results: band-limited images survive, an impulse becomes the
Dirichlet kernel of the LR width, energy follows Parseval, and the LR grid keeps the FOV exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.signal import windows

from srbench.errors import SRBenchError
from srbench.kspace import KSpace
from srbench.plugins import lookup
from srbench.runner import make_degradation

from conftest import DIRECTION


def volume(array: np.ndarray, spacing=(0.66, 0.7, 1.5), origin=(10.0, -5.0, 3.0), direction=DIRECTION):
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([float(d) for d in np.asarray(direction).ravel()])
    return image


def corners(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Physical outer corners of the grid (continuous index -1/2 and N - 1/2)."""
    lo = image.TransformContinuousIndexToPhysicalPoint([-0.5] * 3)
    hi = image.TransformContinuousIndexToPhysicalPoint([n - 0.5 for n in image.GetSize()])
    return np.array(lo), np.array(hi)


def hr_index_of_lr_voxels(lr: sitk.Image, hr: sitk.Image) -> np.ndarray:
    """(nz, ny, nx, 3) HR continuous (x, y, z) index of every LR voxel centre, through physical space."""
    nx, ny, nz = lr.GetSize()
    out = np.zeros((nz, ny, nx, 3))
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                out[k, j, i] = hr.TransformPhysicalPointToContinuousIndex(lr.TransformIndexToPhysicalPoint((i, j, k)))
    return out


@pytest.mark.parametrize("size, target", [((61, 50, 20), (2.0, 2.0, 3.0)), ((96, 96, 24), (2.0, 2.0, 3.0)),
                                          ((45, 39, 12), (1.98, 2.1, 4.5))])
def test_lr_grid_keeps_the_fov_exactly(size, target):
    hr = volume(np.zeros(size[::-1]))
    lr = KSpace(spacing=target).apply(hr)
    hr_spacing = np.array(hr.GetSpacing())
    fov = np.array(size) * hr_spacing
    expected_size = tuple(int(max(1, round(f / t))) for f, t in zip(fov, target))
    assert lr.GetSize() == expected_size
    np.testing.assert_allclose(lr.GetSpacing(), fov / np.array(expected_size), rtol=1e-12)
    # Within the rounding of the size: |FOV/N - t| = t |FOV/t - N| / N <= t / (2 N).
    bound = np.array(target) / (2 * np.array(expected_size))
    assert np.all(np.abs(np.array(lr.GetSpacing()) - target) <= bound + 1e-12)
    np.testing.assert_allclose(lr.GetDirection(), hr.GetDirection(), atol=1e-12)
    for a, b in zip(corners(lr), corners(hr)):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_band_limited_image_survives_truncation():
    """A sum of sinusoids below the LR Nyquist frequency is reproduced exactly at the LR voxel centres."""
    nx, ny, nz = 60, 51, 4
    rng = np.random.default_rng(0)
    terms = [(kx, ky, rng.uniform(0.2, 1.0), rng.uniform(0, 2 * np.pi))
             for kx, ky in [(0, 0), (3, 0), (0, 5), (-4, 2), (6, -7), (9, 8)]]  # |k| < N_lr / 2 = 10, 8.5

    def f(u, v):  # u, v: HR continuous index along x, y
        return 5 + sum(a * np.cos(2 * np.pi * (kx * u / nx + ky * v / ny) + p) for kx, ky, a, p in terms)

    v, u = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    hr = volume(np.broadcast_to(f(u, v), (nz, ny, nx)))
    lr = KSpace(factors=(3, 3, 1)).apply(hr)
    assert lr.GetSize() == (20, 17, 4)
    where = hr_index_of_lr_voxels(lr, hr)
    expected = f(where[..., 0], where[..., 1])
    np.testing.assert_allclose(sitk.GetArrayFromImage(lr), expected, atol=2e-5 * np.abs(expected).max())


def dirichlet(d: np.ndarray, n_hr: int, n_lr: int, window=None) -> np.ndarray:
    """(1/N) sum over the kept k of w_k exp(2 pi i k d / N), summed directly (no FFT): the impulse response."""
    k = np.arange(n_lr) - n_lr // 2
    w = np.ones(n_lr) if window is None else window
    return np.real((w[None, :] * np.exp(2j * np.pi * k[None, :] * d.reshape(-1, 1) / n_hr)).sum(axis=1)).reshape(
        d.shape) / n_hr


@pytest.mark.parametrize("window", ["none", "hann", "tukey"])
@pytest.mark.parametrize("n_hr, factor", [(63, 3), (64, 4), (50, 2.5)])
def test_impulse_becomes_the_dirichlet_kernel(n_hr, factor, window):
    n_lr = int(round(n_hr / factor))
    x0, y0 = 29, 17
    hr_array = np.zeros((2, 40, n_hr))
    hr_array[:, y0, x0] = 1.0
    hr = volume(hr_array, spacing=(0.5, 1.0, 2.0), direction=np.eye(3))
    lr = KSpace(factors=(factor, 1, 1), window=window, alpha=0.4).apply(hr)
    assert lr.GetSize() == (n_lr, 40, 2)
    out = sitk.GetArrayFromImage(lr)
    c = -0.5 + (np.arange(n_lr) + 0.5) * n_hr / n_lr  # HR index of each LR centre along x
    w = None
    if window != "none":
        sym = n_lr % 2 == 1
        w = windows.hann(n_lr, sym=sym) if window == "hann" else windows.tukey(n_lr, alpha=0.4, sym=sym)
    np.testing.assert_allclose(out[0, y0], dirichlet(c - x0, n_hr, n_lr, w), atol=1e-6)
    np.testing.assert_allclose(np.delete(out[0], y0, axis=0), 0, atol=1e-6)  # y not truncated: untouched
    assert out[0, y0].sum() == pytest.approx(n_lr / n_hr * (w[n_lr // 2] if w is not None else 1), rel=1e-5)


def test_impulse_on_an_lr_centre_is_one_lr_voxel_wide():
    """Resolution: the kernel's zeros fall on the other LR centres, one LR spacing apart (odd N_lr, no window)."""
    n_hr, n_lr = 63, 21
    hr_array = np.zeros((3, 63, n_hr))
    hr_array[:, 31, 31] = 1.0  # HR index 31 = LR centre 10 along x and y (c_j = 1 + 3 j)
    lr = KSpace(factors=(3, 3, 1)).apply(volume(hr_array, spacing=(0.7, 0.7, 2.0)))
    out = sitk.GetArrayFromImage(lr)[0]
    expected = np.zeros((n_lr, n_lr))
    expected[10, 10] = (n_lr / n_hr) ** 2
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # The continuous kernel: first zeros at +- N_hr / N_lr HR voxels = +- one LR spacing; FWHM ~ 1.207 LR voxels.
    d = np.linspace(0, n_hr / n_lr, 2001)
    kernel = dirichlet(d, n_hr, n_lr)
    assert abs(kernel[-1]) < 1e-9 and np.all(kernel[:-1] > 0)
    half = d[np.argmin(np.abs(kernel - kernel[0] / 2))]
    assert 2 * half / (n_hr / n_lr) == pytest.approx(1.2067, abs=0.01)


def test_energy_follows_parseval():
    """sum |LR|^2 = prod over axes of (N_lr / N_hr^2) x sum over the kept band of |DFT(HR)|^2 (odd N_lr)."""
    rng = np.random.default_rng(3)
    nx, ny = 64, 57
    hr_array = rng.standard_normal((1, ny, nx))
    hr_array = np.repeat(hr_array, 2, axis=0)
    lr = KSpace(factors=(64 / 21, 57 / 19, 1)).apply(volume(hr_array))
    assert lr.GetSize()[:2] == (21, 19)
    out = sitk.GetArrayFromImage(lr).astype(np.float64)[0]
    spectrum = np.fft.fftshift(np.fft.fft2(hr_array[0]))
    kept = spectrum[ny // 2 - 19 // 2: ny // 2 - 19 // 2 + 19, nx // 2 - 21 // 2: nx // 2 - 21 // 2 + 21]
    expected = (21 / nx ** 2) * (19 / ny ** 2) * (np.abs(kept) ** 2).sum()
    assert (out ** 2).sum() == pytest.approx(expected, rel=1e-5)
    # White noise: the kept fraction of the energy, (21/64)(19/57), and per voxel the variance drops by it.
    assert np.mean(out ** 2) / np.mean(hr_array ** 2) == pytest.approx(21 / 64 * 19 / 57, rel=0.15)


def test_mean_intensity_is_kept():
    hr = volume(np.random.default_rng(1).uniform(10, 20, (12, 40, 44)))
    lr = KSpace(spacing=(2.0, 2.0, 4.0), window="hann").apply(hr)
    assert sitk.GetArrayFromImage(lr).mean() == pytest.approx(sitk.GetArrayFromImage(hr).mean(), rel=1e-4)


def test_through_plane_slice_thickness_averaging():
    profile = np.random.default_rng(2).uniform(0, 100, 24)
    hr_array = np.broadcast_to(profile[:, None, None], (24, 8, 8))
    hr = volume(hr_array, spacing=(1.0, 1.0, 1.5))
    lr2 = sitk.GetArrayFromImage(KSpace(factors=(1, 1, 2)).apply(hr))[:, 4, 4]
    np.testing.assert_allclose(lr2, profile.reshape(12, 2).mean(axis=1), rtol=1e-5)
    lr3 = sitk.GetArrayFromImage(KSpace(spacing=(1, 1, 4.5)).apply(hr))[:, 4, 4]
    np.testing.assert_allclose(lr3, profile.reshape(8, 3).mean(axis=1), rtol=1e-5)
    # A thicker slab (6 mm = 4 HR slices) around each 3 mm LR centre; at the ends only the part inside the FOV.
    thick = sitk.GetArrayFromImage(KSpace(factors=(1, 1, 2), thickness=6.0).apply(hr))[:, 4, 4]
    np.testing.assert_allclose(thick[1:-1], [profile[2 * j - 1:2 * j + 3].mean() for j in range(1, 11)], rtol=1e-5)
    np.testing.assert_allclose(thick[0], profile[0:3].mean(), rtol=1e-5)
    # Non-integer factor: the box profile still keeps a constant and the mean of a linear ramp's slabs.
    const = sitk.GetArrayFromImage(KSpace(spacing=(1, 1, 2.5)).apply(volume(np.full((24, 8, 8), 7.0),
                                                                              spacing=(1.0, 1.0, 1.5))))
    np.testing.assert_allclose(const, 7.0, rtol=1e-6)


def test_through_plane_kspace_truncates_z_like_x():
    nz = 30
    w = np.arange(nz)
    f = 2 + np.cos(2 * np.pi * 4 * w / nz + 0.7)  # 4 cycles per FOV < N_lr/2 = 5
    hr = volume(np.broadcast_to(f[:, None, None], (nz, 6, 6)), direction=np.eye(3))
    lr = KSpace(factors=(1, 1, 3), through_plane="kspace").apply(hr)
    c = -0.5 + (np.arange(10) + 0.5) * 3
    np.testing.assert_allclose(sitk.GetArrayFromImage(lr)[:, 3, 3], 2 + np.cos(2 * np.pi * 4 * c / nz + 0.7),
                               atol=1e-5)


def test_window_suppresses_gibbs_ringing():
    edge = np.zeros((2, 4, 128))
    edge[..., 34:98] = 1.0  # edges half an LR voxel from the LR sample positions: where the overshoot peaks
    hr = volume(edge, direction=np.eye(3))
    plain = sitk.GetArrayFromImage(KSpace(factors=(4, 1, 1)).apply(hr))
    hann = sitk.GetArrayFromImage(KSpace(factors=(4, 1, 1), window="hann").apply(hr))
    assert plain.max() > 1.08 and plain.min() < -0.08  # the Gibbs overshoot (~9 % for a sharp edge)
    assert hann.max() < 1.01 and hann.min() > -0.01


def test_named_kspace_protocols_and_recorded_params():
    hr = volume(np.zeros((20, 96, 96)), spacing=(0.66, 0.66, 1.5))
    degradation = lookup("degradations", "prostate-t2w-kspace")()
    lr = degradation.apply(hr)
    assert lr.GetSize() == (32, 32, 10)
    np.testing.assert_allclose(lr.GetSpacing(), (1.98, 1.98, 3.0), rtol=1e-12)
    params = json.loads(json.dumps(degradation.params()))
    assert params["name"] == "kspace" and params["protocol"] == "prostate-t2w-kspace"
    assert params["spacing"] == [2.0, 2.0, 3.0] and params["through_plane"] == "average"
    brain = lookup("degradations", "brain-t1map-kspace")()
    assert brain.params()["factors"] == (3.0, 3.0, 3.0) and brain.params()["through_plane"] == "kspace"
    name, deg = make_degradation("kspace:spacing=2,2,3;window=tukey;alpha=0.3;thickness=3.5")
    assert name == "kspace"
    p = deg.params()
    assert (p["window"], p["alpha"], p["thickness"]) == ("tukey", 0.3, 3.5)
    rebuilt = KSpace(**{k: p[k] for k in ("factors", "spacing", "window", "alpha", "through_plane", "thickness")})
    assert rebuilt.params() == p


@pytest.mark.parametrize("spec, text", [
    ("kspace", "exactly one"),
    ("kspace:factors=2,2", "three numbers"),
    ("kspace:factors=0.5,1,1", "in [1, 16]"),
    ("kspace:factors=2,2,2;window=kaiser", "window"),
    ("kspace:factors=2,2,2;window=tukey;alpha=2", "alpha"),
    ("kspace:factors=2,2,2;through_plane=blur", "through_plane"),
    ("kspace:factors=2,2,2;thickness=-1", "thickness"),
    ("kspace:factors=2,2,2;through_plane=kspace;thickness=3", "thickness"),
    ("kspace:factors=2,2,2;bogus=1", "bogus"),
])
def test_bad_kspace_specs_are_one_line_errors(spec, text):
    with pytest.raises(SRBenchError) as info:
        make_degradation(spec)
    assert text in str(info.value) and "\n" not in str(info.value)


def test_an_axis_already_coarser_than_the_target_is_left_alone():
    """ProstateX T2w often has 3.6 mm slices: a 3 mm target leaves z as it is (truncation adds nothing)."""
    array = np.random.default_rng(0).uniform(0, 1, (10, 30, 30))
    hr = volume(array, spacing=(0.66, 0.66, 3.6))
    lr = KSpace(spacing=(2.0, 2.0, 3.0)).apply(hr)
    assert lr.GetSize() == (10, 10, 10)
    np.testing.assert_allclose(lr.GetSpacing(), (1.98, 1.98, 3.6), rtol=1e-12)
    # z untouched: the in-plane truncation of each slice alone.
    one = KSpace(spacing=(2.0, 2.0, 3.0)).apply(volume(array[3:4].repeat(2, axis=0), spacing=(0.66, 0.66, 3.6)))
    np.testing.assert_allclose(sitk.GetArrayFromImage(lr)[3], sitk.GetArrayFromImage(one)[0], atol=1e-6)

"""The resample degradation: LR grid geometry, values, anti-aliasing, specs and the paper's named protocols."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from srbench.degradation import FWHM_PER_SIGMA, Resample, parse_spec
from srbench.errors import SRBenchError
from srbench.plugins import lookup
from srbench.runner import make_degradation

from conftest import synthetic_image


def centre(image: sitk.Image) -> np.ndarray:
    return np.array(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))


def corner(image: sitk.Image) -> np.ndarray:
    """Physical position of the outer corner of voxel 0 (continuous index -0.5)."""
    return np.array(image.TransformContinuousIndexToPhysicalPoint([-0.5] * 3))


def expected_origin(hr: sitk.Image, size, spacing) -> np.ndarray:
    """Origin of the grid of ``size`` x ``spacing`` with HR's centre and direction (written out, no srbench)."""
    d = np.array(hr.GetDirection()).reshape(3, 3)
    return centre(hr) - d @ ((np.array(size) - 1) * np.array(spacing) / 2)


@pytest.mark.parametrize("size", [(39, 36, 30), (40, 37, 31)])
def test_factors_geometry(size):
    hr = synthetic_image(size=size)
    lr = Resample(factors=(3, 3, 3)).apply(hr)
    old_spacing = np.array(hr.GetSpacing())
    new_spacing = 3 * old_spacing
    extent = np.array(size) * old_spacing
    new_size = tuple(int(np.floor(e / s + 0.5)) for e, s in zip(extent, new_spacing))
    assert lr.GetSize() == new_size
    np.testing.assert_allclose(lr.GetSpacing(), new_spacing, rtol=1e-12)
    np.testing.assert_allclose(lr.GetDirection(), hr.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(centre(lr), centre(hr), atol=1e-6)
    np.testing.assert_allclose(lr.GetOrigin(), expected_origin(hr, new_size, new_spacing), atol=1e-6)
    # The extent is kept up to the rounding of the size: within half an LR voxel at each end.
    lr_extent = np.array(new_size) * new_spacing
    assert np.all(np.abs(lr_extent - extent) <= new_spacing / 2 + 1e-9)
    if all(n % 3 == 0 for n in size):
        np.testing.assert_allclose(lr_extent, extent)
        np.testing.assert_allclose(corner(lr), corner(hr), atol=1e-6)


def test_factors_values_are_hr_samples_at_lr_centres():
    """x3 with linear interpolation and no blur: LR voxel i sits exactly on HR voxel 3 i + 1."""
    hr = synthetic_image(size=(39, 36, 30))
    lr = Resample(factors=(3, 3, 3)).apply(hr)
    expected = sitk.GetArrayFromImage(hr)[1::3, 1::3, 1::3]
    np.testing.assert_allclose(sitk.GetArrayFromImage(lr), expected, atol=1e-4)


def test_target_spacing():
    hr = synthetic_image(size=(60, 61, 20), spacing=(0.66, 0.66, 1.5))
    lr = Resample(spacing=(2, 2, 3)).apply(hr)
    assert lr.GetSpacing() == pytest.approx((2.0, 2.0, 3.0))
    assert lr.GetSize() == (round(60 * 0.66 / 2), round(61 * 0.66 / 2), 10)
    np.testing.assert_allclose(centre(lr), centre(hr), atol=1e-6)
    np.testing.assert_allclose(lr.GetOrigin(), expected_origin(hr, lr.GetSize(), (2, 2, 3)), atol=1e-6)
    # Linear interpolation at each LR centre, compared with SimpleITK's resampler on the independent grid.
    ref = sitk.Resample(hr, lr.GetSize(), sitk.Transform(), sitk.sitkLinear,
                        expected_origin(hr, lr.GetSize(), (2, 2, 3)).tolist(), (2.0, 2.0, 3.0), hr.GetDirection(),
                        0.0, sitk.sitkFloat32)
    np.testing.assert_allclose(sitk.GetArrayFromImage(lr), sitk.GetArrayFromImage(ref), atol=1e-4)


def high_frequency_energy(a: np.ndarray) -> float:
    return float(sum(np.mean(np.diff(a, axis=k) ** 2) for k in range(3)))


def test_antialias_blurs_before_sampling():
    hr = synthetic_image(size=(45, 42, 30), seed=3)
    plain = sitk.GetArrayFromImage(Resample(factors=(3, 3, 3)).apply(hr))
    smooth_img = Resample(factors=(3, 3, 3), antialias=True).apply(hr)
    smooth = sitk.GetArrayFromImage(smooth_img)
    assert not np.allclose(plain, smooth, atol=1e-3)
    assert high_frequency_energy(smooth) < 0.5 * high_frequency_energy(plain)
    assert abs(smooth.mean() - plain.mean()) < 0.05 * abs(plain.mean()) + 1  # low frequencies kept
    # Independently: a Gaussian of FWHM sqrt(new^2 - old^2) per axis, then the same LR grid.
    old = np.array(hr.GetSpacing())
    sigma = np.sqrt((3 * old) ** 2 - old ** 2) / (2 * np.sqrt(2 * np.log(2)))
    assert FWHM_PER_SIGMA == pytest.approx(2.3548, abs=1e-4)
    blurred = sitk.SmoothingRecursiveGaussian(hr, sigma.tolist())
    ref = sitk.Resample(blurred, smooth_img.GetSize(), sitk.Transform(), sitk.sitkLinear,
                        expected_origin(hr, smooth_img.GetSize(), 3 * old).tolist(), (3 * old).tolist(),
                        hr.GetDirection(), 0.0, sitk.sitkFloat32)
    np.testing.assert_allclose(smooth, sitk.GetArrayFromImage(ref), atol=1e-3)


def test_antialias_with_an_axis_that_is_not_coarsened():
    """prostate-t2w from 0.66 x 0.66 x 3 mm: z keeps its spacing, so z gets no blur (ITK rejects sigma 0)."""
    profile = np.random.default_rng(1).uniform(10, 100, 12).astype(np.float32)  # varies along z only
    hr = sitk.GetImageFromArray(np.broadcast_to(profile[:, None, None], (12, 60, 60)).copy())
    hr.SetSpacing((0.66, 0.66, 3.0))
    lr = Resample(spacing=(2, 2, 3), antialias=True).apply(hr)
    assert lr.GetSize() == (20, 20, 12)
    # In-plane blur leaves a plane-constant image alone; any blur along z would mix the random profile.
    lr_z = sitk.GetArrayFromImage(lr)
    np.testing.assert_allclose(lr_z, np.broadcast_to(profile[:, None, None], lr_z.shape), rtol=1e-3)
    blurred_z = Resample(spacing=(2, 2, 6), antialias=True).apply(hr)  # now z is coarsened and blurred
    assert np.ptp(sitk.GetArrayFromImage(blurred_z)[:, 10, 10]) < 0.9 * np.ptp(profile)


@pytest.mark.parametrize("protocol, hr_spacing, lr_spacing", [
    ("prostate-t2w", (0.66, 0.66, 1.5), (2.0, 2.0, 3.0)),
    ("brain-t1map", (0.8, 0.8, 0.8), (2.4, 2.4, 2.4)),
])
def test_named_protocols_give_the_papers_spacings(protocol, hr_spacing, lr_spacing):
    hr = synthetic_image(size=(48, 45, 30), spacing=hr_spacing)
    degradation = lookup("degradations", protocol)()
    lr = degradation.apply(hr)
    np.testing.assert_allclose(lr.GetSpacing(), lr_spacing, rtol=1e-9)
    np.testing.assert_allclose(centre(lr), centre(hr), atol=1e-6)
    params = degradation.params()
    assert params["protocol"] == protocol and params["name"] == "resample"
    recorded = json.loads(json.dumps(params))  # serialisable as recorded
    expected = {"brain-t1map": {"factors": [3.0, 3.0, 3.0], "spacing": None},
                "prostate-t2w": {"factors": None, "spacing": [2.0, 2.0, 3.0]}}[protocol]
    assert {k: recorded[k] for k in expected} == expected


def test_protocol_parameters_can_be_overridden():
    _, deg = make_degradation("brain-t1map:antialias=true")
    assert deg.params()["antialias"] is True and deg.params()["factors"] == (3.0, 3.0, 3.0)
    _, deg = make_degradation("prostate-t2w:factors=2,2,2")
    assert deg.params()["factors"] == (2.0, 2.0, 2.0) and deg.params()["spacing"] is None


def test_parse_spec():
    assert parse_spec("resample:factors=2,2,3;antialias=true") == ("resample", {"factors": [2.0, 2.0, 3.0],
                                                                               "antialias": True})
    assert parse_spec("brain-t1map") == ("brain-t1map", {})
    assert parse_spec("resample: spacing=2,2,3 ; interpolator=nearest") == (
        "resample", {"spacing": [2.0, 2.0, 3.0], "interpolator": "nearest"})
    name, deg = make_degradation("resample:factors=2,2,3;antialias=true")
    assert name == "resample" and isinstance(deg, Resample)
    assert (deg.factors, deg.antialias, deg.interpolator) == ((2.0, 2.0, 3.0), True, "linear")
    # The recorded parameters rebuild the same degradation.
    params = {k: v for k, v in deg.params().items() if k != "name"}
    assert Resample(**params).params() == deg.params()


@pytest.mark.parametrize("spec, text", [
    ("resample:factors", "key=value"),
    ("resample:factors=2,2", "three numbers"),
    ("resample:factors=a,b,c", "three numbers"),
    ("resample:factors=0,2,2", "three numbers"),
    ("resample:factors=nan,2,2", "three numbers"),
    ("resample:factors=2", "three numbers"),
    ("resample", "exactly one"),
    ("resample:factors=2,2,2;spacing=1,1,1", "exactly one"),
    ("resample:factors=2,2,2;interpolator=cubic", "interpolator"),
    ("resample:factors=2,2,2;bogus=1", "bogus"),
    ("no-such-degradation", "available: "),
])
def test_bad_specs_are_one_line_errors(spec, text):
    with pytest.raises(SRBenchError) as info:
        make_degradation(spec)
    message = str(info.value)
    assert text in message and "\n" not in message


@pytest.mark.parametrize("spec, allowed", [
    ("resample:factors=2,2,2;antialias=maybe", "true or false"),   # once recorded as true
    ("resample:factors=2,2,2;antialias=1", "true or false"),
    ("resample:factors=1e9,1,1", "[1, 16]"),                       # once ran and scored 13.7 dB
    ("resample:factors=0.5,1,1", "[1, 16]"),                       # would upsample
    ("resample:spacing=2,2,1e6", "[0.05, 20] mm"),
    ("resample:spacing=2,2,0.001", "[0.05, 20] mm"),
    ("resample:factors=2,2,2;factor=3", "resample accepts: factors, spacing, interpolator, antialias"),
    ("resample:factors=2,2,2;protocol=prostate-t2w", "resample accepts"),
    ("prostate-t2w:spacing=2,2,3;antialias=yes", "true or false"),
    ("prostate-t2w:sigma=3", "prostate-t2w accepts: factors, spacing"),
    ("resample:factors=2,2,2;factors=3,3,3", "given twice"),
    ("resample:=2", "key=value"),
    ("noise:snr=1e9", "up to 1000"),
    ("noise:sigma=5", "up to 1"),
    ("noise:snr=true", "positive number"),
    ("prostate-t2w+noise:snr=20;snr_db=3", "noise accepts: snr, sigma, reference"),
    ("kspace:factors=2,2,2;thickness=500", "[0.05, 20]"),
])
def test_specs_are_parsed_strictly(spec, allowed):
    """A value read wrongly would be recorded as meant: each is refused, naming the spec and what is allowed."""
    with pytest.raises(SRBenchError) as info:
        make_degradation(spec)
    message = str(info.value)
    step = next(part for part in spec.split("+") if part in message)  # the failing step's own spec is named
    assert f"degradation {step!r}" in message and allowed in message and "\n" not in message, message


def test_an_lr_grid_of_one_voxel_is_refused():
    hr = synthetic_image(size=(20, 20, 12), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(SRBenchError, match="fewer than 2 voxels along z"):
        Resample(factors=(2, 2, 16)).apply(hr)
    assert Resample(factors=(2, 2, 4)).apply(hr).GetSize() == (10, 10, 3)

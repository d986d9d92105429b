"""Rician noise at a stated SNR (seeded, per case) and composed degradations (``A+B``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from phantominator import shepp_logan

from srbench.compose import Compose, split_spec
from srbench.dataset import Case
from srbench.errors import SRBenchError
from srbench.noise import RicianNoise, case_seed
from srbench.runner import make_degradation, prepare

from conftest import synthetic_image


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setenv("SRBENCH_CACHE", "off")


def two_level(a: float = 100.0, shape=(8, 64, 64)) -> sitk.Image:
    array = np.zeros(shape, np.float32)
    array[:, 16:48, 16:48] = a
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 0.8))
    return image


def test_rician_statistics_match_the_stated_snr():
    a, snr = 100.0, 20.0
    out = sitk.GetArrayFromImage(RicianNoise(snr=snr).apply(two_level(a), seed=1)).astype(np.float64)
    sigma = a / snr  # foreground = the a-valued square (Otsu), its mean is a
    background = out[:, :8, :].ravel()      # Rayleigh: mean sigma sqrt(pi/2)
    assert background.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.03)
    foreground = out[:, 16:48, 16:48].ravel()  # Rician second moment: a^2 + 2 sigma^2 (exact)
    assert np.mean(foreground ** 2) == pytest.approx(a ** 2 + 2 * sigma ** 2, rel=2e-3)
    assert np.std(foreground) == pytest.approx(sigma, rel=0.05)  # high SNR: nearly Gaussian
    assert out.min() >= 0


def test_snr_reference_max_and_sigma():
    image = two_level(50.0)
    image_array = sitk.GetArrayFromImage(image)
    image_array[0, 0, 0] = 200.0  # a bright outlier: max = 200, the foreground mean stays near 50
    image = sitk.GetImageFromArray(image_array)
    assert RicianNoise(snr=10, reference="max").sigma_for(image_array.astype(float)) == pytest.approx(20.0)
    assert RicianNoise(snr=10).sigma_for(image_array.astype(float)) == pytest.approx(5.0, rel=0.01)
    assert RicianNoise(sigma=0.3).sigma_for(image_array) == 0.3
    p = json.loads(json.dumps(RicianNoise(snr=10, reference="max").params()))
    assert (p["name"], p["distribution"], p["snr"], p["reference"]) == ("noise", "rician", 10.0, "max")
    assert "max" in p["snr_definition"] and p["seed_rule"]


def test_noise_is_seeded_and_keeps_the_grid():
    hr = synthetic_image()
    noise = RicianNoise(snr=15)
    a, b, c = (sitk.GetArrayFromImage(noise.apply(hr, seed=s)) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    out = noise.apply(hr, seed=3)
    assert out.GetSize() == hr.GetSize() and out.GetSpacing() == hr.GetSpacing()
    assert out.GetOrigin() == hr.GetOrigin() and out.GetDirection() == hr.GetDirection()


def test_phantom_noise_level():
    phantom = np.repeat(np.clip(shepp_logan(96), 0, None)[None], 4, axis=0).astype(np.float32)
    image = sitk.GetImageFromArray(phantom)
    out = sitk.GetArrayFromImage(RicianNoise(snr=25).apply(image, seed=0))
    # Independent foreground: Otsu from skimage on the same voxels.
    from skimage.filters import threshold_otsu

    fg = phantom > threshold_otsu(phantom, nbins=256)
    sigma = phantom[fg].mean() / 25
    air = phantom <= 1e-6
    assert out[air].mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.05)


@pytest.mark.parametrize("spec, text", [("noise", "exactly one"), ("noise:snr=20;sigma=1", "exactly one"),
                                        ("noise:snr=-3", "positive"), ("noise:snr=abc", "positive"),
                                        ("noise:snr=10;reference=mean", "reference"),
                                        ("prostate-t2w+", "empty step"), ("prostate-t2w+nosuch:snr=2", "nosuch"),
                                        ("prostate-t2w+noise", "exactly one")])
def test_bad_specs_are_one_line_errors(spec, text):
    with pytest.raises(SRBenchError) as info:
        make_degradation(spec)
    assert text in str(info.value) and "\n" not in str(info.value)


def test_split_spec():
    assert split_spec("prostate-t2w") == ["prostate-t2w"]
    assert split_spec("prostate-t2w+noise:snr=20") == ["prostate-t2w", "noise:snr=20"]
    assert split_spec("kspace:spacing=2,2,3+noise:sigma=1e+3") == ["kspace:spacing=2,2,3", "noise:sigma=1e+3"]
    assert split_spec("a + b") == ["a", "b"]


def test_composition_applies_steps_in_order_and_records_them():
    hr = synthetic_image(size=(48, 45, 30), spacing=(0.66, 0.66, 1.5))
    name, composed = make_degradation("prostate-t2w+noise:snr=20")
    assert name == "prostate-t2w+noise" and isinstance(composed, Compose)
    params = json.loads(json.dumps(composed.params()))
    assert params["name"] == "compose" and params["spec"] == "prostate-t2w+noise:snr=20"
    assert [s["name"] for s in params["steps"]] == ["resample", "noise"]
    assert params["steps"][0]["protocol"] == "prostate-t2w" and params["steps"][1]["snr"] == 20.0
    out = composed.apply(hr, seed=7)
    plain = make_degradation("prostate-t2w")[1].apply(hr)
    assert out.GetSize() == plain.GetSize() and out.GetSpacing() == plain.GetSpacing()
    assert out.GetOrigin() == plain.GetOrigin()
    assert not np.allclose(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(plain))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(composed.apply(hr, seed=7)))
    # kspace then noise: the k-space LR grid
    _, ks = make_degradation("kspace:spacing=2,2,3;window=hann+noise:sigma=1")
    assert ks.apply(hr).GetSize() == make_degradation("kspace:spacing=2,2,3")[1].apply(hr).GetSize()


def test_two_noise_steps_draw_different_noise():
    image = two_level(0.0) + 1.0
    _, twice = make_degradation("noise:sigma=1+noise:sigma=1")
    seeds = []

    class Spy(RicianNoise):
        def apply(self, hr, seed=0):
            seeds.append(seed)
            return super().apply(hr, seed)

    Compose([Spy(sigma=1), Spy(sigma=1)]).apply(image, seed=5)
    assert len(set(seeds)) == 2
    assert twice.apply(image, seed=5).GetSize() == image.GetSize()


def test_runner_seeds_each_case_differently():
    """prepare() passes case_seed(seed, case_id): two cases of one volume get independent, reproducible noise."""
    hr = synthetic_image()
    _, noise = make_degradation("noise:snr=10")
    a = prepare(Case("a", "p", hr), noise, seed=0)
    b = prepare(Case("b", "p", hr), noise, seed=0)
    a2 = prepare(Case("a", "p", hr), noise, seed=0)
    a_other_seed = prepare(Case("a", "p", hr), noise, seed=1)
    la, lb, la2, la3 = (sitk.GetArrayFromImage(p.lr) for p in (a, b, a2, a_other_seed))
    assert not np.allclose(la, lb) and not np.allclose(la, la3)
    np.testing.assert_array_equal(la, la2)
    assert case_seed(0, "a") != case_seed(0, "b") and case_seed(0, "a") == case_seed(0, "a")

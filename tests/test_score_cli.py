"""``srbench score``: one JSON object whose values agree with skimage/NumPy; user errors in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import srbench_datasets.demo as demo
from srbench import plugins

from conftest import assert_one_line_error

TEMPLATE = Path(demo._data_dir()) / demo.TEMPLATE


# --- independent references (skimage, NumPy/SciPy; no srbench or piq code) ---------------------------------

def ref_psnr(pred, ref):
    return peak_signal_noise_ratio(ref, pred, data_range=1.0)


def ref_ssim(pred, ref):
    assert min(ref.shape) < 384  # no average pooling at this size (round(min(H, W) / 256) <= 1)
    return structural_similarity(ref, pred, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, K1=0.01, K2=0.03)


def ref_gmsd(pred, ref):
    """Xue 2014 as piq computes it: zero-pad odd sizes, 2x2 mean pooling, Prewitt/3, c = 170/255^2, population SD."""
    def pool(a):
        pad = max(a.shape[0] % 2, a.shape[1] % 2)
        a = np.pad(a, ((0, pad), (0, pad)))
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        return a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    kx = np.array([[-1.0, 0.0, 1.0]] * 3) / 3

    def magnitude(a):
        return np.hypot(ndimage.correlate(a, kx, mode="constant"), ndimage.correlate(a, kx.T, mode="constant"))

    mp, mr = magnitude(pool(pred.astype(np.float64))), magnitude(pool(ref.astype(np.float64)))
    c = 170 / 255 ** 2
    return float(((2 * mp * mr + c) / (mp ** 2 + mr ** 2 + c)).std())


def expected(pred_vol, ref_vol, mask_vol=None) -> dict:
    lo, hi = ref_vol.min(), ref_vol.max()
    ref = (ref_vol - lo) / (hi - lo)
    pred = np.clip((pred_vol - lo) / (hi - lo), 0, 1)
    keep = list(range(len(ref)))
    if mask_vol is not None:
        m = (mask_vol > 0).astype(np.float32)
        ref, pred = ref * m, pred * m
        keep = [k for k in keep if m[k].any()]
    slices = [{"index": k, "psnr": ref_psnr(pred[k], ref[k]), "ssim": ref_ssim(pred[k], ref[k]),
               "gmsd": ref_gmsd(pred[k], ref[k])} for k in keep]
    metrics = {m: {"mean": np.mean([s[m] for s in slices]),
                   "std": np.std([s[m] for s in slices], ddof=1) if len(slices) > 1 else None}  # sample SD
               for m in ("psnr", "ssim", "gmsd")}
    return {"metrics": metrics, "slices": slices}


# --- volumes the scorer has never seen ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> dict:
    """Reference: a crop of the template (NIfTI); prediction: blurred + noisy (MHA); mask with empty slices."""
    root = tmp_path_factory.mktemp("score")
    t1 = sitk.ReadImage(str(TEMPLATE), sitk.sitkFloat32)
    ref_img = t1[50:130, 60:170, 80:92]  # (x, y, z) = 80 x 110 x 12, template geometry kept
    ref = sitk.GetArrayFromImage(ref_img)
    rng = np.random.default_rng(7)
    pred = ndimage.gaussian_filter(ref, (0, 1.2, 1.2)) + rng.normal(0, 0.04 * ref.max(), ref.shape)
    pred = pred.astype(np.float32)  # goes outside the reference range: clipping matters
    mask = (ndimage.gaussian_filter(ref, 2) > 0.3 * ref.max()).astype(np.uint8)
    mask[[0, 5]] = 0  # two slices with an empty mask are skipped
    paths = {"ref": root / "ref.nii.gz", "pred": root / "pred.mha", "mask": root / "mask.nii.gz"}
    for name, array in (("ref", ref), ("pred", pred), ("mask", mask)):
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(ref_img)
        sitk.WriteImage(image, str(paths[name]))
    return {"paths": paths, "ref": ref, "pred": pred, "mask": mask, "image": ref_img}


def lpips_available() -> bool:
    reg = plugins.get_registry()
    return next(m for n, m in reg.metrics.items() if n.lower() == "lpips").unavailable_reason() is None


def check(result, want, indices):
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert isinstance(out, dict) and {"metrics", "slices"} <= set(out)
    assert {"psnr", "ssim", "gmsd", "lpips"} <= set(out["metrics"])
    if lpips_available():
        assert set(out["metrics"]["lpips"]) == {"mean", "std"}
    else:
        assert out["metrics"]["lpips"] is None
    assert [s["index"] for s in out["slices"]] == indices == [s["index"] for s in want["slices"]]
    for got, exp in zip(out["slices"], want["slices"]):
        for m in ("psnr", "ssim", "gmsd"):
            assert got[m] == pytest.approx(exp[m], abs=1e-4), (got["index"], m)
    for m in ("psnr", "ssim", "gmsd"):
        assert set(out["metrics"][m]) == {"mean", "std"}
        assert out["metrics"][m]["mean"] == pytest.approx(want["metrics"][m]["mean"], abs=1e-4)
        assert out["metrics"][m]["std"] == pytest.approx(want["metrics"][m]["std"], abs=1e-4)
    return out


def test_score_with_mask_agrees_with_independent_computation(volumes, cli):
    p = volumes["paths"]
    result = cli("score", "--pred", p["pred"], "--ref", p["ref"], "--mask", p["mask"], "--json")
    want = expected(volumes["pred"], volumes["ref"], volumes["mask"])
    out = check(result, want, [k for k in range(12) if k not in (0, 5)])
    assert 15 < out["metrics"]["psnr"]["mean"] < 40  # a real, imperfect prediction


def test_score_without_mask_scores_every_slice(volumes, cli):
    p = volumes["paths"]
    result = cli("score", "--pred", p["pred"], "--ref", p["ref"], "--json")
    check(result, expected(volumes["pred"], volumes["ref"]), list(range(12)))


def test_score_table_output(volumes, cli):
    p = volumes["paths"]
    result = cli("score", "--pred", p["pred"], "--ref", p["ref"])
    assert result.exit_code == 0
    want = expected(volumes["pred"], volumes["ref"])
    assert f"{want['metrics']['psnr']['mean']:.4f}" in result.stdout
    if not lpips_available():
        assert "unavailable" in result.stdout and "LPIPS" in result.stderr


def test_one_slice_gives_a_null_sd_not_nan(volumes, tmp_path, cli):
    one = volumes["image"][:, :, 3:4]
    pred = sitk.GetImageFromArray(volumes["pred"][3:4])
    pred.CopyInformation(one)
    sitk.WriteImage(one, str(tmp_path / "ref.nii.gz"))
    sitk.WriteImage(pred, str(tmp_path / "pred.nii.gz"))
    result = cli("score", "--pred", tmp_path / "pred.nii.gz", "--ref", tmp_path / "ref.nii.gz", "--json")
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.stdout
    out = json.loads(result.stdout)
    assert out["metrics"]["psnr"]["std"] is None
    assert out["metrics"]["psnr"]["mean"] == pytest.approx(
        expected(volumes["pred"][3:4], volumes["ref"][3:4])["slices"][0]["psnr"], abs=1e-4)


def write_like(array, like, path):
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like)
    sitk.WriteImage(image, str(path))
    return path


def test_missing_file(volumes, cli, tmp_path):
    missing = tmp_path / "nope.nii.gz"
    assert_one_line_error(cli("score", "--pred", missing, "--ref", volumes["paths"]["ref"]), str(missing))


@pytest.mark.parametrize("how", ["truncated-nii-gz", "truncated-nii", "random-bytes", "truncated-mha", "empty"])
def test_corrupt_file(volumes, cli, tmp_path, capfd, how):
    ref = volumes["paths"]["ref"]
    if how == "truncated-nii-gz":
        data = ref.read_bytes()
        bad = tmp_path / "cut.nii.gz"
        bad.write_bytes(data[: len(data) // 2])
    elif how == "truncated-nii":
        full = write_like(volumes["pred"], volumes["image"], tmp_path / "full.nii")
        bad = tmp_path / "cut.nii"
        bad.write_bytes(full.read_bytes()[:-5000])
    elif how == "random-bytes":
        bad = tmp_path / "noise.nii.gz"
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "truncated-mha":
        data = volumes["paths"]["pred"].read_bytes()
        bad = tmp_path / "cut.mha"
        bad.write_bytes(data[: len(data) - 1000])
    else:
        bad = tmp_path / "empty.nii.gz"
        bad.write_bytes(b"")
    capfd.readouterr()
    line = assert_one_line_error(cli("score", "--pred", bad, "--ref", ref, "--json"), str(bad))
    assert "cannot read" in line
    assert capfd.readouterr().err == ""  # nothing printed by the native libraries either


def test_different_sizes(volumes, cli, tmp_path):
    small = write_like(volumes["pred"][:, :, :-1], volumes["image"][:-1], tmp_path / "small.nii.gz")
    assert_one_line_error(cli("score", "--pred", small, "--ref", volumes["paths"]["ref"]), "size")


def test_same_size_different_spacing(volumes, cli, tmp_path):
    image = sitk.GetImageFromArray(volumes["pred"])
    image.CopyInformation(volumes["image"])
    image.SetSpacing((1.0, 1.0, 1.5))
    sitk.WriteImage(image, str(tmp_path / "spaced.nii.gz"))
    assert_one_line_error(cli("score", "--pred", tmp_path / "spaced.nii.gz", "--ref", volumes["paths"]["ref"]),
                          "spacing")


def test_mask_on_another_grid(volumes, cli, tmp_path):
    mask = write_like(volumes["mask"][:-1], volumes["image"][:, :, :-1], tmp_path / "mask.nii.gz")
    p = volumes["paths"]
    assert_one_line_error(cli("score", "--pred", p["pred"], "--ref", p["ref"], "--mask", mask), str(mask))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_nan_in_prediction(volumes, cli, tmp_path, suffix):
    pred = volumes["pred"].copy()
    pred[4, 10, 10] = np.nan
    path = write_like(pred, volumes["image"], tmp_path / f"nan{suffix}")
    assert_one_line_error(cli("score", "--pred", path, "--ref", volumes["paths"]["ref"], "--json"), str(path), "NaN")


def test_empty_mask_everywhere(volumes, cli, tmp_path):
    mask = write_like(np.zeros_like(volumes["mask"]), volumes["image"], tmp_path / "zero.nii.gz")
    p = volumes["paths"]
    assert_one_line_error(cli("score", "--pred", p["pred"], "--ref", p["ref"], "--mask", mask), "empty")

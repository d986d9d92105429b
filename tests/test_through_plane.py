"""Through-plane scores (coronal, sagittal, slice-to-slice consistency) and the saved SR volumes."""

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from srbench import sr_volumes, through_plane
from srbench.metrics import BUILTIN_METRICS
from srbench.record import load_record
from srbench.volume import read_volume, to_array

PSNR_SSIM = [m for m in (cls() for cls in BUILTIN_METRICS) if m.name in ("psnr", "ssim")]


def _volume(shape=(16, 20, 18), seed=0):
    rng = np.random.default_rng(seed)
    hr = (0.2 + 0.6 * rng.random(shape)).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[:, 3:17, 2:15] = True
    return hr, mask


def test_consistency_is_the_error_of_the_through_plane_difference():
    hr, mask = _volume()
    slices = list(range(2, 14))
    offset = hr[slices] + 0.1  # a constant offset changes no slice-to-slice difference
    flicker = hr[slices] + 0.05 * (np.arange(len(slices)) % 2)[:, None, None]  # every other slice brighter
    for sr, expected in ((offset, 0.0), (flicker, 0.05)):
        result = through_plane.score_case(0, "c", "p", sr, hr, mask, slices, PSNR_SSIM)
        pairs = [r for r in result.rows if r["plane"] == through_plane.PAIR]
        assert [r["index"] for r in pairs] == slices[:-1]
        np.testing.assert_allclose([r[through_plane.CONSISTENCY] for r in pairs], expected, atol=1e-6)


def test_coronal_and_sagittal_planes_are_scored_like_axial_slices():
    hr, mask = _volume()
    slices = list(range(1, 15))
    sr = np.clip(hr[slices] + np.random.default_rng(1).normal(0, 0.03, (len(slices), 20, 18)), 0, 1.2)
    result = through_plane.score_case(0, "c", "p", sr, hr, mask, slices, PSNR_SSIM)
    rows = pd.DataFrame(result.rows)
    coronal, sagittal = rows[rows.plane == "coronal"], rows[rows.plane == "sagittal"]
    assert coronal["index"].tolist() == list(range(3, 17))  # planes with an empty mask are skipped
    assert sagittal["index"].tolist() == list(range(2, 15))
    # PSNR of coronal plane y = 7 by hand: (K, W) images, clipped prediction, both multiplied by the mask
    m = mask[slices][:, 7, :]
    mse = np.mean((np.clip(sr[:, 7, :], 0, 1) * m - hr[slices][:, 7, :] * m) ** 2)
    assert coronal.set_index("index").loc[7, "psnr"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-4)
    summary = through_plane.summary([result], ["psnr", "ssim"])
    assert summary["coronal"]["per_slice"]["psnr"]["n"] == 14
    assert summary["coronal"]["per_slice"]["psnr"]["mean"] == pytest.approx(coronal["psnr"].mean())
    assert summary["sagittal"]["per_volume"]["ssim"]["n"] == 1
    assert summary["consistency"]["per_slice"][through_plane.CONSISTENCY]["n"] == len(slices) - 1
    assert "|(SR[k+1] - SR[k]) - (HR[k+1] - HR[k])|" in summary["consistency"]["definition"]


def test_thin_slabs_report_what_cannot_score_their_planes_and_gaps_make_no_pairs():
    hr, mask = _volume()
    slices = [3, 4, 5, 8, 9]  # 5 slices: fewer rows than SSIM's 11-pixel window; a gap between 5 and 8
    result = through_plane.score_case(0, "c", "p", hr[slices], hr, mask, slices, PSNR_SSIM)
    rows = pd.DataFrame(result.rows)
    assert rows[rows.plane == "coronal"]["ssim"].isna().all() and "ssim" in result.unavailable
    assert rows[rows.plane == "coronal"]["psnr"].notna().all()
    assert rows[rows.plane == through_plane.PAIR]["index"].tolist() == [3, 4, 8]


def test_sr_volume_is_the_hr_grid_cropped_to_the_predicted_slices(tmp_path):
    hr_array, _ = _volume()
    hr = sitk.GetImageFromArray(hr_array)
    hr.SetSpacing((0.7, 0.8, 1.5))
    hr.SetOrigin((10.0, -4.0, 2.5))
    hr.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    slices = [4, 5, 7, 8]
    sr = hr_array[slices] * 2
    path = tmp_path / sr_volumes.save(tmp_path, "case/01", sr, hr, slices)
    assert path == tmp_path / "volumes" / "case_01_sr.nii.gz"
    out = read_volume(path)
    assert out.GetSize() == (18, 20, 5) and out.GetDirection() == pytest.approx(hr.GetDirection())
    assert out.GetSpacing() == pytest.approx(hr.GetSpacing())
    assert out.GetOrigin() == pytest.approx(hr.TransformIndexToPhysicalPoint((0, 0, 4)), abs=1e-5)
    data = to_array(out)
    np.testing.assert_allclose(data[[0, 1, 3, 4]], sr, atol=1e-6)
    assert not data[2].any()  # slice 6 was not predicted


def test_volumes_are_saved_by_default_only_for_small_test_splits():
    assert sr_volumes.wanted(None, 1) and not sr_volumes.wanted(None, sr_volumes.AUTO_MAX_CASES + 1)
    assert sr_volumes.wanted(True, 500) and not sr_volumes.wanted(False, 1)


def test_a_demo_run_records_planes_and_saves_its_volume(bicubic_run):
    _, run_dir = bicubic_run
    record = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))
    tp = record["through_plane"]
    for plane in ("coronal", "sagittal"):
        assert tp[plane]["per_slice"]["psnr"]["n"] > 100 and tp[plane]["per_volume"]["psnr"]["n"] == 1
    assert tp["consistency"]["per_slice"][through_plane.CONSISTENCY]["n"] == record["n_slices"] - 1
    planes = pd.read_csv(run_dir / "planes.csv")
    assert set(planes.plane) == {"coronal", "sagittal", through_plane.PAIR}
    assert planes[planes.plane == "coronal"]["psnr"].mean() == pytest.approx(tp["coronal"]["per_slice"]["psnr"]["mean"])
    [(case, relative)] = record["volumes"]["files"].items()
    volume = read_volume(run_dir / relative)
    scores = pd.read_csv(run_dir / "scores.csv")
    assert volume.GetSize()[2] == scores["slice"].max() - scores["slice"].min() + 1


def test_plane_tables_for_the_leaderboard_and_the_statistics(bicubic_run):
    _, run_dir = bicubic_run
    record = load_record(run_dir)
    tp = record.through_plane
    cols = through_plane.columns(record)
    assert cols["sagittal_psnr_mean"] == tp["sagittal"]["per_slice"]["psnr"]["mean"]
    assert np.isnan(cols["coronal_lpips_mean"]) or cols["coronal_lpips_mean"] > 0
    assert cols["z_gradient_error_std"] == tp["consistency"]["per_slice"]["z_gradient_error"]["std"]
    long = through_plane.scores_of({"a": record, "b": record}, "coronal")
    assert list(long.columns[:3]) == ["method", "case", "slice"] and set(long.method) == {"a", "b"}
    assert len(long) == 2 * tp["coronal"]["per_slice"]["psnr"]["n"]
    assert long.psnr.mean() == pytest.approx(cols["coronal_psnr_mean"])

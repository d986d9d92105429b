"""The Python API (srbench.api): its documented examples, inputs of every kind, and a light `import srbench`."""

import doctest
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

import srbench
from srbench import api
from srbench.errors import SRBenchError


def test_the_documented_examples_run():
    """The module docstring's examples (the demo's numbers, as `srbench run` records them)."""
    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted >= 10 and result.failed == 0


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.random((5, 24, 24)).astype(np.float32) * 100
    pred = ref + rng.normal(0, 3, ref.shape).astype(np.float32)
    mask = np.zeros(ref.shape, np.uint8)
    mask[1:4, 4:20, 4:20] = 1
    return pred, ref, mask


def test_score_takes_paths_images_and_arrays_alike(tmp_path):
    pred, ref, mask = _pair()
    images = {}
    for name, array in (("pred", pred), ("ref", ref), ("mask", mask)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.5, 0.5, 2.0))
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
        images[name] = image
    from_arrays = srbench.score(pred, ref, mask)
    from_images = srbench.score(images["pred"], images["ref"], images["mask"])
    from_paths = srbench.score(tmp_path / "pred.nii.gz", str(tmp_path / "ref.nii.gz"), tmp_path / "mask.nii.gz")
    assert from_arrays["slice"].tolist() == [1, 2, 3] and from_arrays.attrs["skipped"] == [0, 4]
    for other in (from_images, from_paths):
        np.testing.assert_allclose(other[["psnr", "ssim", "gmsd"]], from_arrays[["psnr", "ssim", "gmsd"]], atol=1e-6)
    # the paper's conventions: normalised by the reference's range, masked (PSNR by hand on slice 2)
    lo, hi = ref.min(), ref.max()
    p, r = np.clip((pred[2] - lo) / (hi - lo), 0, 1) * mask[2], (ref[2] - lo) / (hi - lo) * mask[2]
    assert from_arrays.set_index("slice").loc[2, "psnr"] == pytest.approx(10 * np.log10(1 / np.mean((p - r) ** 2)),
                                                                          abs=1e-3)


def test_score_refuses_what_it_cannot_score():
    pred, ref, _ = _pair()
    with pytest.raises(SRBenchError, match="different|size"):
        srbench.score(pred[:, :20], ref)
    with pytest.raises(SRBenchError, match="3-D"):
        srbench.score(pred[None], ref)
    with pytest.raises(SRBenchError, match="mask is empty"):
        srbench.score(pred, ref, np.zeros(ref.shape))


def test_import_srbench_loads_neither_torch_nor_pandas_and_modules_stay_modules():
    code = ("import sys, srbench; assert 'torch' not in sys.modules and 'pandas' not in sys.modules; "
            "assert set(srbench.API) <= set(srbench.__all__); import srbench.stats as st; "
            "assert callable(srbench.stats) and srbench.stats is st and callable(st.analyse); "
            "assert callable(srbench.leaderboard) and srbench.leaderboard.load_table")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_refuses_unknown_units_and_missing_volumes(bicubic_run, tmp_path):
    _, run_dir = bicubic_run
    run = api.load_run(run_dir)
    assert run.summary("volume").loc[("coronal", "psnr"), "n"] == 1
    assert run.volume().GetSize()[2] == run.scores["slice"].max() - run.scores["slice"].min() + 1
    with pytest.raises(SRBenchError, match="unit"):
        run.summary("patient")
    with pytest.raises(SRBenchError, match="no SR volume for case 'nope'"):
        run.volume("nope")
    with pytest.raises(SRBenchError, match="not a finished run"):
        api.load_run(tmp_path)


def test_the_leaderboard_csv_carries_the_through_plane_columns(bicubic_run):
    results, run_dir = bicubic_run
    table = srbench.load_results(results)
    tp = api.load_run(run_dir).record.through_plane
    row = table.set_index("method").loc["bicubic"]
    assert row["coronal_psnr_mean"] == pytest.approx(tp["coronal"]["per_slice"]["psnr"]["mean"])
    assert row["sagittal_ssim_std"] == pytest.approx(tp["sagittal"]["per_slice"]["ssim"]["std"])
    assert row["z_gradient_error_mean"] == pytest.approx(tp["consistency"]["per_slice"]["z_gradient_error"]["mean"])
    assert "coronal_psnr_mean" in srbench.leaderboard(results, format="csv").splitlines()[0]


def test_a_plane_selects_the_coronal_or_sagittal_scores_and_their_statistics(bicubic_run, tmp_path):
    import shutil

    results, run_dir = bicubic_run
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    tp = api.load_run(run_dir).record.through_plane
    row = srbench.load_results(copy, plane="coronal").set_index("method").loc["bicubic"]
    assert row["psnr_mean"] == pytest.approx(tp["coronal"]["per_slice"]["psnr"]["mean"])
    assert row["ssim_std"] == pytest.approx(tp["coronal"]["per_slice"]["ssim"]["std"])
    twin = copy / run_dir.relative_to(results).parent.parent / "twin" / run_dir.name  # same scores, another name
    shutil.copytree(run_dir, twin)
    record = json.loads((twin / "record.json").read_text(encoding="utf-8"))
    record["method_card"]["name"] = record["config"]["method"] = "twin"
    (twin / "record.json").write_text(json.dumps(record), encoding="utf-8")
    board = srbench.leaderboard(copy, plane="sagittal")
    assert board.psnr_not_sig_from_best.tolist().count(True) == 1  # tested on the sagittal planes: no difference
    assert board.loc[board.method == "bicubic", "psnr_mean"].item() == pytest.approx(
        tp["sagittal"]["per_slice"]["psnr"]["mean"])
    with pytest.raises(SRBenchError, match="no transverse scores"):
        srbench.load_results(copy, plane="transverse")


def test_leaderboard_and_report_take_a_plane_and_say_so(bicubic_run, cli, tmp_path):
    results, _ = bicubic_run
    axial = cli("leaderboard", "-r", results, "-f", "md")
    coronal = cli("leaderboard", "-r", results, "-f", "md", "--plane", "coronal")
    assert axial.exit_code == 0 and coronal.exit_code == 0, coronal.output
    assert "Plane: coronal planes" in coronal.stdout and "Plane:" not in axial.stdout
    assert cli("report", "-r", results, "-L", "sagittal", "-o", tmp_path / "r.html").exit_code == 0
    assert "Plane: sagittal planes" in (tmp_path / "r.html").read_text(encoding="utf-8")

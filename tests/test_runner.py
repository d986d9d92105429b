"""The runner, in-process and through the CLI: layout, record, scores, independent PSNR, no-op, crashes, NaN."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import srbench_datasets.demo as demo
import srbench_plugins.bicubic as bicubic
from srbench import plugins
from srbench.errors import SRBenchError
from srbench.runner import RunOptions, run

from conftest import assert_one_line_error

TEMPLATE = Path(demo._data_dir()) / demo.TEMPLATE


def snapshot(root: Path) -> dict:
    """Every file under ``root``: (bytes, mtime_ns, inode)."""
    return {p.relative_to(root): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(root.rglob("*")) if p.is_file()}


def column(table: pd.DataFrame, metric: str) -> pd.Series:
    [name] = [c for c in table.columns if c.lower() == metric]
    return table[name]


@pytest.fixture
def copied_results(bicubic_run, tmp_path) -> tuple[Path, Path]:
    """A private copy of the session's results (results dir, run dir)."""
    results, run_dir = bicubic_run
    shutil.copytree(results, tmp_path / "results")
    return tmp_path / "results", tmp_path / "results" / run_dir.relative_to(results)


@pytest.fixture
def psnr_only(monkeypatch):
    """Score with PSNR only: the behaviour under test does not depend on the metric set, and SSIM is slow."""
    reg = plugins.get_registry()
    monkeypatch.setattr(reg, "metrics", {n: m for n, m in reg.metrics.items() if n.lower() == "psnr"})


def test_layout(bicubic_run):
    results, run_dir = bicubic_run
    parts = run_dir.relative_to(results).parts
    assert parts[:3] == ("demo", "brain-t1map", "bicubic") and len(parts) == 4
    assert sorted(p.name for p in run_dir.iterdir()) == ["examples.npz", "planes.csv", "record.json", "scores.csv",
                                                         "volumes"]
    assert [p.name for p in (run_dir / "volumes").iterdir()] == ["test_sr.nii.gz"]  # no temporaries left


def test_record_contents(bspline_run):
    _, run_dir = bspline_run
    record = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))
    config = record["config"]
    assert (config["method"], config["dataset"], config["degradation"], config["seed"]) == \
        ("bspline", "demo", "brain-t1map", 0)
    assert record["run_id"] == run_dir.name and record["status"] == "finished"
    card = record["method_card"]
    assert (card["name"], card["version"]) == ("bspline", bicubic.BSpline.version)
    assert card["citation"] and card["license"] and card["stochastic"] is False
    assert record["versions"]["srbench"] and record["versions"]["SimpleITK"] == sitk.Version_VersionString()
    assert "git_sha" in record
    assert record["hardware"]["cpu_count"] >= 1 and record["hardware"]["device"].split(":")[0] in ("cpu", "cuda")
    assert record["hardware"]["platform"]
    timings = record["timings"]
    assert timings["sec_per_slice"] > 0
    assert timings["sec_per_slice"] == pytest.approx(timings["predict_s"] / record["n_slices"])
    assert record["dataset"]["split_hash"] == demo.Demo().manifest().hash
    deg = record["degradation"]
    assert (deg["protocol"], deg["factors"], deg["spacing"]) == ("brain-t1map", [3.0, 3.0, 3.0], None)
    assert record["lr_to_hr_interpolator"] == "bspline"
    assert record["n_slices"] == demo.TEST_SLICES
    assert {k.lower() for k in record["metrics"]} >= {"psnr", "ssim", "gmsd", "lpips"}


def test_scores_csv_one_row_per_test_slice_with_every_metric(bicubic_run):
    _, run_dir = bicubic_run
    table = pd.read_csv(run_dir / "scores.csv")
    assert table["slice"].tolist() == list(range(demo.TEST_SLICES))  # the test slab's own slices
    assert set(table["case"]) == {"test"}
    reg = plugins.get_registry()
    for name, metric in reg.metrics.items():
        values = column(table, name.lower())
        if metric.unavailable_reason() is None:
            assert values.notna().all() and np.isfinite(values).all()
        else:
            assert values.isna().all()  # unavailable: empty, never a number
    record = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))
    summary = {k.lower(): v for k, v in record["summary"]["per_slice"].items()}
    assert summary["psnr"]["mean"] == pytest.approx(column(table, "psnr").mean(), abs=1e-9)
    assert summary["psnr"]["std"] == pytest.approx(column(table, "psnr").std(ddof=1), abs=1e-9)


def independent_bspline(slices) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, reference) on the test slab's ``slices``, masked, in [0, 1]: SimpleITK and NumPy only, no
    srbench code. The slab is cropped from the template first (with its geometry), then normalised and degraded."""
    rows = demo.Demo()._slabs()["test"]
    t1 = sitk.ReadImage(str(TEMPLATE), sitk.sitkFloat32)[:, :, rows[0]:rows[-1] + 1]
    mask = sitk.GetArrayFromImage(demo.load_template()[1])[rows[0]:rows[-1] + 1] > 0
    hr = np.where(mask, sitk.GetArrayFromImage(t1), 0).astype(np.float32)
    hr = (hr - hr.min()) / (hr.max() - hr.min())
    hr_img = sitk.GetImageFromArray(hr)
    hr_img.CopyInformation(t1)
    size = [int(np.floor(n / 3 + 0.5)) for n in t1.GetSize()]  # x3 of 1 mm: round(extent / 3 mm)
    d = np.array(t1.GetDirection()).reshape(3, 3)
    centre = np.array(t1.GetOrigin()) + d @ ((np.array(t1.GetSize()) - 1) / 2)
    origin = centre - d @ ((np.array(size) - 1) * 3.0 / 2)
    lr = sitk.Resample(hr_img, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), (3.0, 3.0, 3.0),
                       t1.GetDirection(), 0.0, sitk.sitkFloat32)
    back = sitk.Resample(lr, hr_img, sitk.Transform(), sitk.sitkBSpline, 0.0, sitk.sitkFloat32, True)
    pred = np.clip(sitk.GetArrayFromImage(back)[slices], 0, 1) * mask[slices]
    return pred, hr[slices] * mask[slices]


def test_scores_equal_an_independent_computation(bspline_run):
    _, run_dir = bspline_run
    table = pd.read_csv(run_dir / "scores.csv")
    pred, ref = independent_bspline(table["slice"].tolist())
    psnr = [peak_signal_noise_ratio(r, p, data_range=1.0) for p, r in zip(pred, ref)]
    np.testing.assert_allclose(column(table, "psnr"), psnr, atol=1e-3)
    ssim = [structural_similarity(r, p, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, K1=0.01, K2=0.03) for p, r in zip(pred, ref)]
    np.testing.assert_allclose(column(table, "ssim"), ssim, atol=1e-4)
    assert 25 < np.mean(psnr) < 40  # bicubic x3 on a 1 mm brain: a sane value, not a degenerate one


def test_rerun_is_a_noop_unless_forced(copied_results, psnr_only):
    results, run_dir = copied_results
    before = snapshot(results)
    again, ran = run(RunOptions(method="bicubic", dataset="demo", results_dir=results))
    assert (again, ran) == (run_dir, False)
    assert snapshot(results) == before
    again, ran = run(RunOptions(method="bicubic", dataset="demo", results_dir=results, force=True))
    assert (again, ran) == (run_dir, True)
    after = snapshot(results)
    assert set(after) == set(before)
    for name in ("record.json", "scores.csv"):
        key = run_dir.relative_to(results) / name
        assert after[key][1:] != before[key][1:]  # rewritten (a new file renamed into place)


def test_an_edited_preset_is_a_new_run_not_a_finished_one(copied_results, psnr_only, monkeypatch):
    results, run_dir = copied_results
    monkeypatch.setattr(bicubic.Bicubic, "presets", {"tiny": {"edited": 1}, "paper": {}})
    again, ran = run(RunOptions(method="bicubic", dataset="demo", results_dir=results))
    assert ran and again != run_dir and again.parent == run_dir.parent
    assert json.loads((again / "record.json").read_text(encoding="utf-8"))["method_card"]["settings"] == {"edited": 1}


def test_cli_rerun_is_a_noop_and_results_dir_comes_from_the_environment(copied_results, cli, monkeypatch):
    results, run_dir = copied_results
    before = snapshot(results)
    monkeypatch.setenv("SRBENCH_RESULTS", str(results))
    result = cli("run", "--method", "bicubic", "--dataset", "demo")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(run_dir)
    assert "already finished" in result.stderr and "--force" in result.stderr
    assert snapshot(results) == before


@pytest.mark.parametrize("args, names", [
    (["--method", "no-such-method", "--dataset", "demo"], ["'no-such-method'", "bicubic"]),
    (["--method", "bicubic", "--dataset", "no-such-dataset"], ["'no-such-dataset'", "demo"]),
    (["--method", "bicubic", "--dataset", "demo", "--degradation", "resample:factors=a,b,c"], ["factors"]),
    (["--method", "bicubic", "--dataset", "demo", "--preset", "huge"], ["'huge'", "tiny"]),
])
def test_cli_user_errors_are_one_line(cli, results_dir, args, names):
    result = cli("run", *args, "--results-dir", results_dir)
    assert_one_line_error(result, *names)
    assert not results_dir.exists()


def test_crash_mid_run_leaves_no_record_and_earlier_runs_intact(copied_results, monkeypatch, psnr_only):
    results, run_dir = copied_results
    before = snapshot(results)

    def crash(self, lr, grid, slices, progress=None):
        progress(len(slices) // 2)
        raise RuntimeError("out of memory halfway")

    monkeypatch.setattr(bicubic.Bicubic, "predict_volume", crash)
    for opts in (RunOptions(method="bicubic", dataset="demo", results_dir=results, seed=1),
                 RunOptions(method="bicubic", dataset="demo", results_dir=results, force=True)):
        with pytest.raises(SRBenchError, match=r"method 'bicubic' .* failed in predict.*halfway"):
            run(opts)
        assert snapshot(results) == before  # nothing new, nothing touched
    assert list(results.rglob("record.json")) == [run_dir / "record.json"]


def test_nan_prediction_is_a_one_line_error_naming_the_method(monkeypatch, results_dir, cli, psnr_only):
    original = bicubic.Bicubic.predict_volume

    def with_nan(self, lr, grid, slices, progress=None):
        out = original(self, lr, grid, slices, progress)
        out[len(out) // 2, 10, 10] = np.nan
        return out

    monkeypatch.setattr(bicubic.Bicubic, "predict_volume", with_nan)
    with pytest.raises(SRBenchError, match="'bicubic'.*NaN"):
        run(RunOptions(method="bicubic", dataset="demo", results_dir=results_dir))
    result = cli("run", "--method", "bicubic", "--dataset", "demo", "--results-dir", results_dir, "--seed", 2)
    assert_one_line_error(result, "'bicubic'", "NaN", progress_allowed=True)
    assert not list(results_dir.rglob("record.json"))


def test_a_corrupt_record_is_run_again(copied_results, psnr_only):
    results, run_dir = copied_results
    (run_dir / "record.json").write_text('{"schema": 2, "run_id": ')
    again, ran = run(RunOptions(method="bicubic", dataset="demo", results_dir=results))
    assert (again, ran) == (run_dir, True)
    from srbench.record import load_record

    assert load_record(run_dir).method == "bicubic"

"""Stochastic methods give a seed's output whatever the inference batch size: each slice draws its noise from its
own generator, split off the run's (``srbench.slice_noise``)."""

import doctest

import numpy as np
import pytest
import torch

from srbench import slice_noise
from srbench.plugins import lookup
from srbench.tiny_data import tiny_volume

SLICES = range(2, 7)  # five slices: batches of 1 (five), 3 (3 + 2) and the default (one batch)


def test_the_documented_examples_run():
    result = doctest.testmod(slice_noise, verbose=False)
    assert result.attempted >= 4 and result.failed == 0


def test_the_run_generator_advances_one_draw_per_slice():
    run = torch.Generator().manual_seed(0)
    seeds = [g.initial_seed() for g in slice_noise.slice_generators(run, 2) + slice_noise.slice_generators(run, 3)]
    at_once = [g.initial_seed() for g in slice_noise.slice_generators(torch.Generator().manual_seed(0), 5)]
    assert seeds == at_once and len(set(seeds)) == 5
    assert all(g.device.type == "cpu" for g in slice_noise.slice_generators(run, 2))


@pytest.fixture(scope="module")
def tiny():
    return tiny_volume()  # 46 x 39 in-plane: padded to each network's multiple, as real slices are


def _method(name: str, seed: int, **kw):
    cls = lookup("methods", name)
    method = cls(preset="tiny", device="cpu", seed=seed, **kw)
    method.load(cls.shipped_checkpoint("demo", "tiny"))
    if name == "tm-ddpm":
        method.settings["sample_steps"] = 4  # DDIM with 4 steps instead of 50: the same noise logic, fast
    return method


@pytest.mark.parametrize("name", ["res-srdiff", "tm-ddpm", "pix2pix"])
def test_a_seed_gives_one_output_at_any_batch_size(name, tiny):
    # Res-SRDiff in its exact mode: bfloat16 rounds the batch-dependent float32 differences up (next test)
    method = _method(name, seed=0, **({"precision": "fp32"} if name == "res-srdiff" else {}))
    assert method.stochastic
    outputs = {}
    for batch_size in (1, 3, type(method).batch_size, method.batch_size):
        method.batch_size = batch_size
        outputs[batch_size] = method.predict_volume(tiny.lr, tiny.hr, SLICES)
    one = outputs[1]
    for batch_size, out in outputs.items():
        # Not bit-exact: oneDNN picks its convolution and matmul kernels by batch size, so float32 sums may be
        # ordered differently (measured up to 7e-7); the noise itself is the same.
        np.testing.assert_allclose(out, one, rtol=0, atol=1e-5, err_msg=f"batch size {batch_size}")
    other_seed = _method(name, seed=1).predict_volume(tiny.lr, tiny.hr, SLICES)
    assert np.abs(other_seed - one).max() > 1e-3  # the noise matters: the test above could fail


def test_res_srdiff_bf16_scores_do_not_depend_on_the_batch_size_beyond_its_bound(tiny):
    """In bfloat16 the kernels' batch-dependent float32 differences are rounded up to bfloat16's precision
    (measured up to 6e-3 on a pixel), so outputs are not equal across batch sizes; their scores stay within the
    bound that holds bf16 to fp32 (tests/test_res_srdiff_inference.py)."""
    from srbench.metrics import PSNR, SSIM
    from srbench.scoring import score_arrays
    from test_res_srdiff_inference import BOUND

    method = _method("res-srdiff", seed=0)
    if method.settings["inference"]["precision"] != "bf16":
        pytest.skip("this CPU has no native bf16")
    hr = tiny.hr_array[list(SLICES)]
    means = []
    for batch_size in (1, 3):
        method.batch_size = batch_size
        sr = method.predict_volume(tiny.lr, tiny.hr, SLICES)
        values = score_arrays(sr, hr, [PSNR(), SSIM()]).values
        means.append({name: float(np.mean(v)) for name, v in values.items()})
    for name, bound in BOUND.items():
        assert abs(means[0][name] - means[1][name]) <= bound, (name, means)


# --- --batch-size on `srbench run` and `srbench infer` ------------------------------------------------------------


@pytest.fixture
def tiny_pix2pix(monkeypatch):
    """The kit's tiny dataset (one 12-slice test case) and pix2pix's shipped demo weights: a stochastic run in
    seconds."""
    from srbench import plugins
    from srbench.testing import TinyDatasetPlugin

    plugins.register_plugin(TinyDatasetPlugin(), "srbench-tiny")
    return lookup("methods", "pix2pix").shipped_checkpoint("demo", "tiny")


def _run(cli, results, weights, *extra):
    import json

    result = cli("run", "-m", "pix2pix", "-d", "srbench-tiny", "-r", results, "-c", weights, "-D", "cpu", "-j", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.splitlines()[-1])


def test_run_records_the_batch_size_it_used_and_scores_as_the_default(cli, tmp_path, tiny_pix2pix):
    from srbench.record import load_record
    from srbench.reproduce import reproduce

    default = load_record(_run(cli, tmp_path / "a", tiny_pix2pix)["run_dir"])
    two = load_record(_run(cli, tmp_path / "b", tiny_pix2pix, "-b", "2")["run_dir"])
    assert default.batch_size == lookup("methods", "pix2pix").batch_size != 2 and two.batch_size == 2
    assert two.run_id == default.run_id  # not part of the identity: the same run, the same leaderboard row
    np.testing.assert_allclose(two.scores()[["psnr", "ssim"]], default.scores()[["psnr", "ssim"]], rtol=0, atol=1e-5)
    again = _run(cli, tmp_path / "a", tiny_pix2pix, "-b", "2")  # the same run: already finished
    assert again["ran"] is False and again["run_id"] == default.run_id
    rerun, deviations = reproduce(two.path, tmp_path / "c", device="cpu")
    assert rerun.batch_size == 2 and max(deviations.values()) <= 1e-5  # rerun with the recorded batch size


@pytest.mark.parametrize("command", ["run", "infer"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_batch_size_below_one_is_a_one_line_error(cli, tmp_path, command, value):
    from conftest import assert_one_line_error

    args = (["run", "-m", "bicubic", "-d", "demo", "-r", tmp_path] if command == "run" else
            ["infer", "-m", "bicubic", "-i", tmp_path / "in.nii.gz", "-o", tmp_path / "out.nii.gz"])
    result = cli(*args, "-b", value)
    assert result.exit_code == 1
    assert_one_line_error(result, f"--batch-size must be a positive integer (slices per forward pass), got {value}")
    assert not (tmp_path / "out.nii.gz").exists() and not list(tmp_path.rglob("record.json"))


def test_infer_takes_the_batch_size(cli, tmp_path, volume, tiny_pix2pix, monkeypatch):
    import SimpleITK as sitk

    cls = lookup("methods", "pix2pix")
    batches, predict = [], cls.predict_slices
    monkeypatch.setattr(cls, "predict_slices", lambda self, lr, g: batches.append(len(lr)) or predict(self, lr, g))
    path, _ = volume
    outputs = []
    for batch in ("1", "4"):
        out = tmp_path / f"sr-b{batch}.nii.gz"
        result = cli("infer", "-m", "pix2pix", "-i", path, "-o", out, "-S", "1.8,2.2,4", "-D", "cpu", "-b", batch)
        assert result.exit_code == 0, result.output
        outputs.append(sitk.GetArrayFromImage(sitk.ReadImage(str(out))))
    assert outputs[0].shape[0] == 15 and batches == [1] * 15 + [4, 4, 4, 3]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=0, atol=1e-3)  # raw intensities (0..~100)


def test_evaluate_takes_the_batch_size(tmp_path):
    import srbench
    from srbench.errors import SRBenchError

    with pytest.raises(SRBenchError, match="--batch-size must be a positive integer"):
        srbench.evaluate("bicubic", "demo", results_dir=tmp_path, batch_size=0, progress=False)
    assert not list(tmp_path.rglob("record.json"))

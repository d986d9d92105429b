"""The conformance kit ``srbench.testing``: built-in plugins pass it, each broken method fails its check clearly."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import srbench_plugins.bicubic as bicubic
import srbench_plugins.res_srdiff as rs
from srbench.engine import PatchSampler, TrainConfig, Trainer
from srbench.method import Method
from srbench.testing import CHECKS, ConformanceError, TinyVolume, check_method

from test_res_srdiff_method import MICRO


class Good(Method):
    """A small learned method that honours the whole contract (the base of the broken ones below)."""

    name = "kit-good"
    version = "1.0.0"
    summary = "Residual 3x3 convolution on linearly interpolated LR slices."
    citation = "srbench test suite."
    license = "MIT"
    trains = True
    stochastic = False
    input_interpolator = "linear"
    presets = {"tiny": {"train": dict(steps=3, batch_size=4, lr=1e-2, warmup_steps=0, ema_decay=None,
                                      checkpoint_every=100)}}

    def __init__(self, preset="tiny", device="cpu", seed=0):
        super().__init__(preset=preset, device=device, seed=seed)
        torch.manual_seed(seed)
        self.net = torch.nn.Conv2d(1, 1, 3, padding=1)
        torch.nn.init.normal_(self.net.weight, std=0.01)

    def sampling_steps(self):
        return 1

    def parameter_count(self):
        return sum(p.numel() for p in self.net.parameters())

    def fit(self, train, val, workdir):
        cfg = TrainConfig(**{**self.settings["train"], "seed": self.seed})
        sampler = PatchSampler(train, 16, cfg.batch_size, seed=self.seed)
        loss = lambda net, batch: (F.l1_loss(batch[0] + net(batch[0]), batch[1]), {})  # noqa: E731
        trainer = Trainer(self.net, loss, sampler, cfg, workdir, self.device, description="kit-good")
        return trainer.fit()

    def save(self, path):
        save_file({k: v.detach().contiguous() for k, v in self.net.state_dict().items()}, str(path))

    def load(self, path):
        self.net.load_state_dict(load_file(str(path)))

    def predict_slices(self, lr, generator):
        return lr + self.net(lr)


# --- one broken method per check ------------------------------------------------------------------------
class NoCitation(Good):
    citation = ""


class UncountedParameters(Good):
    def parameter_count(self):
        return None


class FitReturnsNothing(Good):
    def fit(self, train, val, workdir):
        super().fit(train, val, workdir)


class FitRaises(Good):
    def fit(self, train, val, workdir):
        raise RuntimeError("out of memory in my loss")


class CroppedOutput(Good):
    def predict_slices(self, lr, generator):
        return super().predict_slices(lr, generator)[..., :-1, :]


class ChannelAxisKept(Good):
    def predict_volume(self, lr, grid, slices, progress=None):
        return super().predict_volume(lr, grid, slices, progress)[:, None]


class Float64(Good):
    def predict_volume(self, lr, grid, slices, progress=None):
        return super().predict_volume(lr, grid, slices, progress).astype(np.float64)


class MinusOneToOne(Good):
    def predict_slices(self, lr, generator):
        return 2 * super().predict_slices(lr, generator) - 1


class ProducesNaN(Good):
    def predict_slices(self, lr, generator):
        out = super().predict_slices(lr, generator)
        out[:, :, 0, 0] = float("nan")
        return out


class FlippedLeftRight(Good):
    def predict_slices(self, lr, generator):
        return super().predict_slices(lr, generator).flip(-1)


class IgnoresSlices(Good):
    def predict_volume(self, lr, grid, slices, progress=None):
        return super().predict_volume(lr, grid, list(range(len(slices))), progress)


class SavesNothing(Good):
    def save(self, path):
        pass


class LoadsNothing(Good):
    def load(self, path):
        pass


class GlobalRandomness(Good):
    def predict_slices(self, lr, generator):
        return super().predict_slices(lr, generator) + 0.01 * torch.rand(lr.shape)


class ClaimsStochastic(Good):
    stochastic = True


class SeedDependentButDeterministicCard(Good):
    def predict_slices(self, lr, generator):
        return super().predict_slices(lr, generator) + 0.01 * torch.rand(lr.shape, generator=generator)


class NoisePerBatch(Good):
    stochastic = True

    def predict_slices(self, lr, generator):  # one noise draw shared by the batch: depends on how slices are batched
        noise = torch.rand((1, *lr.shape[1:]), generator=generator)
        return super().predict_slices(lr, generator) + 0.05 * noise


BROKEN = [
    (NoCitation, "card", "'citation' is empty"),
    (UncountedParameters, "card", "'parameters' is None"),
    (FitReturnsNothing, "fit", "must return its training record as a dict"),
    (FitRaises, "fit", "raised RuntimeError: out of memory in my loss"),
    (CroppedOutput, "shape", "expected (4, 39, 46)"),
    (ChannelAxisKept, "shape", "predict_volume returns (N, H, W)"),
    (Float64, "dtype", "float64, expected float32"),
    (MinusOneToOne, "range", "far outside [0, 1]"),
    (ProducesNaN, "range", "NaN or Inf"),
    (FlippedLeftRight, "geometry", "flipped left-right"),
    (IgnoresSlices, "geometry", "the first slices of the volume"),
    (SavesNothing, "save-load", "wrote nothing"),
    (LoadsNothing, "save-load", "predicts differently"),
    (GlobalRandomness, "determinism", "same seed differ"),
    (ClaimsStochastic, "determinism", "stochastic=True but seeds 0 and 1 predict the same"),
    (SeedDependentButDeterministicCard, "determinism", "set stochastic = True"),
    (NoisePerBatch, "batch-size", "changes the output"),
]


def test_a_conforming_method_passes_every_check(tmp_path):
    report = check_method(Good, workdir=tmp_path)
    assert report["checks"] == {c: "passed" for c in CHECKS}
    assert report["card"]["name"] == "kit-good" and report["training"]["steps"] == 3
    json.dumps(report)


@pytest.mark.parametrize("broken, check, fragment", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_a_broken_method_fails_its_check_with_a_clear_message(broken, check, fragment, tmp_path):
    with pytest.raises(ConformanceError) as info:
        check_method(broken, workdir=tmp_path)
    failures = info.value.failures
    assert check in failures, str(info.value)
    assert fragment in failures[check], failures[check]
    assert f"[{check}] " in str(info.value) and "kit-good" in str(info.value)
    # only the broken part fails (global randomness also breaks the save/load comparison, and says so)
    expected = {check, "save-load"} if broken is GlobalRandomness else {check}
    assert set(failures) == expected, failures
    assert info.value.report["checks"][check] == "failed"


def test_a_method_that_cannot_be_built_fails_at_init():
    class Unbuildable(Good):
        def __init__(self, preset="tiny", device="cpu", seed=0):
            raise ImportError("needs libfoo")

    with pytest.raises(ConformanceError, match=r"\[init\] Unbuildable\(preset='tiny'.* raised ImportError: needs"):
        check_method(Unbuildable)


def test_checks_can_be_chosen_and_unknown_ones_are_refused():
    report = check_method(FlippedLeftRight, checks=["card", "shape", "dtype"], fit=False)
    assert report["checks"] == {"card": "passed", "shape": "passed", "dtype": "passed"}
    with pytest.raises(ValueError, match="unknown check"):
        check_method(Good, checks=["colour"])


@pytest.mark.parametrize("cls", [bicubic.Bicubic, bicubic.BSpline])
def test_interpolation_baselines_pass_the_kit(cls):
    report = check_method(cls)
    assert report["checks"]["fit"] == "skipped: the method does not train"
    assert all(report["checks"][c] == "passed" for c in CHECKS if c != "fit")


def test_res_srdiff_passes_the_kit(monkeypatch, tmp_path):
    monkeypatch.setitem(rs.ResSRDiff.presets, "micro", MICRO)
    # fit is covered by test_res_srdiff_method (training and resume); 32x32 slices are res-srdiff's fast path
    report = check_method(rs.ResSRDiff, preset="micro", fit=False, size=(32, 32, 8), workdir=tmp_path)
    assert report["checks"]["fit"] == "skipped: fit=False"
    assert all(report["checks"][c] == "passed" for c in CHECKS if c != "fit")
    assert report["card"]["stochastic"] is True and report["card"]["sampling_steps"] == 4


def test_fixtures_of_the_pytest_plugin(srbench_volume, srbench_dataset, srbench_train_pairs):
    """The kit is a pytest plugin (entry point pytest11): its fixtures are there without any conftest."""
    assert isinstance(srbench_volume, TinyVolume)
    hr = srbench_volume.hr_array
    assert hr.shape == (12, 39, 46) and hr.min() == 0.0 and hr.max() == 1.0
    assert srbench_volume.lr.GetSize() == (23, 20, 6)
    assert np.allclose(srbench_volume.lr.GetDirection(), srbench_volume.hr.GetDirection())
    manifest = srbench_dataset.manifest()
    assert set(manifest.splits) == {"train", "val", "test"} and len(manifest.hash) == 16
    assert srbench_train_pairs.lr.shape == srbench_train_pairs.hr.shape == (24, 39, 46)
    assert srbench_train_pairs.lr.dtype == np.float32


def test_the_pytest_plugin_is_registered_and_imports_without_torch():
    import importlib.metadata

    [ep] = [ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "srbench"]
    assert ep.value == "srbench.testing" and ep.dist.name == "srbench"
    # srbench.testing itself does not need torch at import (only the checks do)
    # (the kit and its tiny data, srbench.tiny_data, imported as pytest imports them, with torch made unimportable)
    code = ("import sys; sys.modules['torch'] = None\n"
            "import srbench.testing as m; print(sorted(m.CHECKS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", timeout=60)
    assert out.returncode == 0, out.stderr

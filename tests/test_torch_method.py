"""srbench.torch_method: the public base of learned torch methods (seeded network, parameter count, training
config, safetensors save/load with one-line errors) and its canvas helpers."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from torch import nn

from srbench.errors import SRBenchError
from srbench.torch_method import TorchMethod, count_parameters, on_canvas

pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(TorchMethod):
    name = "tiny-conv"
    input_interpolator = "nearest"
    presets = {"tiny": {"width": 4, "input_interpolator": "bspline", "train": dict(steps=3, batch_size=2)},
               "wide": {"width": 8, "train": dict(steps=3, batch_size=2)}}

    def build_network(self) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, self.settings["width"], 3, padding=1), nn.Conv2d(self.settings["width"], 1, 1))

    def weights_metadata(self) -> dict:
        return {"width": self.settings["width"]}

    def predict_slices(self, lr, generator):
        return lr + self.net(lr)


def test_the_network_is_built_from_the_run_seed():
    a, b, c = Tiny(seed=1), Tiny(seed=1), Tiny(seed=2)
    torch.manual_seed(123)  # whatever the global state before, the initial weights follow the seed
    d = Tiny(seed=1)
    for pa, pb, pd in zip(a.net.parameters(), b.net.parameters(), d.net.parameters()):
        assert torch.equal(pa, pb) and torch.equal(pa, pd)
    assert not torch.equal(next(a.net.parameters()), next(c.net.parameters()))


def test_card_fields_and_training_config_come_from_the_preset():
    m = Tiny(preset="tiny", seed=5)
    assert m.input_interpolator == "bspline" and Tiny(preset="wide").input_interpolator == "nearest"
    assert m.parameter_count() == count_parameters(m.net) == 4 * 9 + 4 + 4 + 1
    assert m.card()["parameters"] == m.parameter_count() and m.card()["sampling_steps"] == 1
    cfg = m.train_config()
    assert (cfg.steps, cfg.batch_size, cfg.seed) == (3, 2, 5)
    m.settings["train"]["steps"] = 7  # srbench train --steps edits the settings of this instance only
    assert m.train_config().steps == 7 and Tiny().train_config().steps == 3


def test_save_and_load_round_trip_with_metadata(tmp_path):
    a, b = Tiny(seed=1), Tiny(seed=2)
    a.save(tmp_path / "w.safetensors")
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as fh:
        meta = fh.metadata()
    assert meta == {"method": "tiny-conv", "preset": "tiny", "width": "4"}
    b.load(tmp_path / "w.safetensors")
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(a.predict_slices(x, None), b.predict_slices(x, None))
    with pytest.raises(SRBenchError, match=r"w\.safetensors: weights do not fit tiny-conv preset 'wide'"):
        Tiny(preset="wide").load(tmp_path / "w.safetensors")
    with pytest.raises(SRBenchError, match="checkpoint not found"):
        b.load(tmp_path / "absent.safetensors")


def test_on_canvas_pads_with_background_and_crops_back():
    seen = []

    def run(x):
        seen.append(x)
        return x

    lr = torch.rand(1, 1, 20, 27)
    out = on_canvas(lr, 16, run)
    assert seen[0].shape[-2:] == (32, 32) and float(seen[0][0, 0, 0, 0]) == -1.0  # background 0 -> -1
    torch.testing.assert_close(out, lr)

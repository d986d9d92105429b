"""Res-SRDiff inference paths: bf16 within its stated bound of fp32 on the demo, the fast loop, caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import srbench_plugins.res_srdiff as rs
from srbench.errors import SRBenchError
from srbench_plugins.res_srdiff.diffusion import ResShiftDiffusion
from srbench_plugins.res_srdiff.sampler import resolve_precision, sample

WEIGHTS = Path(rs.__file__).parent / "weights" / "demo-tiny.safetensors"
# The bound the tiny preset's bf16 default is held to, on the mean scores of demo test slices against fp32.
BOUND = {"psnr": 0.02, "ssim": 2e-4}
MICRO = {
    **rs.PRESETS["tiny"],
    "network": dict(image_size=32, in_channels=1, out_channels=1, model_channels=32, num_res_blocks=[1, 1],
                    attention_resolutions=(16,), channel_mult=(1, 2), lq_size=32),
}


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setitem(rs.ResSRDiff.presets, "micro", MICRO)
    return lambda seed=0, **kw: rs.ResSRDiff(preset="micro", device="cpu", seed=seed, **kw)


def _lr(n, h=40, w=70, seed=1):
    return torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.skipif(not WEIGHTS.exists(), reason="no shipped demo checkpoint")
@pytest.mark.skipif(resolve_precision("bf16", torch.device("cpu")) != "bf16", reason="this CPU has no native bf16")
def test_bf16_default_stays_within_the_stated_bound_of_fp32_on_demo_slices():
    from srbench.plugins import get_registry
    from srbench.runner import make_dataset, make_degradation, prepare
    from srbench.scoring import score_arrays

    dataset = make_dataset("demo")
    _, degradation = make_degradation(dataset.default_degradation)
    p = prepare(next(iter(dataset.cases("test"))), degradation, 0)
    slices = p.slices[:4]
    metrics = [m for m in get_registry().metrics.values() if m.name in BOUND]
    means = {}
    for precision in ("fp32", "bf16"):
        method = rs.ResSRDiff(preset="tiny", device="cpu", seed=0, precision=precision)
        method.load(WEIGHTS)
        sr = method.predict_volume(p.lr, p.hr, slices)
        scores = score_arrays(sr, p.hr_array[slices], metrics, mask=p.mask[slices])
        means[precision] = {name: float(np.mean(values)) for name, values in scores.values.items()}
    assert means["fp32"] != means["bf16"]  # bf16 did run
    for name, bound in BOUND.items():
        assert abs(means["bf16"][name] - means["fp32"][name]) <= bound, (name, means)


def test_fast_sampler_equals_the_reference_loop_in_fp32(micro):
    method = micro(precision="fp32")
    method.head = "plain"
    y = 2 * _lr(2) - 1
    y = torch.nn.functional.pad(y, (0, 128 - 70, 0, 64 - 40), value=-1.0)
    noises = torch.randn((5, *y.shape), generator=torch.Generator().manual_seed(2))
    d: ResShiftDiffusion = method.diffusion
    with torch.no_grad():
        fast = sample(method.model_fn(method._inference_net(False)), d, y.contiguous(memory_format=torch.channels_last),
                      noises)
        ref = d.p_sample_loop(method.model_fn(method.net), y, noises=noises)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-5)


def test_cached_attention_masks_follow_newly_loaded_weights(micro, tmp_path):
    trained = micro(seed=0)
    trained.save(tmp_path / "w.safetensors")
    torch.manual_seed(99)
    other = micro(seed=0)
    with torch.no_grad():
        other.net.input_blocks[-1][1].blocks[0].attn.relative_position_bias_table.add_(1.0)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    before = other.predict_slices(_lr(1), g())  # fills the caches with the old bias tables
    other.load(tmp_path / "w.safetensors")
    after = other.predict_slices(_lr(1), g())
    assert not torch.equal(before, after)
    assert torch.equal(after, trained.predict_slices(_lr(1), g()))


def test_precision_is_checked_and_recorded_in_the_settings(micro):
    with pytest.raises(SRBenchError, match="precision must be one of"):
        micro(precision="fp16")
    method = micro(precision="fp32", compile=False)
    assert method.card()["settings"]["inference"] == {"precision": "fp32", "compile": False}
    assert method.net.state_dict().keys() == micro(precision="bf16").net.state_dict().keys()

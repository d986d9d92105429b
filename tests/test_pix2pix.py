"""pix2pix: the networks against the paper, training through the engine, weights, reproducible inference."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from srbench.method import SlicePairs
from srbench_plugins.pix2pix import PRESETS, Pix2Pix
from srbench.gan import NLayerDiscriminator, receptive_field
from srbench.torch_method import count_parameters
from srbench_plugins.pix2pix.networks import UnetGenerator, unet_levels

MICRO = {
    "generator": dict(ngf=4, num_downs=6, norm="batch1", use_dropout=True),
    "discriminator": dict(ndf=4, n_layers=3, norm="batch1"),
    "gan_mode": "vanilla", "lambda_l1": 100.0, "test_time_dropout": True, "input_interpolator": "bspline",
    "train": dict(steps=40, batch_size=2, checkpoint_every=10, optimizer="adam", lr=2e-3, betas=(0.5, 0.999),
                  schedule="linear", decay_start=1.0, min_lr_ratio=0.0, warmup_steps=0, ema_decay=None,
                  grad_clip=None),
    "canvas_jitter": 4,
}


def slices(n=4, h=52, w=44, seed=0) -> SlicePairs:
    """Smooth blobs with texture (HR) and a 2x box-blurred copy (LR on the HR grid)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    hr = []
    for _ in range(n):
        cy, cx, r = rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.35)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / r ** 2) * (0.6 + 0.4 * np.sin(20 * x + 9 * y))
        hr.append(np.clip(blob + 0.05 * rng.standard_normal((h, w)), 0, 1))
    hr = np.stack(hr).astype(np.float32)
    t = torch.from_numpy(hr)[:, None]
    lr = nn.functional.interpolate(nn.functional.avg_pool2d(t, 2), size=(h, w), mode="nearest")[:, 0].numpy()
    return SlicePairs(lr=lr, hr=hr, case_ids=["a"] * n)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setitem(PRESETS, "micro", MICRO)
    return "micro"


def test_unet_generator_is_the_papers_encoder_decoder_with_skips():
    with torch.device("meta"):
        net = UnetGenerator(1, 1, **PRESETS["paper"]["generator"])
    levels = unet_levels(net)
    # Encoder C64-C128-C256-C512-C512-C512-C512-C512 (8 levels: 256 -> 1x1), skips everywhere but the outermost
    assert [lv["down"][1] for lv in levels] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert [lv["skip"] for lv in levels] == [False] + [True] * 7
    # Dropout 0.5 on the three decoder levels next to the innermost one (the official unet_256)
    assert [lv["dropout"] for lv in levels] == [False, False, False, False, True, True, True, False]
    assert net.multiple == 256
    # the official unet_256 has 54.41 M parameters with 3 channels in and out; 1 channel removes 4.1 K
    assert count_parameters(net) == pytest.approx(54.41e6, rel=0.002)
    tiny = UnetGenerator(1, 1, **PRESETS["tiny"]["generator"])
    assert len(unet_levels(tiny)) == 6 and 1e6 < count_parameters(tiny) < 5e6


def test_patchgan_is_70x70_c64_c128_c256_c512():
    disc = NLayerDiscriminator(2, **PRESETS["paper"]["discriminator"])
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert receptive_field(disc) == 70
    # measured: the input pixels that one score depends on span 70x70 (BatchNorm in eval mode keeps the
    # normalisation per pixel, so the gradient shows the convolutions' support alone)
    probe = NLayerDiscriminator(2, ndf=4, n_layers=3, norm="batch").eval()
    x = torch.randn(1, 2, 160, 160, requires_grad=True)
    out = probe(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows, cols = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    assert int(rows.max() - rows.min()) + 1 == 70 and int(cols.max() - cols.min()) + 1 == 70
    assert receptive_field(NLayerDiscriminator(2, **PRESETS["tiny"]["discriminator"])) == 70


def test_card_states_the_method(micro):
    card = Pix2Pix("tiny").card()
    assert card["discriminator_receptive_field"] == 70 and card["stochastic"] is True
    assert card["objective"] == "vanilla GAN + 100 x L1" and card["sampling_steps"] == 1
    assert "Isola" in card["citation"] and card["license"]
    assert Pix2Pix.presets["paper"]["train"]["betas"] == (0.5, 0.999)
    assert Pix2Pix.presets["paper"]["train"]["lr"] == 2e-4


def test_overfits_saves_loads_and_reproduces(micro, tmp_path):
    pairs = slices()
    method = Pix2Pix(micro, seed=3)
    lr = torch.from_numpy(pairs.lr[:, None])
    hr = torch.from_numpy(pairs.hr[:, None])

    def l1():  # deterministic forward (no dropout masks) on the training slices
        method.net.eval()
        with torch.no_grad():
            return float((method.translate(lr, None) - hr).abs().mean())

    before = l1()
    record = method.fit(pairs, None, tmp_path / "work")
    after = l1()
    assert record["steps"] == 40 and record["finished"]
    assert after < 0.6 * before, (before, after)
    g_l1 = [h[1]["G_L1"] for h in record["loss_history"]]
    assert g_l1[-1] < g_l1[0]

    out = method.predict_slices(lr, torch.Generator().manual_seed(0))
    assert out.shape == lr.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    # same seed, same output; another seed, another dropout draw (test-time dropout, as the paper)
    again = method.predict_slices(lr, torch.Generator().manual_seed(0))
    other = method.predict_slices(lr, torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and not torch.equal(out, other)

    method.save(tmp_path / "w.safetensors")
    loaded = Pix2Pix(micro, seed=99)
    loaded.load(tmp_path / "w.safetensors")
    assert torch.equal(loaded.predict_slices(lr, torch.Generator().manual_seed(0)), out)


def test_interrupted_training_resumes_exactly(micro, tmp_path):
    pairs = slices(n=3)
    PRESETS["micro"] = {**MICRO, "train": {**MICRO["train"], "steps": 4}}
    straight = Pix2Pix(micro)
    straight.fit(pairs, None, tmp_path / "a")
    first = Pix2Pix(micro)
    first.settings["train"]["max_seconds"] = 1e-9  # stops after one step, with a checkpoint
    assert first.fit(pairs, None, tmp_path / "b")["steps"] == 1
    resumed = Pix2Pix(micro)
    record = resumed.fit(pairs, None, tmp_path / "b")
    assert record["resumed_from_step"] == 1 and record["steps"] == 4
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wrong_weights_are_a_one_line_error(micro, tmp_path):
    from srbench.errors import SRBenchError

    Pix2Pix("tiny").save(tmp_path / "tiny.safetensors")
    with pytest.raises(SRBenchError, match="do not fit pix2pix preset 'micro'"):
        Pix2Pix(micro).load(tmp_path / "tiny.safetensors")

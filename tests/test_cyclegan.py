"""CycleGAN: the networks against the paper, unpaired sampling, image pools, training, weights, reproducibility."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from srbench.gan import GANLoss, NLayerDiscriminator, receptive_field
from srbench.method import SlicePairs
from srbench.torch_method import count_parameters
from srbench_plugins.cyclegan import PRESETS, CycleGAN, UnpairedPatchSampler
from srbench_plugins.cyclegan.networks import ImagePool, ResnetGenerator, layer_notation

MICRO = {
    "generator": dict(ngf=4, n_blocks=2, norm="instance"),
    "discriminator": dict(ndf=4, n_layers=3, norm="instance"),
    "gan_mode": "lsgan", "lambda_A": 10.0, "lambda_B": 10.0, "lambda_identity": 0.5, "pool_size": 3,
    "input_interpolator": "bspline",
    "train": dict(steps=40, batch_size=2, checkpoint_every=10, optimizer="adam", lr=2e-3, betas=(0.5, 0.999),
                  schedule="linear", decay_start=0.5, min_lr_ratio=0.0, warmup_steps=0, ema_decay=None,
                  grad_clip=None),
    "patch": 24,
}


def slices(n=4, h=30, w=26, seed=0) -> SlicePairs:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    hr = np.stack([np.clip(np.exp(-((y - rng.uniform(0.3, 0.6)) ** 2 + (x - 0.5) ** 2) / 0.1)
                           + 0.05 * rng.standard_normal((h, w)), 0, 1) for _ in range(n)]).astype(np.float32)
    t = torch.from_numpy(hr)[:, None]
    lr = nn.functional.interpolate(nn.functional.avg_pool2d(t, 2), size=(h, w), mode="nearest")[:, 0].numpy()
    return SlicePairs(lr=lr, hr=hr, case_ids=["a"] * n)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setitem(PRESETS, "micro", MICRO)
    return "micro"


def test_resnet_generator_is_the_papers():
    with torch.device("meta"):
        paper = ResnetGenerator(1, 1, **PRESETS["paper"]["generator"])
    # c7s1-64, d128, d256, R256 x 9, u128, u64, c7s1-3 (one MRI channel here)
    assert layer_notation(paper) == ["c7s1-64", "d128", "d256"] + ["R256"] * 9 + ["u128", "u64", "c7s1-1"]
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in paper.modules()) == 2 + 2 * 9
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in paper.modules()) == 3 + 2 * 9 + 2
    # the official resnet_9blocks has 11.378 M parameters with 3 channels in and out
    assert count_parameters(paper) == pytest.approx(11.378e6, rel=0.002)
    tiny = CycleGAN("tiny")
    assert layer_notation(tiny.net)[3:9] == ["R64"] * 6  # the paper's 6 blocks for 128x128 training images
    card = tiny.card()
    assert 1e6 <= card["training_parameters"] <= 5e6 and card["discriminator_receptive_field"] == 70
    assert card["stochastic"] is False and "Zhu" in card["citation"]


def test_discriminators_are_70x70_patchgans_with_lsgan():
    disc = NLayerDiscriminator(1, **PRESETS["paper"]["discriminator"])
    assert receptive_field(disc) == 70
    assert [m.out_channels for m in disc.modules() if isinstance(m, nn.Conv2d)] == [64, 128, 256, 512, 1]
    gan = GANLoss("lsgan")
    assert float(gan(torch.full((1, 1, 2, 2), 0.5), True)) == pytest.approx(0.25)
    for preset in ("tiny", "paper"):
        s = PRESETS[preset]
        assert (s["gan_mode"], s["lambda_A"], s["lambda_B"], s["lambda_identity"], s["pool_size"]) == \
            ("lsgan", 10.0, 10.0, 0.5, 50)
        assert s["train"]["lr"] == 2e-4 and s["train"]["betas"] == (0.5, 0.999)


def test_image_pool_follows_the_official_rule_and_checkpoints():
    pool = ImagePool(size=3, seed=0)
    first = torch.arange(3.0).reshape(3, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: returned as given, all stored
    given = 10.0 + torch.arange(40.0).reshape(40, 1, 1, 1)
    returned = torch.cat([pool.query(g[None]) for g in given])
    from_history = int((returned != given).sum())
    assert 8 < from_history < 32  # about half the time a stored image comes back (and the new one is kept)
    assert set(returned[returned != given].tolist()) <= set(range(3)) | set(given.flatten().tolist())
    stored = torch.cat(pool.images).flatten().tolist()
    assert len(stored) == 3 and all(v in given.flatten().tolist() or v < 3 for v in stored)
    copy = ImagePool(size=3, seed=123)
    copy.load_state_dict(pool.state_dict())
    probe = torch.full((4, 1, 1, 1), 99.0)
    assert torch.equal(pool.query(probe), copy.query(probe))


def test_training_draws_are_unpaired():
    rng = np.random.default_rng(0)
    hr = rng.random((5, 40, 40), dtype=np.float32)
    sampler = UnpairedPatchSampler(SlicePairs(lr=hr.copy(), hr=hr, case_ids=["a"] * 5), patch=16, batch_size=8,
                                   seed=0)
    a, b = sampler()
    assert a.shape == b.shape == (8, 1, 16, 16)
    assert all(not torch.equal(a[i], b[i]) for i in range(8))  # LR == HR here: equal only if aligned


def test_overfits_saves_loads_and_reproduces(micro, tmp_path):
    pairs = slices()
    method = CycleGAN(micro, seed=1)
    lr = torch.from_numpy(pairs.lr[:, None])
    record = method.fit(pairs, None, tmp_path / "work")
    assert record["steps"] == 40 and record["parameters"].keys() == {"G_A", "G_B", "D_A", "D_B"}
    history = [h[1] for h in record["loss_history"]]  # running means (momentum 0.98): they lag
    assert history[-1]["cycle_A"] < history[0]["cycle_A"] and history[-1]["idt_A"] < history[0]["idt_A"]

    out = method.predict_slices(lr, torch.Generator().manual_seed(0))
    assert out.shape == lr.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(out, method.predict_slices(lr, torch.Generator().manual_seed(5)))  # deterministic
    # the trained LR -> HR generator is much closer to the HR slices than the untrained one
    hr = torch.from_numpy(pairs.hr[:, None])
    untrained = CycleGAN(micro, seed=1).predict_slices(lr, torch.Generator())
    assert (out - hr).abs().mean() < 0.5 * (untrained - hr).abs().mean()

    method.save(tmp_path / "w.safetensors")
    loaded = CycleGAN(micro, seed=42)
    loaded.load(tmp_path / "w.safetensors")
    assert torch.equal(loaded.predict_slices(lr, torch.Generator()), out)


def test_interrupted_training_resumes_exactly_pools_included(micro, tmp_path):
    pairs = slices(n=3)
    PRESETS["micro"] = {**MICRO, "train": {**MICRO["train"], "steps": 5}}
    straight = CycleGAN(micro)
    straight.fit(pairs, None, tmp_path / "a")
    first = CycleGAN(micro)
    first.settings["train"]["max_seconds"] = 1e-9
    assert first.fit(pairs, None, tmp_path / "b")["steps"] == 1
    resumed = CycleGAN(micro)
    record = resumed.fit(pairs, None, tmp_path / "b")
    assert record["resumed_from_step"] == 1 and record["steps"] == 5
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    pools_a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["extra"]
    pools_b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["extra"]
    assert torch.equal(pools_a["pool_B"]["images"], pools_b["pool_B"]["images"])

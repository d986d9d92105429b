"""TM-DDPM: the DDPM schedule, the samplers' identities, the Swin backbone, training, weights, reproducibility."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from timm.models.swin_transformer import SwinTransformerBlock

from srbench.method import SlicePairs
from srbench.torch_method import count_parameters
from srbench_plugins.tm_ddpm import PRESETS, TMDDPM
from srbench_plugins.tm_ddpm.diffusion import GaussianDiffusion
from srbench_plugins.tm_ddpm.network import SwinUNetDenoiser

MICRO_NET = dict(patch_size=2, embed_dim=16, depths=(2, 2), head_dim=8, window_size=4, mlp_ratio=2.0, train_size=16)
MICRO = {**PRESETS["tiny"], "network": MICRO_NET, "patch": 16, "sampler": "ddim", "sample_steps": 4, "eta": 0.0,
         "train": dict(steps=60, batch_size=8, lr=3e-3, optimizer="adamw", warmup_steps=5, ema_decay=0.9,
                       checkpoint_every=20)}


def slices(n=4, h=20, w=28, seed=0) -> SlicePairs:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    hr = np.stack([np.clip(np.exp(-((y - rng.uniform(0.3, 0.5)) ** 2 + (x - 0.5) ** 2) / 0.08)
                           + 0.03 * rng.standard_normal((h, w)), 0, 1) for _ in range(n)]).astype(np.float32)
    t = torch.from_numpy(hr)[:, None]
    lr = nn.functional.interpolate(nn.functional.avg_pool2d(t, 2), size=(h, w), mode="nearest")[:, 0].numpy()
    return SlicePairs(lr=lr, hr=hr, case_ids=["a"] * n)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setitem(PRESETS, "micro", MICRO)
    return "micro"


def random_net(seed=0) -> SwinUNetDenoiser:
    torch.manual_seed(seed)
    net = SwinUNetDenoiser(in_channels=2, out_channels=1, **MICRO_NET).eval()
    nn.init.normal_(net.head.weight, std=0.3)  # the head starts at 0 (epsilon = 0): make the model say something
    return net


def test_linear_beta_schedule_and_alpha_bar():
    d = GaussianDiffusion(**PRESETS["tiny"]["diffusion"])
    assert d.num_timesteps == 1000 and len(d.betas) == 1000
    assert d.betas[0] == pytest.approx(1e-4) and d.betas[-1] == pytest.approx(0.02)
    assert np.allclose(np.diff(d.betas), (0.02 - 1e-4) / 999)
    assert d.alphas_cumprod[0] == pytest.approx(0.9999)
    assert d.alphas_cumprod[-1] == pytest.approx(4.0358e-5, rel=1e-4)  # x_T is N(0, I) to 4e-5
    assert d.alphas_cumprod[-1] == pytest.approx(np.prod([1 - b for b in d.betas]), rel=1e-12)
    # the posterior q(x_{t-1} | x_t, x_0): beta_tilde = beta (1 - ab_prev) / (1 - ab); no noise at t = 0
    assert d.posterior_variance[0] == 0 and d.posterior_variance[500] < d.betas[500]
    assert PRESETS["paper"]["diffusion"] == PRESETS["tiny"]["diffusion"]


def test_training_loss_is_the_simple_epsilon_loss():
    d = GaussianDiffusion()
    x0, cond = torch.rand(3, 1, 8, 8) * 2 - 1, torch.zeros(3, 1, 8, 8)
    noise, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 500, 999])
    perfect = d.training_losses(lambda x, t_, c: noise, x0, cond, t, noise)["mse"]
    assert torch.allclose(perfect, torch.zeros(3))
    x_t = d.q_sample(x0, t, noise)
    assert torch.allclose(d.predict_xstart(x_t, t, noise), x0, atol=2e-3)  # t = 999 divides by sqrt(4e-5)


def test_ddim_with_all_steps_and_eta_1_is_ancestral_sampling():
    d, net = GaussianDiffusion(), random_net()
    model = TMDDPM.model_fn(net)
    cond = torch.rand(1, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        ancestral = d.p_sample_loop(model, cond, torch.Generator().manual_seed(7))
        ddim = d.ddim_sample_loop(model, cond, torch.Generator().manual_seed(7), steps=1000, eta=1.0)
        ddim_fast = d.ddim_sample_loop(model, cond, torch.Generator().manual_seed(7), steps=10, eta=0.0)
    assert torch.allclose(ancestral, ddim, atol=1e-4), float((ancestral - ddim).abs().max())
    assert not torch.allclose(ancestral, ddim_fast, atol=1e-2)
    assert GaussianDiffusion.ddim_timesteps(1000, 50) == list(range(0, 1000, 20))


def test_backbone_is_swin_from_timm_and_three_times_res_srdiff_at_paper_scale():
    net = random_net()
    blocks = [m for m in net.modules() if isinstance(m, SwinTransformerBlock)]
    assert len(blocks) == 2 * 2 + 2  # encoder stages + decoder stage (the deepest stage is the bottleneck)
    assert [any(b.shift_size) for b in blocks[:2]] == [False, True]  # W-MSA then SW-MSA
    with torch.device("meta"):
        paper = SwinUNetDenoiser(in_channels=2, out_channels=1, **PRESETS["paper"]["network"])
    from srbench_plugins.res_srdiff import PRESETS as RES
    from srbench_plugins.res_srdiff.network import UNetModelSwin

    with torch.device("meta"):
        res = UNetModelSwin(**RES["paper-prostate"]["network"])
    ratio = count_parameters(paper) / count_parameters(res)
    assert count_parameters(paper) == pytest.approx(1.0037e9, rel=1e-3) and 2.5 < ratio < 3.5
    assert 1e6 < TMDDPM("tiny").parameter_count() < 5e6


def test_card_records_the_sampler_and_steps():
    tiny, full, paper = TMDDPM("tiny").card(), TMDDPM("tiny-full").card(), TMDDPM.presets["paper"]
    assert (tiny["sampler"], tiny["sampling_steps"], tiny["ddim_eta"]) == ("ddim", 50, 1.0)
    assert (full["sampler"], full["sampling_steps"]) == ("ancestral", 1000)
    assert paper["sampler"] == "ancestral" and paper["sample_steps"] == 1000
    assert tiny["predict_type"] == "epsilon" and tiny["stochastic"] is True and "Pan" in tiny["citation"]
    assert TMDDPM.shipped_checkpoint("demo", "tiny-full") == TMDDPM.shipped_checkpoint("demo", "tiny")


def test_overfits_saves_loads_and_reproduces(micro, tmp_path):
    pairs = slices()
    method = TMDDPM(micro, seed=2)
    d = method.diffusion
    hr = torch.from_numpy(pairs.hr[:, None]) * 2 - 1
    lr = torch.from_numpy(pairs.lr[:, None])
    g = torch.Generator().manual_seed(0)
    hr_crop, cond = hr[..., :16, :16].repeat(4, 1, 1, 1), (lr[..., :16, :16] * 2 - 1).repeat(4, 1, 1, 1)
    t, noise = torch.randint(0, 1000, (16,), generator=g), torch.randn(16, 1, 16, 16, generator=g)

    def loss(net):
        with torch.no_grad():
            return float(d.training_losses(TMDDPM.model_fn(net.eval()), hr_crop, cond, t, noise)["mse"].mean())

    before = loss(method.net)
    record = method.fit(pairs, None, tmp_path / "work")
    after = loss(method.net)  # the EMA weights
    assert record["steps"] == 60 and record["inference_weights"] == "EMA"
    assert after < 0.6 * before, (before, after)
    # integer buffers (Swin's relative-position index) go through the EMA copied, not averaged
    ema_buffers = dict(method.net.named_buffers())
    fresh = dict(SwinUNetDenoiser(in_channels=2, out_channels=1, **MICRO_NET).named_buffers())
    index = [k for k in fresh if k.endswith("relative_position_index")]
    assert index and all(torch.equal(ema_buffers[k], fresh[k]) for k in index)

    out = method.predict_slices(lr, torch.Generator().manual_seed(0))
    assert out.shape == lr.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(out, method.predict_slices(lr, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, method.predict_slices(lr, torch.Generator().manual_seed(1)))

    method.save(tmp_path / "w.safetensors")
    loaded = TMDDPM(micro, seed=11)
    loaded.load(tmp_path / "w.safetensors")
    assert torch.equal(loaded.predict_slices(lr, torch.Generator().manual_seed(0)), out)

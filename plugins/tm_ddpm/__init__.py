"""TM-DDPM as an srbench plugin: a conventional conditional DDPM with a Swin-transformer backbone, the diffusion
baseline of Safari et al. 2025 (after Pan et al. 2023, "2D medical image synthesis using transformer-based denoising
diffusion probabilistic model", Phys. Med. Biol. 68 105004).

Diffusion (Ho et al. 2020): x_T ~ N(0, I), a linear beta schedule from 1e-4 to 0.02 over T = 1000 steps,
epsilon prediction trained with the simple loss, the LR slice (on the HR grid) concatenated to x_t as the
condition. Sampling: full ancestral sampling over all 1000 steps (posterior variance beta_tilde, predicted x_0
clipped to [-1, 1]), or DDIM (Song et al. 2021) with fewer steps; the sampler and its step count are in the
method card, hence in every run record.

Backbone: a Swin-UNet (Swin blocks from timm, patch merging/expanding, skip connections) with the timestep
added in every block. At paper scale it has 1.00 G parameters, 2.9 times Res-SRDiff's prostate network
(348.5 M): the paper's "about three times". The ``tiny`` preset (1.9 M parameters) trains on a CPU; its full
1000-step chain costs minutes per demo slice on 2 CPU cores, so ``tiny`` samples with 50 DDIM steps and
``tiny-full`` (same weights) runs the full ancestral chain.
"""

from __future__ import annotations

from pathlib import Path

import torch

from srbench import budget
from srbench.engine import PatchSampler, Trainer
from srbench.errors import SRBenchError
from srbench.torch_method import TorchMethod, on_canvas, to_net

from .diffusion import GaussianDiffusion
from .network import SwinUNetDenoiser, count_blocks

SCHEDULE = dict(steps=1000, beta_start=1e-4, beta_end=0.02)
TINY_NET = dict(patch_size=2, embed_dim=48, depths=(2, 2, 2), head_dim=16, window_size=8, mlp_ratio=4.0,
                train_size=64)
# Swin-B-like depths at width 320 -> 1,003.7 M parameters (Res-SRDiff paper-prostate: 348.5 M).
PAPER_NET = dict(patch_size=4, embed_dim=320, depths=(2, 2, 18, 2), head_dim=32, window_size=8, mlp_ratio=4.0,
                 train_size=256)
# "trained for the same number of steps with similar training parameters" as Res-SRDiff (its paper preset).
PAPER_TRAIN = dict(steps=budget.PAPER_STEPS, **budget.PAPER_SELECTION, batch_size=16, lr=5e-5, warmup_steps=5000, ema_decay=0.999, weight_decay=1e-5,
                   optimizer="radam", checkpoint_every=1000)

PRESETS = {
    "tiny": {
        "network": TINY_NET, "diffusion": SCHEDULE, "sampler": "ddim", "sample_steps": 50, "eta": 1.0,
        "clip_denoised": True, "input_interpolator": "bspline",
        # the shared budget (srbench.budget.TINY): same samples, patch and validation-based selection as the others
        "patch": budget.TINY.patch, "budget": budget.TINY.name,
        "train": dict(**budget.TINY.train(), lr=4e-4, optimizer="adamw", warmup_steps=100, ema_decay=0.999,
                      checkpoint_every=100),
        "sampler_note": ("DDIM with 50 steps and eta 1 (the stochastic DDIM; on 3 demo val slices eta 0 / 0.5 / 1 "
                         "gave 23.7 / 26.0 / 27.4 dB): the full 1000-step ancestral chain takes about 5 minutes "
                         "per demo slice on 2 CPU cores, hours for the 32 test slices; preset tiny-full runs it "
                         "with the same weights"),
    },
    "paper": {
        "network": PAPER_NET, "diffusion": SCHEDULE, "sampler": "ancestral", "sample_steps": 1000, "eta": 1.0,
        "clip_denoised": True, "input_interpolator": "nearest", "patch": 256, "train": PAPER_TRAIN,
        "sampler_note": "full ancestral sampling, 1000 steps",
    },
}
PRESETS["tiny-full"] = {**PRESETS["tiny"], "sampler": "ancestral", "sample_steps": 1000, "eta": 1.0,
                        "sampler_note": "full ancestral sampling, 1000 steps", "weights_of": "tiny"}
PRESETS["paper-ddim"] = {**PRESETS["paper"], "sampler": "ddim", "sample_steps": 50, "eta": 1.0,
                         "sampler_note": "DDIM with 50 steps (eta 1) on the paper network", "weights_of": "paper"}


class TMDDPM(TorchMethod):
    name = "tm-ddpm"
    version = "1.2.0"  # 1.2.0: noise per slice (batch-size invariant); 1.1.0: shared budget, selection on validation
    summary = ("Conditional DDPM (linear betas, T = 1000, epsilon prediction, LR concatenated) with a Swin-UNet "
               "backbone from timm blocks; full ancestral or DDIM sampling.")
    citation = ("Pan S, Wang T, Qiu RLJ, et al. 2D medical image synthesis using transformer-based denoising "
                "diffusion probabilistic model. Phys. Med. Biol. 68 105004 (2023); Ho J, Jain A, Abbeel P. "
                "Denoising diffusion probabilistic models. NeurIPS 2020; Song J, Meng C, Ermon S. Denoising "
                "diffusion implicit models. ICLR 2021")
    license = "MIT (this implementation); timm (Swin blocks) is Apache-2.0"
    stochastic = True
    presets = PRESETS
    batch_size = 8

    def __init__(self, preset: str = "tiny", device: str = "cpu", seed: int = 0):
        super().__init__(preset=preset, device=device, seed=seed)
        self.diffusion = GaussianDiffusion(**self.settings["diffusion"])

    def build_network(self) -> SwinUNetDenoiser:
        s = self.settings
        if s["sampler"] not in ("ancestral", "ddim"):  # a bad preset fails before the network is built
            raise SRBenchError(f"tm-ddpm: unknown sampler {s['sampler']!r} (ancestral | ddim)")
        return SwinUNetDenoiser(in_channels=2, out_channels=1, **s["network"])

    @classmethod
    def shipped_checkpoint(cls, dataset: str, preset: str):
        """Presets that only change the sampler share their base preset's weights."""
        return super().shipped_checkpoint(dataset, cls.presets.get(preset, {}).get("weights_of", preset))

    # --- description -------------------------------------------------------------------------------
    def sampling_steps(self) -> int:
        return self.settings["sample_steps"] if self.settings["sampler"] == "ddim" else self.diffusion.num_timesteps

    def card(self) -> dict:
        card = super().card()
        s = self.settings
        card.update(sampler=s["sampler"], sampler_note=s["sampler_note"],
                    ddim_eta=s["eta"] if s["sampler"] == "ddim" else None,
                    training_steps_T=self.diffusion.num_timesteps,
                    beta_schedule=f"linear {s['diffusion']['beta_start']:g} .. {s['diffusion']['beta_end']:g}",
                    predict_type="epsilon", posterior_variance="beta_tilde (fixed small)",
                    clip_denoised=s["clip_denoised"], condition="LR on the HR grid concatenated to x_t",
                    backbone=(f"Swin-UNet (timm SwinTransformerBlock), patch {s['network']['patch_size']}, width "
                              f"{s['network']['embed_dim']}, depths {list(s['network']['depths'])}, window "
                              f"{s['network']['window_size']}"),
                    blocks=count_blocks(self.net),
                    parameters_note=("paper preset: 1,003.7 M parameters, 2.88 x Res-SRDiff paper-prostate "
                                     "(348.5 M), the paper's 'about three times'"),
                    inference_weights="EMA")
        return card

    # --- the network as the diffusion sees it ------------------------------------------------------
    @staticmethod
    def model_fn(net: torch.nn.Module):
        return lambda x, t, cond: net(torch.cat([x, cond], 1), t)

    def configured_loss(self) -> str:
        return "MSE(eps_theta(x_t, t, LR), eps), t ~ U{0..T-1}"

    # --- training ----------------------------------------------------------------------------------
    def fit(self, train, val, workdir: Path) -> dict:
        cfg = self.train_config()
        patch = self.settings["patch"]
        if patch % self.net.multiple:
            raise SRBenchError(f"tm-ddpm: patch {patch} is not a multiple of the network's {self.net.multiple}")
        sampler = PatchSampler(train, patch, cfg.batch_size, seed=self.seed)
        T = self.diffusion.num_timesteps

        def loss_fn(net, batch):
            lr, hr = (to_net(b) for b in batch)
            t = torch.randint(0, T, (hr.shape[0],), device=hr.device)
            return self.diffusion.training_losses(self.model_fn(net), hr, lr, t)["mse"].mean(), {}

        trainer = Trainer(self.net, loss_fn, sampler, cfg, workdir, self.device, description="tm-ddpm training",
                          validate=self.validation(val, lambda loop: loop.inference_model()))
        record = trainer.fit()
        self.net = trainer.inference_model()
        return self.training_record(record, cfg, train, patch, inference_weights="EMA" if cfg.ema_decay else "raw")

    # --- weights (saved and loaded by TorchMethod) ---------------------------------------------------
    def weights_metadata(self) -> dict:
        return {"network": self.settings["network"]}

    # --- inference ---------------------------------------------------------------------------------
    def predict_slices(self, lr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.net.eval()
        s = self.settings

        def sample(cond: torch.Tensor) -> torch.Tensor:  # x0 for the padded condition, in [-1, 1]
            if s["sampler"] == "ancestral":
                return self.diffusion.p_sample_loop(self.model_fn(self.net), cond, generator, clip=s["clip_denoised"])
            return self.diffusion.ddim_sample_loop(self.model_fn(self.net), cond, generator, steps=s["sample_steps"],
                                                   eta=s["eta"], clip=s["clip_denoised"])

        with torch.no_grad():
            return on_canvas(lr, self.net.multiple, sample)


"""An example srbench method plugin: a residual SRCNN-like network trained by srbench's engine.

The network sees the LR slice already put on the HR grid (cubic B-spline, ``input_interpolator``) and predicts
the missing detail: ``SR = LR + f(LR)``, with ``f`` three convolutions (9x9 feature extraction, 1x1 mapping,
5x5 reconstruction, after Dong et al. 2016). Everything else - the training loop, devices, bf16 on CUDA, EMA,
checkpoints, resume, progress, seeded initial weights, safetensors weights, the data, scoring and the
leaderboard - is srbench's (``srbench.engine``, ``srbench.torch_method.TorchMethod``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import srbench
from srbench.engine import PatchSampler, Trainer
from srbench.method import SlicePairs
from srbench.torch_method import TorchMethod

PRESETS = {
    # CPU-sized: 200 steps on the demo's train slices, about 10 s on 2 idle CPU cores (a short training, not a
    # converged one)
    "tiny": {"channels": (16, 8), "kernels": (9, 1, 5), "patch": 32,
             "train": dict(steps=200, batch_size=8, lr=2e-3, warmup_steps=10, ema_decay=0.99,
                           checkpoint_every=100)},
    # tiny's network, 20 steps: for CI, where only the plumbing is under test
    "smoke": {"channels": (16, 8), "kernels": (9, 1, 5), "patch": 32,
              "train": dict(steps=20, batch_size=4, lr=2e-3, warmup_steps=0, ema_decay=0.9, checkpoint_every=10)},
    # the SRCNN paper's widths, trained longer on bigger patches (GPU)
    "paper": {"channels": (64, 32), "kernels": (9, 1, 5), "patch": 64,
              "train": dict(steps=50_000, batch_size=32, lr=1e-4, warmup_steps=500, ema_decay=0.999,
                            checkpoint_every=1000)},
}


class ResidualSRCNN(nn.Module):
    """LR (on the HR grid) -> LR + detail; sizes kept ("same" padding), any H and W."""

    def __init__(self, channels: tuple[int, int] = (32, 16), kernels: tuple[int, int, int] = (9, 1, 5)):
        super().__init__()
        c1, c2 = channels
        k1, k2, k3 = kernels
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, k1, padding=k1 // 2, padding_mode="replicate"), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, k2, padding=k2 // 2, padding_mode="replicate"), nn.ReLU(inplace=True),
            nn.Conv2d(c2, 1, k3, padding=k3 // 2, padding_mode="replicate"),
        )
        nn.init.zeros_(self.body[-1].weight)  # starts as the identity: SR = LR
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return lr + self.body(lr)


class ExampleSRCNN(TorchMethod):
    name = "example-srcnn"
    version = "0.1.0"
    summary = "Residual 3-layer CNN (SRCNN-like) on B-spline-interpolated LR slices, L1 loss."
    citation = ("Dong C, Loy CC, He K, Tang X. Image super-resolution using deep convolutional networks. "
                "IEEE TPAMI 38(2), 2016.")
    license = "MIT"
    stochastic = False
    input_interpolator = "bspline"
    presets = PRESETS
    batch_size = 16

    def build_network(self) -> nn.Module:
        return ResidualSRCNN(self.settings["channels"], self.settings["kernels"])  # drawn from the run's seed

    # --- the method card; parameter count, save and load (safetensors, shape-checked) are the base's --------
    def card(self) -> dict:
        card = super().card()
        card.update(loss="L1(LR + f(LR), HR)", architecture="conv9-relu-conv1-relu-conv5, residual")
        return card

    # --- training: a model, a loss and a sampler; srbench's Trainer does the rest -------------------------
    def fit(self, train: SlicePairs, val: SlicePairs | None, workdir: Path) -> dict:
        cfg = self.train_config()  # the preset's "train" table, seeded by the run
        sampler = PatchSampler(train, self.settings["patch"], cfg.batch_size, seed=self.seed)

        def loss_fn(net, batch):
            lr, hr = batch
            return F.l1_loss(net(lr), hr), {}

        trainer = Trainer(self.net, loss_fn, sampler, cfg, workdir, self.device, description="example-srcnn")
        record = trainer.fit()  # resumes from workdir's checkpoint when a run was interrupted
        self.net = trainer.inference_model()  # EMA weights
        record.update(loss="L1", patch=self.settings["patch"], train_slices=len(train))
        return record

    # --- inference: (N, 1, H, W) in [0, 1] -> same shape ---------------------------------------------------
    def predict_slices(self, lr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.net.eval()
        return self.net(lr)


@srbench.hookimpl
def register_methods(register):
    register(ExampleSRCNN)

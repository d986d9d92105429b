"""Pix2pix (Isola et al. 2017) as an srbench plugin: paired LR-on-HR-grid -> HR translation with a conditional GAN.

Generator: the official U-Net (skip connections between mirrored levels; ``unet_256`` at paper scale).
Discriminator: the 70x70 PatchGAN, conditioned on the input (it sees ``cat(LR, HR or G(LR))``). Objective:
``GAN(D(x, G(x)), real) + 100 * L1(G(x), y)`` for G and ``0.5 * (GAN(D(x, y), real) + GAN(D(x, G(x)), fake))``
for D, the vanilla (BCE) GAN loss, Adam 2e-4 with beta1 0.5; D is updated before G in each step, as in the
official ``optimize_parameters``. Training runs through srbench's ``MultiTrainer`` (two networks, two
optimizers, checkpoints, exact resume, progress, bf16 on CUDA); no EMA, as the paper has none.

Inference follows the paper: "we apply dropout at test time, and we apply batch normalization using the
statistics of the test batch ... when the batch size is set to 1" (instance normalisation). Dropout masks come
from the run's seed, drawn per slice (``srbench.slice_noise``), so the method is stochastic yet reproducible, and
a slice's output does not depend on the inference batch size; ``test_time_dropout: False`` in a preset makes it
deterministic.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from srbench import budget
from srbench.engine import MultiTrainer, PatchSampler
from srbench.gan import GAN_TRAIN, GANLoss, NLayerDiscriminator, init_weights, receptive_field
from srbench.torch_method import TorchMethod, canvas_pairs, canvas_size, count_parameters, on_canvas, to_net

from .networks import UnetGenerator, sampling_dropout

PRESETS = {
    # CPU-sized: the official architecture with ngf = ndf = 16 and 6 levels (a 1x1 bottleneck on a 64x64 patch,
    # 4x4 on the 256x256 canvas of a demo slice), on the shared budget (srbench.budget.TINY): the same samples
    # and 64x64 patches as every other learned method, weights chosen on validation. (Whole slices, as the
    # official jitter-and-crop does, would show the per-image normalisation at training what it sees at
    # inference, at 16x the pixels per sample: not the shared budget.)
    "tiny": {
        "generator": dict(ngf=16, num_downs=6, norm="batch1", use_dropout=True),
        "discriminator": dict(ndf=16, n_layers=3, norm="batch1"),
        "gan_mode": "vanilla", "lambda_l1": 100.0, "test_time_dropout": True, "input_interpolator": "bspline",
        "train": dict(**budget.TINY.train(), checkpoint_every=100, **GAN_TRAIN),
        "patch": budget.TINY.patch, "budget": budget.TINY.name,
    },
    # The paper: unet_256 (8 levels, ngf 64), 70x70 PatchGAN (ndf 64), batch size 1 on 256x256 images; as many
    # steps as Res-SRDiff's prostate model ("trained for the same number of steps", Safari et al. 2025).
    "paper": {
        "generator": dict(ngf=64, num_downs=8, norm="batch1", use_dropout=True),
        "discriminator": dict(ndf=64, n_layers=3, norm="batch1"),
        "gan_mode": "vanilla", "lambda_l1": 100.0, "test_time_dropout": True, "input_interpolator": "nearest",
        "train": dict(steps=budget.PAPER_STEPS, batch_size=1, checkpoint_every=1000, **GAN_TRAIN,
                      **budget.PAPER_SELECTION),
        "canvas_jitter": 30,
    },
}


class Pix2Pix(TorchMethod):
    name = "pix2pix"
    version = "1.2.0"  # 1.2.0: test-time dropout masks per slice (batch-size invariant); 1.1.0: shared budget
    summary = "Conditional GAN: U-Net generator, 70x70 PatchGAN, adversarial + 100 x L1 (Isola et al. 2017)."
    citation = ("Isola P, Zhu J-Y, Zhou T, Efros AA. Image-to-image translation with conditional adversarial "
                "networks. CVPR 2017. Code: github.com/junyanz/pytorch-CycleGAN-and-pix2pix")
    license = "MIT (this implementation); the official code is BSD-licensed"
    stochastic = True
    presets = PRESETS
    batch_size = 8

    def __init__(self, preset: str = "tiny", device: str = "cpu", seed: int = 0):
        super().__init__(preset=preset, device=device, seed=seed)
        self.stochastic = bool(self.settings["test_time_dropout"] and self.settings["generator"]["use_dropout"]
                               and self.settings["generator"]["num_downs"] > 5)

    def build_network(self) -> UnetGenerator:
        return init_weights(UnetGenerator(1, 1, **self.settings["generator"]))

    # --- description -------------------------------------------------------------------------------
    def discriminator(self) -> NLayerDiscriminator:
        return init_weights(NLayerDiscriminator(2, **self.settings["discriminator"]))

    def card(self) -> dict:
        card = super().card()
        disc = self.discriminator()
        card.update(generator=f"U-Net, {self.net.num_downs} levels, ngf {self.settings['generator']['ngf']}",
                    discriminator_parameters=count_parameters(disc),
                    training_parameters=count_parameters(self.net) + count_parameters(disc),
                    parameters_note="'parameters' counts G (the network used for SR); training adds D",
                    discriminator_receptive_field=receptive_field(disc),
                    objective=f"{self.settings['gan_mode']} GAN + {self.settings['lambda_l1']:g} x L1",
                    test_time_dropout=self.stochastic, normalisation="per-image (BatchNorm at batch size 1)",
                    inference_weights="raw (no EMA, as the paper)")
        return card

    def configured_loss(self) -> str:
        return f"G: {self.settings['gan_mode']} GAN + {self.settings['lambda_l1']:g} x L1; D: 0.5 x (real + fake)"

    # --- training ----------------------------------------------------------------------------------
    def fit(self, train, val, workdir: Path) -> dict:
        cfg = self.train_config()
        patch, pairs = self.settings.get("patch"), train
        if patch is None:  # whole slices, at random offsets within the jitter margin (the paper preset)
            patch = max(canvas_size(train.hr.shape[1:], self.net.multiple))
            pairs = canvas_pairs(train, patch, self.settings["canvas_jitter"])
        elif patch % self.net.multiple:
            raise ValueError(f"pix2pix: patch {patch} is not a multiple of the U-Net's {self.net.multiple}")
        sampler = PatchSampler(pairs, patch, cfg.batch_size, seed=self.seed)
        torch.manual_seed(self.seed + 1)
        disc = self.discriminator()
        gan, lambda_l1 = GANLoss(self.settings["gan_mode"]).to(self.device), self.settings["lambda_l1"]

        def step_fn(models, batch, update):
            G, D = models["G"], models["D"]
            real_a, real_b = (to_net(b) for b in batch)
            fake_b = G(real_a)
            # D first: real pairs are real, generated pairs fake (fake detached: no gradient into G)
            loss_d_fake = gan(D(torch.cat([real_a, fake_b.detach()], 1)), False)
            loss_d_real = gan(D(torch.cat([real_a, real_b], 1)), True)
            loss_d = 0.5 * (loss_d_fake + loss_d_real)
            update("D", loss_d)
            # then G: fool the updated D, and stay close to the target in L1
            loss_g_gan = gan(D(torch.cat([real_a, fake_b], 1)), True)
            loss_g_l1 = F.l1_loss(fake_b.float(), real_b.float())
            update("G", loss_g_gan + lambda_l1 * loss_g_l1)
            return {"G_GAN": loss_g_gan.detach(), "G_L1": loss_g_l1.detach(), "D": loss_d.detach()}

        trainer = MultiTrainer({"G": self.net, "D": disc}, {"D": ["D"], "G": ["G"]}, step_fn, sampler, cfg,
                               workdir, self.device, description="pix2pix training",
                               validate=self.validation(val, lambda loop: loop.inference_model("G")))
        record = trainer.fit()
        self.net = trainer.inference_model("G")
        return self.training_record(record, cfg, train, patch, crop=[patch, patch], inference_weights="raw (no EMA)",
                                    discriminator_parameters=count_parameters(disc))

    # --- weights (saved and loaded by TorchMethod) ---------------------------------------------------
    def weights_metadata(self) -> dict:
        return {"network": "G", "generator": self.settings["generator"]}

    # --- inference ---------------------------------------------------------------------------------
    def translate(self, lr: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """G(LR) for ``(N, 1, H, W)`` slices in [0, 1]; each slice's dropout masks from its own generator, split
        off ``generator`` (None: dropout off)."""
        self.net.eval()
        with torch.no_grad(), sampling_dropout(self.net, generator, len(lr)):
            return on_canvas(lr, self.net.multiple, self.net)

    def predict_slices(self, lr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.translate(lr, generator if self.stochastic else None)


"""CycleGAN (Zhu et al. 2017) as an srbench plugin: unpaired LR <-> HR translation; SR with the LR -> HR generator.

Domains: A = LR slices put on the HR grid, B = HR slices. Networks: G_A: A -> B (the SR network used at
inference), G_B: B -> A, ResNet generators (c7s1-64, d128, d256, R256 x 9, u128, u64, c7s1-1 at paper scale);
D_A judges B images, D_B judges A images, 70x70 PatchGANs. Objective, as the official ``cycle_gan_model.py``:

    G:  LSGAN(D_A(G_A(a)), real) + LSGAN(D_B(G_B(b)), real)
        + lambda_A |G_B(G_A(a)) - a| + lambda_B |G_A(G_B(b)) - b|                     (cycle, lambda 10)
        + lambda_idt (lambda_B |G_A(b) - b| + lambda_A |G_B(a) - a|)                    (identity, 0.5)
    D:  0.5 (LSGAN(D_A(b), real) + LSGAN(D_A(pool_B(G_A(a))), fake)) + the same for D_B with pool_A

with image pools of 50 generated images, Adam 2e-4 (beta1 0.5), G updated before D in each step. Training draws
the A and B patches independently (different random slices and positions of the train split): the method never
sees an aligned pair, which is CycleGAN's setting. It runs through srbench's ``MultiTrainer`` (four networks, two
optimizers, the pools' contents and random state in checkpoints, exact resume); no EMA, as the paper has none.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from srbench import budget
from srbench.engine import MultiTrainer, PatchSampler
from srbench.gan import GAN_TRAIN, GANLoss, NLayerDiscriminator, init_weights, receptive_field
from srbench.method import SlicePairs
from srbench.torch_method import TorchMethod, canvas_pairs, count_parameters, on_canvas, to_net

from .networks import ImagePool, ResnetGenerator, layer_notation

LOSS = dict(gan_mode="lsgan", lambda_A=10.0, lambda_B=10.0, lambda_identity=0.5, pool_size=50)

PRESETS = {
    # CPU-sized: ngf = ndf = 16 and 6 residual blocks (the paper's choice for images up to 128x128), on the shared
    # budget (srbench.budget.TINY): the same samples and 64x64 patches as every other learned method, weights
    # chosen on validation.
    "tiny": {
        "generator": dict(ngf=16, n_blocks=6, norm="instance"),
        "discriminator": dict(ndf=16, n_layers=3, norm="instance"),
        **LOSS, "input_interpolator": "bspline",
        "train": dict(**budget.TINY.train(), checkpoint_every=100, **GAN_TRAIN),
        "patch": budget.TINY.patch, "budget": budget.TINY.name,
    },
    # The paper: resnet_9blocks (ngf 64), 70x70 PatchGANs (ndf 64), batch size 1, 256x256 crops; as many steps
    # as Res-SRDiff's prostate model ("trained for the same number of steps", Safari et al. 2025).
    "paper": {
        "generator": dict(ngf=64, n_blocks=9, norm="instance"),
        "discriminator": dict(ndf=64, n_layers=3, norm="instance"),
        **LOSS, "input_interpolator": "nearest",
        "train": dict(steps=budget.PAPER_STEPS, batch_size=1, checkpoint_every=1000, **GAN_TRAIN,
                      **budget.PAPER_SELECTION),
        "patch": 256,
    },
}


class UnpairedPatchSampler:
    """Batches ``(a, b)``: LR patches and HR patches drawn independently (their own random slices and
    positions), so no batch holds an aligned pair. Two checkpointable generators."""

    def __init__(self, pairs: SlicePairs, patch: int, batch_size: int, seed: int):
        self.a = PatchSampler(pairs, patch, batch_size, seed=seed)
        self.b = PatchSampler(pairs, patch, batch_size, seed=seed + 7919)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a()[0], self.b()[1]

    def state_dict(self) -> dict:
        return {"a": self.a.state_dict(), "b": self.b.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.a.load_state_dict(state["a"])
        self.b.load_state_dict(state["b"])


class CycleGAN(TorchMethod):
    name = "cyclegan"
    version = "1.1.0"  # 1.1.0: tiny trains on the shared budget, weights chosen on validation
    summary = ("Unpaired GAN with cycle consistency: ResNet generators both ways, PatchGANs, LSGAN, cycle 10, "
               "identity 0.5, image pools (Zhu et al. 2017); SR with the LR -> HR generator.")
    citation = ("Zhu J-Y, Park T, Isola P, Efros AA. Unpaired image-to-image translation using cycle-consistent "
                "adversarial networks. ICCV 2017. Code: github.com/junyanz/pytorch-CycleGAN-and-pix2pix")
    license = "MIT (this implementation); the official code is BSD-licensed"
    stochastic = False
    presets = PRESETS
    batch_size = 8

    def build_network(self) -> ResnetGenerator:
        return self.generator()  # G_A: LR -> HR

    def generator(self) -> ResnetGenerator:
        return init_weights(ResnetGenerator(1, 1, **self.settings["generator"]))

    def discriminator(self) -> NLayerDiscriminator:
        return init_weights(NLayerDiscriminator(1, **self.settings["discriminator"]))

    # --- description -------------------------------------------------------------------------------
    def card(self) -> dict:
        card = super().card()
        disc = self.discriminator()
        card.update(generator=" ".join(_compact(layer_notation(self.net))),
                    training_parameters=2 * count_parameters(self.net) + 2 * count_parameters(disc),
                    parameters_note="'parameters' counts G_A (the network used for SR); training holds G_A, G_B, "
                                    "D_A and D_B",
                    discriminator_receptive_field=receptive_field(disc),
                    objective=(f"{self.settings['gan_mode']} GAN + cycle {self.settings['lambda_A']:g} + identity "
                               f"{self.settings['lambda_identity']:g} (x lambda), pools of {self.settings['pool_size']}"),
                    training_data="unpaired LR and HR patches", inference_weights="raw (no EMA, as the paper)")
        return card

    def configured_loss(self) -> str:
        s = self.settings
        return (f"G: {s['gan_mode']} GAN x 2 + cycle {s['lambda_A']:g}/{s['lambda_B']:g} + identity "
                f"{s['lambda_identity']:g} x lambda; D: 0.5 x (real + pooled fake) per discriminator")

    # --- training ----------------------------------------------------------------------------------
    def fit(self, train, val, workdir: Path) -> dict:
        s = self.settings
        cfg = self.train_config()
        patch = s["patch"]
        pairs = canvas_pairs(train, patch, 0) if min(train.hr.shape[1:]) < patch else train
        sampler = UnpairedPatchSampler(pairs, patch, cfg.batch_size, seed=self.seed)
        torch.manual_seed(self.seed + 1)
        models = {"G_A": self.net, "G_B": self.generator(), "D_A": self.discriminator(), "D_B": self.discriminator()}
        pools = {"pool_A": ImagePool(s["pool_size"], seed=self.seed + 2),
                 "pool_B": ImagePool(s["pool_size"], seed=self.seed + 3)}
        gan = GANLoss(s["gan_mode"]).to(self.device)
        lam_a, lam_b, lam_idt = s["lambda_A"], s["lambda_B"], s["lambda_identity"]

        def l1(x, y):
            return F.l1_loss(x.float(), y.float())

        def step_fn(m, batch, update):
            real_a, real_b = (to_net(b) for b in batch)
            fake_b = m["G_A"](real_a)
            rec_a = m["G_B"](fake_b)
            fake_a = m["G_B"](real_b)
            rec_b = m["G_A"](fake_a)
            # generators first (the discriminators are not updated by this loss)
            if lam_idt > 0:
                loss_idt_a = l1(m["G_A"](real_b), real_b) * lam_b * lam_idt
                loss_idt_b = l1(m["G_B"](real_a), real_a) * lam_a * lam_idt
            else:
                loss_idt_a = loss_idt_b = torch.zeros((), device=real_a.device)
            loss_g_a = gan(m["D_A"](fake_b), True)
            loss_g_b = gan(m["D_B"](fake_a), True)
            loss_cycle_a = l1(rec_a, real_a) * lam_a
            loss_cycle_b = l1(rec_b, real_b) * lam_b
            update("G", loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b)
            # then the discriminators, on real images and on generated ones drawn through the pools
            fake_b_seen = pools["pool_B"].query(fake_b)
            fake_a_seen = pools["pool_A"].query(fake_a)
            loss_d_a = 0.5 * (gan(m["D_A"](real_b), True) + gan(m["D_A"](fake_b_seen), False))
            loss_d_b = 0.5 * (gan(m["D_B"](real_a), True) + gan(m["D_B"](fake_a_seen), False))
            update("D", loss_d_a + loss_d_b)
            return {"G_A": loss_g_a.detach(), "G_B": loss_g_b.detach(), "cycle_A": loss_cycle_a.detach(),
                    "cycle_B": loss_cycle_b.detach(), "idt_A": loss_idt_a.detach(), "D_A": loss_d_a.detach(),
                    "D_B": loss_d_b.detach()}

        trainer = MultiTrainer(models, {"G": ["G_A", "G_B"], "D": ["D_A", "D_B"]}, step_fn, sampler, cfg, workdir,
                               self.device, extra_state=pools, description="cyclegan training",
                               validate=self.validation(val, lambda loop: loop.inference_model("G_A")))
        record = trainer.fit()
        self.net = trainer.inference_model("G_A")
        return self.training_record(record, cfg, train, patch, sampling="unpaired LR and HR patches",
                                    inference_weights="raw G_A (no EMA)",
                                    parameters={k: count_parameters(v) for k, v in models.items()})

    # --- weights (saved and loaded by TorchMethod) ---------------------------------------------------
    def weights_metadata(self) -> dict:
        return {"network": "G_A", "generator": self.settings["generator"]}

    # --- inference ---------------------------------------------------------------------------------
    def predict_slices(self, lr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.net.eval()
        with torch.no_grad():
            return on_canvas(lr, self.net.multiple, self.net)


def _compact(names: list[str]) -> list[str]:
    """['R64', 'R64', 'R64'] -> ['R64 x 3']."""
    out: list[str] = []
    for name in names:
        if out and out[-1].split(" x ")[0] == name:
            head, _, count = out[-1].partition(" x ")
            out[-1] = f"{head} x {int(count or 1) + 1}"
        else:
            out.append(name)
    return out


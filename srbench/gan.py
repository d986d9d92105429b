"""Building blocks of adversarial (GAN) SR methods, as the official pix2pix / CycleGAN code defines them
(junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``): normalisation layers, the weight
initialisation, the N-layer PatchGAN discriminator (70x70 with ``n_layers=3``), the GAN losses and the
official optimiser settings (``GAN_TRAIN``).

Public for every GAN-based method plugin (first-party pix2pix and cyclegan use them, as the official repository
shares one ``networks.py`` between the two methods). Module names match the official ones, so official
state_dicts map onto these networks one to one.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

# The official optimiser of both networks of a GAN, as ``TrainConfig`` fields: Adam 2e-4 with beta1 0.5; the LR
# stays constant for the first half and decays linearly to 0 (the official "linear" policy, n_epochs =
# n_epochs_decay); no EMA, no gradient clipping, as the papers.
GAN_TRAIN = dict(optimizer="adam", lr=2e-4, betas=(0.5, 0.999), schedule="linear", decay_start=0.5,
                 min_lr_ratio=0.0, warmup_steps=0, ema_decay=None, grad_clip=None)


# --- normalisation ---------------------------------------------------------------------------------------
class BatchOfOneNorm(nn.InstanceNorm2d):
    """BatchNorm as the official pix2pix uses it: batch size 1 and the network left in train mode at test time,
    i.e. each image normalised by its own statistics, with BatchNorm's learned scale and shift. That is an
    instance norm with affine parameters, and it keeps each slice independent of the others in a batch."""

    def __init__(self, num_features: int):
        super().__init__(num_features, affine=True, track_running_stats=False)


def norm_layer(kind: str):
    """``batch1`` (pix2pix: BatchNorm at batch size 1), ``batch`` (BatchNorm2d, running statistics at test
    time), ``instance`` (CycleGAN: InstanceNorm2d without affine parameters)."""
    if kind == "batch1":
        return BatchOfOneNorm
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    raise ValueError(f"unknown norm {kind!r} (batch1 | batch | instance)")


def conv_bias(kind: str) -> bool:
    """The official rule: convolutions carry a bias unless a BatchNorm (with its own shift) follows them."""
    return kind == "instance"


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The official ``init_type='normal'``: conv/linear weights N(0, 0.02), biases 0; norm scales N(1, 0.02)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


# --- PatchGAN discriminator ------------------------------------------------------------------------------
class NLayerDiscriminator(nn.Module):
    """PatchGAN: C64-C128-C256-C512 (4x4 convs, LeakyReLU 0.2, no norm on the first) then a 1-channel conv;
    with ``n_layers=3`` each output scores one 70x70 patch of the input."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch1"):
        super().__init__()
        layer, bias = norm_layer(norm), conv_bias(norm)
        kw, padw = 4, 1
        sequence = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_prev, nf_mult = nf_mult, min(2 ** n, 8)
            sequence += [nn.Conv2d(ndf * nf_prev, ndf * nf_mult, kernel_size=kw, stride=2, padding=padw, bias=bias),
                         layer(ndf * nf_mult), nn.LeakyReLU(0.2, True)]
        nf_prev, nf_mult = nf_mult, min(2 ** n_layers, 8)
        sequence += [nn.Conv2d(ndf * nf_prev, ndf * nf_mult, kernel_size=kw, stride=1, padding=padw, bias=bias),
                     layer(ndf * nf_mult), nn.LeakyReLU(0.2, True),
                     nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*sequence)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def receptive_field(net: nn.Module) -> int:
    """Receptive field of one output of a plain stack of convolutions, from its layer list."""
    field, jump = 1, 1
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            k, s, d = m.kernel_size[0], m.stride[0], m.dilation[0]
            field += (k - 1) * d * jump
            jump *= s
    return field


# --- GAN losses ------------------------------------------------------------------------------------------
class GANLoss(nn.Module):
    """The official ``GANLoss``: ``vanilla`` (the original GAN objective: BCE on logits) or ``lsgan`` (MSE),
    against a target of 1 (real) or 0 (fake) the shape of the discriminator's patch map."""

    def __init__(self, mode: str = "vanilla"):
        super().__init__()
        losses = {"vanilla": nn.BCEWithLogitsLoss(), "lsgan": nn.MSELoss()}
        if mode not in losses:
            raise ValueError(f"unknown GAN mode {mode!r} (vanilla | lsgan)")
        self.mode, self.loss = mode, losses[mode]

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        prediction = prediction.float()
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return self.loss(prediction, target)

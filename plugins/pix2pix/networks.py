"""Pix2pix networks (Isola et al. 2017), following the official code (junyanz/pytorch-CycleGAN-and-pix2pix,
``models/networks.py``): the U-Net generator built from nested skip-connection blocks, the N-layer PatchGAN
discriminator (70x70 with ``n_layers=3``), their weight initialisation, and the GAN losses. Module names match
the official ones (``model.model.1.model...``), so its state_dicts map onto these networks one to one.

CycleGAN uses the same PatchGAN discriminator and GAN loss (LSGAN there); its plugin imports them from here,
as the official repository shares one ``networks.py`` between the two methods.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F


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


# --- dropout whose test-time masks come from the run's generator ----------------------------------------
class SeededDropout(nn.Dropout):
    """``nn.Dropout`` in training. At inference, pix2pix keeps dropout on ("we apply dropout at test time", the
    paper's only noise source); here the masks are then drawn on the CPU from the run's generator, so one seed
    gives one output on any device. Without a generator (``eval()`` outside ``sampling_dropout``) it is off."""

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.dropout(x, self.p, True)
        if self.generator is None or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator) >= self.p
        return x * keep.to(device=x.device, dtype=x.dtype) / (1 - self.p)


@contextlib.contextmanager
def sampling_dropout(net: nn.Module, generator: torch.Generator | None):
    """Within the block, ``net``'s dropout layers (in eval mode) draw their masks from ``generator``."""
    layers = [m for m in net.modules() if isinstance(m, SeededDropout)]
    for m in layers:
        m.generator = generator
    try:
        yield
    finally:
        for m in layers:
            m.generator = None


# --- U-Net generator -------------------------------------------------------------------------------------
class UnetSkipConnectionBlock(nn.Module):
    """X -------------------identity---------------------- X
          |-- downsampling -- |submodule| -- upsampling --|
    Each level halves the size with a 4x4 stride-2 conv and doubles it back with a 4x4 stride-2 transposed
    conv; the input is concatenated to the output (the skip connection) except at the outermost level."""

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch1", use_dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        layer, bias = norm_layer(norm), conv_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        downrelu, downnorm = nn.LeakyReLU(0.2, True), layer(inner_nc)
        uprelu, upnorm = nn.ReLU(True), layer(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            model = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                model.append(SeededDropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """The pix2pix U-Net: ``num_downs`` levels (8 for 256x256: a 1x1 bottleneck), ``ngf`` filters at the first,
    doubling to at most ``8 * ngf``; dropout 0.5 in the ``num_downs - 5`` blocks next to the innermost one.
    The paper's encoder is C64-C128-C256-C512-C512-C512-C512-C512 (``ngf=64, num_downs=8``)."""

    def __init__(self, input_nc: int = 1, output_nc: int = 1, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch1", use_dropout: bool = True):
        super().__init__()
        if num_downs < 5:
            raise ValueError("the pix2pix U-Net needs num_downs >= 5")
        self.num_downs = num_downs
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True,
                                             norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this (every level halves)."""
        return 2 ** self.num_downs


def unet_levels(net: UnetGenerator) -> list[dict]:
    """The U-Net's levels from the outermost in: channels in/out of each downsampling conv, skip, dropout."""
    levels, block = [], net.model
    while block is not None:
        convs = [m for m in block.model if isinstance(m, nn.Conv2d)]
        sub = next((m for m in block.model if isinstance(m, UnetSkipConnectionBlock)), None)
        levels.append({"down": (convs[0].in_channels, convs[0].out_channels), "skip": not block.outermost,
                       "dropout": any(isinstance(m, nn.Dropout) for m in block.model)})
        block = sub
    return levels


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


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())

"""Pix2pix's generator (Isola et al. 2017), following the official code (junyanz/pytorch-CycleGAN-and-pix2pix,
``models/networks.py``): the U-Net built from nested skip-connection blocks, with dropout whose test-time masks
come from the run's generator. Module names match the official ones (``model.model.1.model...``), so its
state_dicts map onto this network one to one. The PatchGAN discriminator, the normalisation layers, the weight
initialisation and the GAN losses, shared with CycleGAN, are ``srbench.gan``'s.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from srbench.gan import conv_bias, norm_layer
from srbench.slice_noise import rand, slice_generators


# --- dropout whose test-time masks come from the run's generator ----------------------------------------
class SeededDropout(nn.Dropout):
    """``nn.Dropout`` in training. At inference, pix2pix keeps dropout on ("we apply dropout at test time", the
    paper's only noise source); here each slice's masks are then drawn on the CPU from that slice's generator
    (``srbench.slice_noise``, one per slice of the batch), so one seed gives one output on any device and at any
    batch size. Without generators (``eval()`` outside ``sampling_dropout``) it is off."""

    generators: list[torch.Generator] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.dropout(x, self.p, True)
        if self.generators is None or self.p == 0:
            return x
        if len(self.generators) != x.shape[0]:
            raise ValueError(f"SeededDropout: {len(self.generators)} generators for a batch of {x.shape[0]}")
        keep = rand(self.generators, x.shape[1:]) >= self.p
        return x * keep.to(device=x.device, dtype=x.dtype) / (1 - self.p)


@contextlib.contextmanager
def sampling_dropout(net: nn.Module, generator: torch.Generator | None, n: int):
    """Within the block, ``net``'s dropout layers (in eval mode) draw the masks of each of the ``n`` slices of a
    batch from its own generator, split off ``generator`` (None: dropout off)."""
    layers = [m for m in net.modules() if isinstance(m, SeededDropout)]
    generators = slice_generators(generator, n) if generator is not None else None
    for m in layers:
        m.generators = generators
    try:
        yield
    finally:
        for m in layers:
            m.generators = None


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

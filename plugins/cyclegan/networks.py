"""CycleGAN's generator and image pool (Zhu et al. 2017), following the official code
(junyanz/pytorch-CycleGAN-and-pix2pix: ``models/networks.py`` ResnetGenerator, ``util/image_pool.py``).
The PatchGAN discriminator, normalisation layers and GAN loss are ``srbench.gan``'s, shared with pix2pix.

Generator, in the paper's notation (appendix 7.2): c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3
(here c7s1-1: one MRI channel); reflection padding, instance normalisation, ReLU, tanh output.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from srbench.gan import conv_bias, norm_layer


class ResnetBlock(nn.Module):
    """R``dim``: two 3x3 convolutions (reflection padded, normalised, ReLU between) and an identity shortcut."""

    def __init__(self, dim: int, norm: str = "instance", use_dropout: bool = False):
        super().__init__()
        layer, bias = norm_layer(norm), conv_bias(norm)
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=bias), layer(dim),
                 nn.ReLU(True)]
        if use_dropout:
            block.append(nn.Dropout(0.5))
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=bias), layer(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d(2 ngf), d(4 ngf), R(4 ngf) x n_blocks, u(2 ngf), u(ngf), c7s1-output_nc, tanh.
    The paper uses 9 blocks for 256x256 images and 6 for 128x128."""

    def __init__(self, input_nc: int = 1, output_nc: int = 1, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", use_dropout: bool = False):
        super().__init__()
        layer, bias = norm_layer(norm), conv_bias(norm)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=bias), layer(ngf),
                 nn.ReLU(True)]
        n_down = 2
        for i in range(n_down):  # d128, d256
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=bias),
                      layer(ngf * mult * 2), nn.ReLU(True)]
        mult = 2 ** n_down
        for _ in range(n_blocks):  # R256 x n
            model += [ResnetBlock(ngf * mult, norm=norm, use_dropout=use_dropout)]
        for i in range(n_down):  # u128, u64
            mult = 2 ** (n_down - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1,
                                         output_padding=1, bias=bias),
                      layer(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)
        self.multiple = 2 ** n_down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def layer_notation(net: ResnetGenerator) -> list[str]:
    """The generator's layers in the paper's notation (c7s1-k, dk, Rk, uk), read from the module list."""
    names, layers = [], list(net.model)
    for m in layers:
        if isinstance(m, nn.Conv2d) and m.kernel_size == (7, 7):
            names.append(f"c7s1-{m.out_channels}")
        elif isinstance(m, nn.Conv2d) and m.stride == (2, 2):
            names.append(f"d{m.out_channels}")
        elif isinstance(m, ResnetBlock):
            names.append(f"R{m.conv_block[1].out_channels}")
        elif isinstance(m, nn.ConvTranspose2d):
            names.append(f"u{m.out_channels}")
    return names


class ImagePool:
    """The history of generated images that the discriminators are shown (Shrivastava et al. 2017): until the
    pool holds ``size`` images each new one is stored and returned; afterwards, with probability 1/2, a new image
    replaces a random stored one and the stored one is returned, otherwise the new one is returned. The random
    choices come from the pool's own generator, saved in checkpoints with the pool, so resuming is exact."""

    def __init__(self, size: int = 50, seed: int = 0):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand((), generator=self.generator)) > 0.5:
                k = int(torch.randint(self.size, (), generator=self.generator))
                old = self.images[k].clone()
                self.images[k] = image.clone()
                out.append(old)
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        images = torch.cat(self.images, 0).cpu() if self.images else torch.zeros(0)
        return {"images": images, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        images = state["images"]
        device = self.images[0].device if self.images else images.device
        self.images = [img.unsqueeze(0).to(device) for img in images] if images.numel() else []
        self.generator.set_state(state["generator"].cpu())

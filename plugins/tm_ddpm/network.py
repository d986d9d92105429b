"""The TM-DDPM denoiser: a Swin-transformer U-Net (Swin-UNet, Cao et al. 2021, the backbone family of Pan et al.
2023) whose transformer blocks are timm's ``SwinTransformerBlock``, conditioned on the diffusion step.

    x_t (1 channel) ++ LR (1 channel) -> patch embedding (p x p conv) -> encoder: stages of Swin blocks at
    C, 2C, 4C, ... channels with patch merging between them -> decoder: patch expanding, skip concatenation,
    Swin blocks -> final patch expanding (x p) -> epsilon (1 channel)

Every block receives the timestep: a sinusoidal embedding through a 2-layer MLP, projected to the block's width
and added to its tokens before the block (as DDPM's U-Net adds it inside each residual block). Windows of
``window_size`` tokens, shifted in every other block; input sides must be multiples of ``multiple``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from timm.models.swin_transformer import PatchMerging, SwinTransformerBlock


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, as in DDPM/guided-diffusion."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb


class TimeSwinBlock(nn.Module):
    """timm's Swin block (NHWC), with the timestep embedding added to the tokens first."""

    def __init__(self, dim: int, time_dim: int, num_heads: int, window_size: int, shift: bool, mlp_ratio: float,
                 resolution: int):
        super().__init__()
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, dim))
        self.block = SwinTransformerBlock(dim, input_resolution=(resolution, resolution), num_heads=num_heads,
                                          window_size=window_size, shift_size=window_size // 2 if shift else 0,
                                          always_partition=True, dynamic_mask=True, mlp_ratio=mlp_ratio)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.block(x + self.time(temb)[:, None, None, :])


class Stage(nn.Module):
    def __init__(self, dim: int, depth: int, time_dim: int, head_dim: int, window_size: int, mlp_ratio: float,
                 resolution: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            TimeSwinBlock(dim, time_dim, max(1, dim // head_dim), window_size, shift=i % 2 == 1, mlp_ratio=mlp_ratio,
                          resolution=resolution) for i in range(depth))

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, temb)
        return x


class PatchExpand(nn.Module):
    """Swin-UNet's patch expanding: a linear layer to ``scale^2 * out_dim`` channels, rearranged to a
    ``scale``-times larger grid (NHWC), then LayerNorm."""

    def __init__(self, dim: int, out_dim: int, scale: int = 2):
        super().__init__()
        self.scale, self.out_dim = scale, out_dim
        self.expand = nn.Linear(dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        s = self.scale
        x = self.expand(x).reshape(b, h, w, s, s, self.out_dim).permute(0, 1, 3, 2, 4, 5)
        return self.norm(x.reshape(b, h * s, w * s, self.out_dim))


class SwinUNetDenoiser(nn.Module):
    """epsilon_theta(x_t, t, LR). ``depths[i]`` Swin blocks at width ``embed_dim * 2**i`` in the encoder, and the
    same in the decoder for every stage but the deepest (the bottleneck)."""

    def __init__(self, in_channels: int = 2, out_channels: int = 1, patch_size: int = 4, embed_dim: int = 96,
                 depths: tuple[int, ...] = (2, 2, 2, 2), head_dim: int = 32, window_size: int = 8,
                 mlp_ratio: float = 4.0, train_size: int = 256):
        super().__init__()
        self.patch_size, self.window_size, self.depths = patch_size, window_size, tuple(depths)
        levels = len(depths)
        dims = [embed_dim * 2 ** i for i in range(levels)]
        time_dim = 4 * embed_dim
        self.time_embed = nn.Sequential(nn.Linear(embed_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.embed_norm = nn.LayerNorm(embed_dim)
        res = [max(1, train_size // patch_size // 2 ** i) for i in range(levels)]
        self.encoder = nn.ModuleList(Stage(dims[i], depths[i], time_dim, head_dim, window_size, mlp_ratio, res[i])
                                     for i in range(levels))
        self.merges = nn.ModuleList(PatchMerging(dims[i], dims[i + 1]) for i in range(levels - 1))
        self.expands = nn.ModuleList(PatchExpand(dims[i + 1], dims[i]) for i in range(levels - 1))
        self.skips = nn.ModuleList(nn.Linear(2 * dims[i], dims[i]) for i in range(levels - 1))
        self.decoder = nn.ModuleList(Stage(dims[i], depths[i], time_dim, head_dim, window_size, mlp_ratio, res[i])
                                     for i in range(levels - 1))
        self.out_norm = nn.LayerNorm(embed_dim)
        self.final_expand = PatchExpand(embed_dim, embed_dim, scale=patch_size)
        self.head = nn.Linear(embed_dim, out_channels)
        self.embed_dim = embed_dim
        self.multiple = patch_size * 2 ** (levels - 1) * window_size
        self.apply(_init_linear)
        nn.init.zeros_(self.head.weight)  # epsilon starts at 0
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_embed(timestep_embedding(t, self.embed_dim))
        h = self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))  # NHWC tokens
        skips = []
        for i, stage in enumerate(self.encoder):
            h = stage(h, temb)
            if i < len(self.merges):
                skips.append(h)
                h = self.merges[i](h)
        for i in reversed(range(len(self.decoder))):
            h = self.expands[i](h)
            h = self.skips[i](torch.cat([h, skips[i]], dim=-1))
            h = self.decoder[i](h, temb)
        h = self.final_expand(self.out_norm(h))
        return self.head(h).permute(0, 3, 1, 2).contiguous()


def _init_linear(m: nn.Module) -> None:
    """timm's Swin initialisation: truncated normal (std 0.02) linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def count_blocks(net: SwinUNetDenoiser) -> dict:
    return {"encoder": [len(s.blocks) for s in net.encoder], "decoder": [len(s.blocks) for s in net.decoder],
            "swin_blocks": sum(isinstance(m, SwinTransformerBlock) for m in net.modules())}

"""Res-SRDiff denoiser ``UNetModelSwin`` (Safari et al. 2025), a ResShift-style UNet with Swin layers.

Re-implemented to match the official code (mosaf/Res-SRDiff, script/networks/unet.py and
swin_transformer.py) numerically and by state_dict: the same module names, shapes and persistent
buffers, so an official checkpoint loads with ``strict=True``.  Conventions worth knowing:

* ``attention_resolutions`` are feature-map sizes (``ds`` starts at ``image_size`` and halves per
  level), not downsample rates; a Swin layer follows only the first ResBlock of a listed level.
* The Swin layers (``swin.py``) run on channels-last tokens; their conventions are described there.
* Every layer accepts NCHW maps in either memory format; channels-last (``to_channels_last``) is the
  faster one on CPU and GPU.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .swin import SHIFT_MASKS, BasicLayer, GroupNorm32, normalization, shifted_window_mask  # noqa: F401


# --------------------------------------------------------------------------------------------
# basic operations
# --------------------------------------------------------------------------------------------
def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    if dims not in (1, 2, 3):
        raise ValueError(f"unsupported dimensions: {dims}")
    return (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1](*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    if dims not in (1, 2, 3):
        raise ValueError(f"unsupported dimensions: {dims}")
    return (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[dims - 1](*args, **kwargs)


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding [cos(t f), sin(t f)] (cos first), f = exp(-ln(max_period) k / half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs.to(timesteps.device)[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------------
# UNet blocks
# --------------------------------------------------------------------------------------------
class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep embedding as second argument."""


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest x2 (inner two dims for 3-D) followed by an optional 3x3 convolution."""

    def __init__(self, channels, use_conv, dims=2, out_channels=None):
        super().__init__()
        self.channels, self.out_channels = channels, out_channels or channels
        self.use_conv, self.dims = use_conv, dims
        if use_conv:
            self.conv = conv_nd(dims, channels, self.out_channels, 3, padding=1)

    def forward(self, x):
        if self.dims == 3:
            x = F.interpolate(x, (x.shape[2], x.shape[3] * 2, x.shape[4] * 2), mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Stride-2 3x3 convolution, or average pooling without ``use_conv``."""

    def __init__(self, channels, use_conv, dims=2, out_channels=None):
        super().__init__()
        self.channels, self.out_channels = channels, out_channels or channels
        stride = 2 if dims != 3 else (1, 2, 2)
        if use_conv:
            self.op = conv_nd(dims, channels, self.out_channels, 3, stride=stride, padding=1)
        else:
            if self.channels != self.out_channels:
                raise ValueError("pooling Downsample cannot change the channel count")
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x):
        return self.op(x)


class ResBlock(TimestepBlock):
    """GN-SiLU-conv, + Linear(SiLU(emb)) (or scale/shift), GN-SiLU-Dropout-conv(zero init), + skip."""

    def __init__(self, channels, emb_channels, dropout, out_channels=None, use_conv=False,
                 use_scale_shift_norm=False, dims=2, up=False, down=False):
        super().__init__()
        self.out_channels = out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(),
                                       conv_nd(dims, channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False, dims), Upsample(channels, False, dims)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False, dims), Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            normalization(out_channels), nn.SiLU(), nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, out_channels, out_channels, 3, padding=1)))
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = conv_nd(dims, channels, out_channels, 3, padding=1)
        else:
            self.skip_connection = conv_nd(dims, channels, out_channels, 1)

    def forward(self, x, emb):
        if self.updown:
            h = self.h_upd(self.in_layers[:-1](x))
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        emb_out = emb_out.reshape(*emb_out.shape, *([1] * (h.dim() - emb_out.dim())))
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self._skip(x) + h

    def _skip(self, x):
        skip = self.skip_connection
        if isinstance(skip, nn.Conv2d) and skip.kernel_size == (1, 1):
            # A 1x1 convolution as a matrix product over channels-last pixels: measured on CPU, PyTorch sends
            # these (channels-last, few pixels) to a slow non-oneDNN path.
            return F.linear(x.permute(0, 2, 3, 1), skip.weight.flatten(1), skip.bias).permute(0, 3, 1, 2)
        return skip(x)


# --------------------------------------------------------------------------------------------
# the UNet
# --------------------------------------------------------------------------------------------
class UNetModelSwin(nn.Module):
    """Official Res-SRDiff/ResShift ``UNetModelSwin``; ``forward(x, timesteps, lq=None)``.

    ``x`` is x_t (N, in_channels, H, W); ``lq`` the low-quality image, concatenated after ``x``
    (through ``feature_extractor``, Identity when ``lq_size == image_size``).
    """

    def __init__(self, image_size, in_channels, model_channels, out_channels, num_res_blocks,
                 attention_resolutions, dropout=0, channel_mult=(1, 2, 4, 8), conv_resample=True,
                 dims=2, use_fp16=False, num_heads=1, num_head_channels=-1, use_scale_shift_norm=False,
                 resblock_updown=False, swin_depth=2, swin_embed_dim=96, window_size=8, mlp_ratio=2.0,
                 patch_norm=False, cond_lq=True, cond_mask=False, lq_size=256, shift_mask="official"):
        super().__init__()
        if isinstance(num_res_blocks, int):
            num_res_blocks = [num_res_blocks] * len(channel_mult)
        elif len(num_res_blocks) != len(channel_mult):
            raise ValueError("num_res_blocks must have one entry per channel_mult level")
        if num_heads == -1 and not (num_head_channels > 0 and swin_embed_dim % num_head_channels == 0):
            raise ValueError("num_head_channels must divide swin_embed_dim when num_heads == -1")
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.model_channels, self.num_res_blocks = model_channels, list(num_res_blocks)
        self.attention_resolutions, self.channel_mult = attention_resolutions, channel_mult
        self.dropout, self.conv_resample = dropout, conv_resample
        self.dtype = torch.float16 if use_fp16 else torch.float32
        self.num_heads, self.num_head_channels = num_heads, num_head_channels
        self.cond_lq, self.cond_mask, self.shift_mask = cond_lq, cond_mask, shift_mask
        emb_dim = model_channels * 4
        self._block_kw = dict(emb_channels=emb_dim, dropout=dropout, dims=dims,
                              use_scale_shift_norm=use_scale_shift_norm)
        self._swin_kw = dict(
            embed_dim=swin_embed_dim, window_size=window_size, depth=swin_depth, patch_size=1,
            num_heads=num_heads if num_head_channels == -1 else swin_embed_dim // num_head_channels,
            mlp_ratio=mlp_ratio, qkv_bias=True, qk_scale=None, drop=dropout, attn_drop=0.0,
            drop_path=0.0, use_checkpoint=False, patch_norm=patch_norm, shift_mask=shift_mask)

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim))
        self.feature_extractor, lq_chans = self._feature_extractor(cond_lq, cond_mask, lq_size, image_size)

        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(conv_nd(dims, in_channels + lq_chans, ch, 3, padding=1))])
        skip_chans, ds = [ch], image_size
        for level, mult in enumerate(channel_mult):
            for j in range(num_res_blocks[level]):
                layers = [self._resblock(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions and j == 0:
                    layers.append(self._swin(ch, ds))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = (self._resblock(ch, ch, down=True) if resblock_updown
                        else Downsample(ch, conv_resample, dims=dims, out_channels=ch))
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds //= 2

        self.middle_block = TimestepEmbedSequential(
            self._resblock(ch, ch), self._swin(ch, ds), self._resblock(ch, ch))

        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks[level] + 1):
                layers = [self._resblock(ch + skip_chans.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions and i == 0:
                    layers.append(self._swin(ch, ds))
                if level and i == num_res_blocks[level]:
                    layers.append(self._resblock(ch, ch, up=True) if resblock_updown
                                  else Upsample(ch, conv_resample, dims=dims, out_channels=ch))
                    ds *= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(normalization(ch), nn.SiLU(),
                                 conv_nd(dims, input_ch, out_channels, 3, padding=1))

    @staticmethod
    def _feature_extractor(cond_lq, cond_mask, lq_size, image_size):
        """(module, channels it adds to the input conv), mirroring the official branches."""
        if cond_lq and lq_size == image_size:
            return nn.Identity(), 1
        layers, chans, base = [], 1 if cond_mask else 3, 16
        for _ in range(int(math.log(lq_size / image_size) / math.log(2))):
            layers += [nn.Conv2d(chans, base, 3, 1, 1), nn.SiLU(),
                       Downsample(base, True, out_channels=base * 2)]
            base *= 2
            chans = base
        return nn.Sequential(*layers), base

    def _resblock(self, channels, out_channels, up=False, down=False) -> ResBlock:
        return ResBlock(channels, out_channels=out_channels, up=up, down=down, **self._block_kw)

    def _swin(self, channels, resolution) -> BasicLayer:
        return BasicLayer(in_chans=channels, img_size=resolution, **self._swin_kw)

    def forward(self, x, timesteps, lq=None, mask=None):
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels)).type(self.dtype)
        if lq is not None:
            if not self.cond_lq:
                raise ValueError("this network was built with cond_lq=False")
            if mask is not None:
                lq = torch.cat([lq, mask], dim=1)
            x = torch.cat([x, self.feature_extractor(lq.type(self.dtype))], dim=1)
        h, skips = x.type(self.dtype), []
        for module in self.input_blocks:
            h = module(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.type(x.dtype))


def to_bf16(net: UNetModelSwin) -> UNetModelSwin:
    """A copy of ``net`` for bfloat16 inference, the official ``use_fp16`` design with bfloat16: the convolutions
    and linear layers of the U-Net body (input, middle and output blocks, Swin layers included) hold bfloat16
    weights and the body runs in bfloat16, while the timestep MLP, every GroupNorm (evaluated in float32) and the
    output head stay float32. Measured on a CPU with AVX-512 BF16, this is faster than autocast, which re-casts
    activations and weights op by op.
    """
    out = copy.deepcopy(net)
    for blocks in (out.input_blocks, out.middle_block, out.output_blocks):
        for module in blocks.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.to(torch.bfloat16)
    out.dtype = torch.bfloat16
    return out


def build_network(ctor_kwargs: dict, **overrides) -> UNetModelSwin:
    """UNetModelSwin from a dict of official constructor kwargs (lists become tuples)."""
    kwargs = {k: tuple(v) if k in ("attention_resolutions", "channel_mult") else v
              for k, v in ctor_kwargs.items()}
    kwargs.update(overrides)
    return UNetModelSwin(**kwargs)

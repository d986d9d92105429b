"""Res-SRDiff denoiser ``UNetModelSwin`` (Safari et al. 2025), a ResShift-style UNet with Swin layers.

Re-implemented to match the official code (mosaf/Res-SRDiff, script/networks/unet.py and
swin_transformer.py) numerically and by state_dict: the same module names, shapes and persistent
buffers, so an official checkpoint loads with ``strict=True``.  Conventions worth knowing:

* ``attention_resolutions`` are feature-map sizes (``ds`` starts at ``image_size`` and halves per
  level), not downsample rates; a Swin layer follows only the first ResBlock of a listed level.
* Inside the Swin blocks the norms are GroupNorm(32) over (C, H, W) of NCHW maps and the MLP is
  two 1x1 convolutions; tokens of a window are ordered row-major.
* ``shift_mask="official"`` reproduces the official ``calculate_mask``, which indexes a (1, 1, H, W)
  tensor as if it were NHWC; ``"standard"`` gives the usual Swin shifted-window mask.
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, to_2tuple, trunc_normal_
from timm.models.swin_transformer import get_relative_position_index, window_partition, window_reverse
from torch import nn
from torch.utils import checkpoint

SHIFT_MASKS = ("official", "standard")


# --------------------------------------------------------------------------------------------
# basic operations
# --------------------------------------------------------------------------------------------
class GroupNorm32(nn.GroupNorm):
    """GroupNorm evaluated in float32 and cast back (the official ``normalization``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


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
        return self.skip_connection(x) + h


# --------------------------------------------------------------------------------------------
# Swin layers (NCHW feature maps)
# --------------------------------------------------------------------------------------------
def _bands(n: int, window: int, shift: int) -> torch.Tensor:
    """Label 0/1/2 for the slices [0, n-ws), [n-ws, n-shift), [n-shift, n) of one axis."""
    lab = torch.zeros(n)
    lab[n - window:n - shift] = 1
    lab[n - shift:] = 2
    return lab


def shifted_window_mask(height: int, width: int, window: int, shift: int,
                        mode: str = "official") -> torch.Tensor:
    """Additive attention mask (nW, ws*ws, ws*ws) with 0 / -100 for a cyclically shifted map.

    "standard": the usual Swin mask (regions from row and column bands).
    "official": the official ``calculate_mask`` fills a (1, 1, H, W) tensor as if it were NHWC, so
    only the row bands act (labels depend on the row alone), and it flattens each window
    column-major; a token at local (r, c) therefore gets the label of local row c.
    """
    rows = _bands(height, window, shift)
    if mode == "standard":
        img = rows[:, None] * 3 + _bands(width, window, shift)[None, :]
    elif mode == "official":
        img = rows[:, None].expand(height, width)
    else:
        raise ValueError(f"shift_mask must be one of {SHIFT_MASKS}, got {mode!r}")
    win = window_partition(img[None, :, :, None].contiguous(), (window, window))[..., 0]
    if mode == "official":
        win = win.transpose(1, 2)
    win = win.reshape(-1, window * window)
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    """Window MHSA with relative position bias.

    Not timm's WindowAttention: timm keeps ``relative_position_index`` non-persistent (the official
    checkpoint stores it) and may use fused SDPA; this follows the official explicit computation.
    """

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None,
                 attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.window_size = wh, ww = to_2tuple(window_size)
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        self.register_buffer("relative_position_index", get_relative_position_index(wh, ww))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)  # heads, N, N

    def forward(self, x, mask=None):
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn + self.relative_position_bias().unsqueeze(0).to(attn.dtype)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b_, n, c)
        return self.proj_drop(self.proj(x))


class SwinTransformerBlock(nn.Module):
    """x + WindowAttn(GN(x)); x + MLP(GN(x)), on NCHW maps; optional cyclic shift."""

    def __init__(self, dim, input_resolution, num_heads, window_size=7, shift_size=0, mlp_ratio=4.0,
                 qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 act_layer=nn.GELU, shift_mask="official"):
        super().__init__()
        if shift_mask not in SHIFT_MASKS:
            raise ValueError(f"shift_mask must be one of {SHIFT_MASKS}, got {shift_mask!r}")
        self.dim, self.input_resolution, self.num_heads = dim, tuple(input_resolution), num_heads
        self.window_size, self.shift_size, self.shift_mask = window_size, shift_size, shift_mask
        if min(self.input_resolution) <= window_size:  # one window covering the map, no shift
            self.shift_size, self.window_size = 0, min(self.input_resolution)
        if not 0 <= self.shift_size < self.window_size:
            raise ValueError("shift_size must be in [0, window_size)")
        # GroupNorm over (C, H, W) of the NCHW map (official), not timm's per-token LayerNorm.
        self.norm1 = normalization(dim)
        self.attn = WindowAttention(dim, self.window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = normalization(dim)
        # timm's Mlp with use_conv=True: fc1/fc2 are 1x1 convs on NCHW, exactly the official MLP.
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop, use_conv=True)
        # Stored for state_dict compatibility only: the official forward never reads it (its
        # input_resolution list never equals the (H, W) tuple) and recomputes the mask per call.
        mask = self.calculate_mask(self.input_resolution) if self.shift_size > 0 else None
        self.register_buffer("attn_mask", mask)

    def calculate_mask(self, x_size) -> torch.Tensor:
        return shifted_window_mask(x_size[0], x_size[1], self.window_size, self.shift_size, self.shift_mask)

    def forward(self, x):
        _, c, h, w = x.shape
        ws, s = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x)
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s), dims=(2, 3))
        windows = window_partition(x.permute(0, 2, 3, 1), (ws, ws)).reshape(-1, ws * ws, c)
        # With shift 0 the official mask is all zeros, i.e. no mask.
        mask = self.calculate_mask((h, w)).to(x.device, x.dtype) if s > 0 else None
        windows = self.attn(windows, mask=mask).view(-1, ws, ws, c)
        x = window_reverse(windows, (ws, ws), h, w).permute(0, 3, 1, 2).contiguous()
        if s > 0:
            x = torch.roll(x, shifts=(s, s), dims=(2, 3))
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Conv(patch_size) in_chans -> embed_dim, optional GroupNorm."""

    def __init__(self, in_chans, img_size=224, patch_size=4, embed_dim=96, patch_norm=False):
        super().__init__()
        img_size, patch_size = to_2tuple(img_size), to_2tuple(patch_size)
        self.patches_resolution = [img_size[0] // patch_size[0], img_size[1] // patch_size[1]]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = normalization(embed_dim) if patch_norm else nn.Identity()

    def forward(self, x):
        return self.norm(self.proj(x))


class PatchUnEmbed(nn.Module):
    """1x1 conv embed_dim -> out_chans, optional GroupNorm."""

    def __init__(self, out_chans, embed_dim=96, patch_norm=False):
        super().__init__()
        self.proj = nn.Conv2d(embed_dim, out_chans, kernel_size=1, stride=1)
        self.norm = normalization(out_chans) if patch_norm else nn.Identity()

    def forward(self, x):
        return self.norm(self.proj(x))


class BasicLayer(nn.Module):
    """patch_embed -> ``depth`` Swin blocks (odd ones shifted) -> patch_unembed; no outer residual."""

    def __init__(self, in_chans, embed_dim, num_heads, window_size, depth=2, img_size=224, patch_size=4,
                 mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 use_checkpoint=False, patch_norm=True, shift_mask="official"):
        super().__init__()
        self.embed_dim, self.depth, self.use_checkpoint = embed_dim, depth, use_checkpoint
        self.patch_embed = PatchEmbed(in_chans, img_size, patch_size, embed_dim, patch_norm)
        self.input_resolution = self.patch_embed.patches_resolution
        self.patch_unembed = PatchUnEmbed(in_chans, embed_dim, patch_norm)
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(
                embed_dim, self.input_resolution, num_heads, window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop, attn_drop=attn_drop,
                drop_path=drop_path[i] if isinstance(drop_path, (list, tuple)) else drop_path,
                shift_mask=shift_mask)
            for i in range(depth)])

    def forward(self, x):
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = checkpoint.checkpoint(blk, x, use_reentrant=False) if self.use_checkpoint else blk(x)
        return self.patch_unembed(x)


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


def build_network(ctor_kwargs: dict, **overrides) -> UNetModelSwin:
    """UNetModelSwin from a dict of official constructor kwargs (lists become tuples)."""
    kwargs = {k: tuple(v) if k in ("attention_resolutions", "channel_mult") else v
              for k, v in ctor_kwargs.items()}
    kwargs.update(overrides)
    return UNetModelSwin(**kwargs)

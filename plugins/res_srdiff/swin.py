"""The Swin layers of Res-SRDiff's ``UNetModelSwin``, computed on channels-last tokens.

Numerically the official layers (mosaf/Res-SRDiff, script/networks/swin_transformer.py) in float32, with the
same module names, shapes and persistent buffers, so official checkpoints load with ``strict=True``.  The
official code works on NCHW maps with 1x1 convolutions for the patch embedding, MLP and un-embedding; here the
whole layer runs on (B, H, W, C) tokens instead, where those 1x1 convolutions are plain matrix products
(``F.linear`` on the convolutions' own weights), and attention is ``F.scaled_dot_product_attention`` with the
relative position bias and the shift mask folded into one cached additive mask.  Measured on a 2-core CPU, the
1x1 convolutions were on a slow fallback path; ``benchmarks/sampler_speed.py`` records the effect.

Conventions kept from the official code:

* the norms are GroupNorm(32) over (C, H, W) (not timm's per-token LayerNorm), evaluated in float32;
* tokens of a window are ordered row-major; the second block of a layer is cyclically shifted by ws/2;
* ``shift_mask="official"`` reproduces the official ``calculate_mask``, which indexes a (1, 1, H, W) tensor as
  if it were NHWC; ``"standard"`` gives the usual Swin shifted-window mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, to_2tuple, trunc_normal_
from timm.models.swin_transformer import get_relative_position_index, window_partition
from torch import nn
from torch.utils import checkpoint

SHIFT_MASKS = ("official", "standard")


class GroupNorm32(nn.GroupNorm):
    """GroupNorm evaluated in float32 and cast back (the official ``normalization``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def _norm_tokens(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A GroupNorm over (C, H, W) applied to (B, H, W, C) tokens (a channels-last NCHW view, no copy)."""
    return norm(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution on (..., C) tokens as a matrix product with the convolution's own weights."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


# --------------------------------------------------------------------------------------------
# masks
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


def _to_windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, ws*ws, C), windows row-major, tokens row-major inside a window."""
    b, h, w, c = x.shape
    return x.view(b, h // ws, ws, w // ws, ws, c).transpose(2, 3).reshape(b, -1, ws * ws, c)


def _from_windows(x: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    b, c = x.shape[0], x.shape[-1]
    return x.view(b, h // ws, w // ws, ws, ws, c).transpose(2, 3).reshape(b, h, w, c)


# --------------------------------------------------------------------------------------------
# attention and blocks
# --------------------------------------------------------------------------------------------
class WindowAttention(nn.Module):
    """Window MHSA with relative position bias, on (B, nW, N, C) windows.

    Not timm's WindowAttention: timm keeps ``relative_position_index`` non-persistent (the official
    checkpoint stores it).  ``forward`` takes the additive mask from ``attention_mask`` (bias + shift mask).
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
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self._cache: dict = {}

    def relative_position_bias(self) -> torch.Tensor:
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)  # heads, N, N

    def attention_mask(self, shift_mask: torch.Tensor | None, size: tuple, dtype: torch.dtype) -> torch.Tensor:
        """(nW or 1) * heads, N, N: relative position bias + shift mask, in ``dtype``.

        Without gradients it is cached: the key holds the bias table's version counter, so loading or
        training new weights recomputes it.
        """
        table = self.relative_position_bias_table
        if (torch.is_grad_enabled() and table.requires_grad) or torch.compiler.is_compiling():
            return self._combine(shift_mask, dtype)  # compiled: traced into the graph, no Python-side cache
        key = (size, dtype, table.device, table.data_ptr(), table._version)
        if key not in self._cache:
            self._cache = {key: self._combine(shift_mask, dtype)}  # one entry: a layer sees one map size
        return self._cache[key]

    def _combine(self, shift_mask, dtype):
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias()[None]  # 1, heads, N, N
        if shift_mask is not None:
            bias = bias + shift_mask.to(bias.device)[:, None]  # nW, heads, N, N
        return bias.reshape(-1, n, n).to(dtype)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, nw, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).view(b, nw, n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5)
        # windows x heads as one axis, so the (nW * heads, N, N) mask broadcasts over the batch
        q, k, v = (t.reshape(b, nw * heads, n, c // heads) for t in qkv.unbind(0))
        if mask.shape[0] not in (1, nw * heads):  # bias alone (no shift) with several heads: one per window
            mask = mask.repeat(nw, 1, 1)
        mask = mask.to(q.dtype)[None]  # 4-D: the fused CPU kernel takes no 3-D mask
        if q.device.type == "cpu" and q.dtype == torch.bfloat16 and not self.training:
            # Measured on a CPU with AVX-512 BF16: for these short windows (64 tokens) the explicit product is
            # about twice as fast as the fused kernel in bfloat16 (and equal to it in float32).
            out = ((q * self.scale) @ k.transpose(-2, -1) + mask).softmax(dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale,
                                                 dropout_p=self.attn_drop if self.training else 0.0)
        out = out.view(b, nw, heads, n, c // heads).transpose(2, 3).reshape(b, nw, n, c)
        return self.proj_drop(self.proj(out))


class SwinTransformerBlock(nn.Module):
    """x + WindowAttn(GN(x)); x + MLP(GN(x)), on (B, H, W, C) tokens; optional cyclic shift."""

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
        self.norm1 = normalization(dim)
        self.attn = WindowAttention(dim, self.window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = normalization(dim)
        # timm's Mlp with use_conv=True keeps the official names and shapes (fc1/fc2 1x1 convs).
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop, use_conv=True)
        # Stored for state_dict compatibility: the official forward never reads it (its input_resolution list
        # never equals the (H, W) tuple) and recomputes the mask for the map it is given, as done here.
        mask = self.calculate_mask(self.input_resolution) if self.shift_size > 0 else None
        self.register_buffer("attn_mask", mask)
        self._masks: dict = {}

    def calculate_mask(self, x_size) -> torch.Tensor:
        return shifted_window_mask(x_size[0], x_size[1], self.window_size, self.shift_size, self.shift_mask)

    def _shift_mask(self, h: int, w: int) -> torch.Tensor | None:
        """The shift mask for an (h, w) map, computed once per size (it depends on nothing else)."""
        if self.shift_size == 0:  # with shift 0 the official mask is all zeros, i.e. no mask
            return None
        if torch.compiler.is_compiling():
            return self.calculate_mask((h, w))
        if (h, w) not in self._masks:
            self._masks[(h, w)] = self.calculate_mask((h, w))
        return self._masks[(h, w)]

    def mlp_tokens(self, x: torch.Tensor) -> torch.Tensor:
        mlp = self.mlp
        x = mlp.drop1(mlp.act(_pointwise(mlp.fc1, x)))
        return mlp.drop2(_pointwise(mlp.fc2, mlp.norm(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[1]), int(x.shape[2])  # ints even under torch.jit.trace (sizes are tensors there),
        # so that the mask caches hit and a traced graph holds the masks as constants (graphs.TracedNet)
        ws, s = self.window_size, self.shift_size
        y = _norm_tokens(self.norm1, x)
        if s > 0:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        mask = self.attn.attention_mask(self._shift_mask(h, w), (h, w), x.dtype)
        y = _from_windows(self.attn(_to_windows(y, ws), mask), ws, h, w)
        if s > 0:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp_tokens(_norm_tokens(self.norm2, x)))


class PatchEmbed(nn.Module):
    """Conv(patch_size) in_chans -> embed_dim, optional GroupNorm; NCHW in, (B, H, W, C) tokens out."""

    def __init__(self, in_chans, img_size=224, patch_size=4, embed_dim=96, patch_norm=False):
        super().__init__()
        img_size, patch_size = to_2tuple(img_size), to_2tuple(patch_size)
        self.patches_resolution = [img_size[0] // patch_size[0], img_size[1] // patch_size[1]]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = normalization(embed_dim) if patch_norm else nn.Identity()

    def forward(self, x):
        if self.proj.kernel_size == (1, 1):
            x = _pointwise(self.proj, x.permute(0, 2, 3, 1))
        else:
            x = self.proj(x).permute(0, 2, 3, 1)
        return _norm_tokens(self.norm, x)


class PatchUnEmbed(nn.Module):
    """1x1 conv embed_dim -> out_chans, optional GroupNorm; tokens in, NCHW (channels-last memory) out."""

    def __init__(self, out_chans, embed_dim=96, patch_norm=False):
        super().__init__()
        self.proj = nn.Conv2d(embed_dim, out_chans, kernel_size=1, stride=1)
        self.norm = normalization(out_chans) if patch_norm else nn.Identity()

    def forward(self, x):
        return self.norm(_pointwise(self.proj, x).permute(0, 3, 1, 2))


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

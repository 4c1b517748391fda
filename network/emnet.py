"""EMNet image enhancer: a Restormer-style encoder-decoder (SPEC §5).

The module tree, parameter names, their order and shapes match the reference implementation
(``../shared/compat/emnet_enhancer_dim32.keys.txt``), so its checkpoints load with ``strict=True``.
Restormer's extra ``decoder_latent`` block (one transformer block on the latent level, applied
after ``latent`` and before ``up4_3``) is part of that layout.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EMNet"]


class _LayerNormBody(nn.Module):
    """Layer norm over the last axis of a (..., C) tensor; ``with_bias=False`` is Restormer's BiasFree."""

    def __init__(self, dim: int, with_bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if with_bias else None

    def forward(self, x: Tensor) -> Tensor:
        var = x.var(-1, keepdim=True, unbiased=False)
        if self.bias is None:  # BiasFree: no mean subtraction
            return x / torch.sqrt(var + 1e-5) * self.weight
        mu = x.mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class LayerNorm(nn.Module):
    """Channel-wise LayerNorm of an (N, C, H, W) map (state-dict name ``<norm>.body.weight/bias``)."""

    def __init__(self, dim: int, layer_norm_type: str = "WithBias") -> None:
        super().__init__()
        if layer_norm_type not in ("WithBias", "BiasFree"):
            raise ValueError(f"layer_norm_type must be 'WithBias' or 'BiasFree', got {layer_norm_type!r}")
        self.body = _LayerNormBody(dim, with_bias=layer_norm_type == "WithBias")

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, H, W, C) -> normalise over C -> back; same arithmetic as Restormer's to_3d.
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class FeedForward(nn.Module):
    """GDFN: 1x1 to 2*hidden, 3x3 depthwise, GELU(x1)*x2, 1x1 back to C. (N,C,H,W) -> (N,C,H,W)."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class Attention(nn.Module):
    """MDTA: transposed (channel) self-attention per head. (N,C,H,W) -> (N,C,H,W)."""

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        # (N, heads*c', H, W) -> (N, heads, c', H*W)
        q, k, v = (t.reshape(n, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)  # (N, heads, c', c')
        out = (attn @ v).reshape(n, c, h, w)
        return self.project_out(out)


class TransformerBlock(nn.Module):
    """x + MDTA(LN(x)), then x + GDFN(LN(x)). (N,C,H,W) -> (N,C,H,W)."""

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool,
                 layer_norm_type: str) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, layer_norm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, layer_norm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3x3 conv embedding. (N,in_c,H,W) -> (N,embed_dim,H,W)."""

    def __init__(self, in_c: int = 3, embed_dim: int = 32, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, 3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """3x3 conv C -> C/2, PixelUnshuffle(2). (N,C,H,W) -> (N,2C,H/2,W/2)."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False),
                                  nn.PixelUnshuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """3x3 conv C -> 2C, PixelShuffle(2). (N,C,H,W) -> (N,C/2,2H,2W)."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False),
                                  nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class EMNet(nn.Module):
    """EMNet enhancer. (N, inp_channels, H, W) in [0,1], H and W multiples of 8 -> (N, out_channels, H, W).

    The output is ``output_conv(features) + input`` (global residual; needs out_channels == inp_channels).
    What callers need to know about it (inputs padded to multiples of 8; attention spans the whole image,
    so tiles cannot reproduce the whole-image result) is in its record in :mod:`network.registry`.
    """

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = 32,
                 num_blocks: Sequence[int] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: Sequence[int] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66,
                 bias: bool = False, layer_norm_type: str = "WithBias") -> None:
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError("num_blocks and heads must have 4 entries (three encoder levels + latent)")
        if out_channels != inp_channels:
            raise ValueError("the global residual needs out_channels == inp_channels")

        def level(channels: int, n: int, n_heads: int) -> nn.Sequential:
            return nn.Sequential(*[TransformerBlock(channels, n_heads, ffn_expansion_factor, bias,
                                                    layer_norm_type) for _ in range(n)])

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim, bias)
        self.encoder_level1 = level(dim, num_blocks[0], heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = level(dim * 2, num_blocks[1], heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = level(dim * 4, num_blocks[2], heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = level(dim * 8, num_blocks[3], heads[3])
        self.decoder_latent = level(dim * 8, 1, heads[3])

        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder_level3 = level(dim * 4, num_blocks[2], heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = level(dim * 2, num_blocks[1], heads[1])
        self.up2_1 = Upsample(dim * 2)  # level 1 keeps 2*dim channels, no 1x1 reduction
        self.decoder_level1 = level(dim * 2, num_blocks[0], heads[0])
        self.refinement = level(dim * 2, num_refinement_blocks, heads[0])
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    def forward(self, inp_img: Tensor) -> Tensor:
        if inp_img.dim() != 4:
            raise ValueError(f"EMNet expects an (N, C, H, W) tensor, got shape {tuple(inp_img.shape)}")
        h, w = inp_img.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(f"EMNet needs H and W to be multiples of 8, got {h}x{w}; "
                             "use lowlight_model.enhance(model, x) for other sizes")
        enc1 = self.encoder_level1(self.patch_embed(inp_img))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.decoder_latent(self.latent(self.down3_4(enc3)))

        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1))
        dec3 = self.decoder_level3(dec3)
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1))
        dec2 = self.decoder_level2(dec2)
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        dec1 = self.refinement(dec1)
        return self.output(dec1) + inp_img

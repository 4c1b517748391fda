"""Enhancers: SCL-LLE's curve-estimation network (DCE-Net) and the factory that also builds EMNet.

``enhance_net_nopool`` keeps the reference class name, state-dict keys (``e_conv{1..7}``) and forward
triple, so the official SCL-LLE and Zero-DCE checkpoints load unchanged (SPEC §1).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from utils.checkpoint import extract_state_dict, load_state, read_checkpoint
from utils.errors import UserError
from utils.image_io import unpack_8bit

# oneDNN's convolution with a fused activation (what torch.compile emits on CPU); absent without mkldnn
_HAS_FUSED_CONV = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class enhance_net_nopool(nn.Module):  # noqa: N801 (reference name)
    """DCE-Net: seven 3x3 convolutions predicting eight 3-channel curve maps (79,416 parameters).

    Input (N,3,H,W) in [0,1], any H, W. Returns ``(image after 4 curve steps, image after 8 steps,
    r)`` where ``r`` (N,24,H,W) concatenates the curve maps r1..r8 in [-1,1].

    Facts callers read (see :func:`enhance`): inputs of any size (``size_multiple = 1``); each output
    pixel depends on inputs at most ``receptive_radius = 7`` pixels away (seven 3x3 convolutions), so
    tiles with that much context give the whole-image result; ``bytes_per_pixel`` is the measured peak
    working memory of :meth:`final_image` per input pixel, by compute dtype.
    """

    size_multiple = 1
    receptive_radius = 7
    bytes_per_pixel = {torch.float32: 1200, torch.bfloat16: 600, torch.float16: 600}

    def __init__(self, number_f: int = 32) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.e_conv1 = nn.Conv2d(3, number_f, 3, 1, 1, bias=True)
        self.e_conv2 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv3 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv4 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv5 = nn.Conv2d(number_f * 2, number_f, 3, 1, 1, bias=True)
        self.e_conv6 = nn.Conv2d(number_f * 2, number_f, 3, 1, 1, bias=True)
        self.e_conv7 = nn.Conv2d(number_f * 2, 24, 3, 1, 1, bias=True)

    def curve_maps(self, x: torch.Tensor, conv: Callable[..., torch.Tensor] | None = None,
                   join: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        """The curve maps r (N,24,H,W) in [-1,1] of an input x (N,3,H,W) in [0,1].

        ``conv(layer, t, act)`` runs one convolution followed by ``act`` ("relu" or "tanh"); the default is
        the reference's ``relu(layer(t))`` / ``tanh(layer(t))``. ``join(layer, a, b, act)`` is the same on
        the channel concatenation of a and b (default: ``conv`` on ``torch.cat([a, b], 1)``).
        """
        conv = conv or self._conv
        join = join or (lambda layer, a, b, act="relu": conv(layer, torch.cat([a, b], 1), act))
        x1 = conv(self.e_conv1, x)
        x2 = conv(self.e_conv2, x1)
        x3 = conv(self.e_conv3, x2)
        x4 = conv(self.e_conv4, x3)
        x5 = join(self.e_conv5, x3, x4)
        del x3, x4  # without gradients each feature map is freed as soon as it is last read
        x6 = join(self.e_conv6, x2, x5)
        del x2, x5
        return join(self.e_conv7, x1, x6, "tanh")

    def _conv(self, layer: nn.Conv2d, t: torch.Tensor, act: str = "relu") -> torch.Tensor:
        return self.relu(layer(t)) if act == "relu" else torch.tanh(layer(t))

    def _fused_curve_maps(self, x: torch.Tensor, split: bool = True) -> torch.Tensor | None:
        """:meth:`curve_maps` with each ReLU/tanh fused into its convolution (oneDNN post-ops, the kernels
        ``torch.compile`` uses on CPU). With ``split``, ``e_conv5``/``e_conv6`` run as two convolutions on
        the halves of their concatenated input, the second adding into the first's output in place (oneDNN's
        sum post-op), so those 64-channel inputs are never written; ``e_conv7`` keeps its concatenation,
        because oneDNN fuses no tanh after a sum, and runs with its 24 outputs padded by zero filters to 32,
        which its kernels handle faster (``benchmarks/bench_enhancer.py``).
        The same sums in another order (within 1e-6; ``split=False`` keeps every concatenation and the 24
        outputs, for comparison). None where the fused kernels do not apply (not a CPU tensor, or a dtype
        other than float32/bfloat16)."""
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if x.device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16) or not _HAS_FUSED_CONV:
            return None
        geometry = ([1, 1], [1, 1], [1, 1], 1)

        def fused(c: nn.Conv2d, t: torch.Tensor, act: str = "relu", pad: int = 0) -> torch.Tensor:
            w, b = c.weight, c.bias
            if pad:  # zero filters: extra output channels, cut off below
                w, b = nn.functional.pad(w, (0, 0, 0, 0, 0, 0, 0, pad)), nn.functional.pad(b, (0, pad))
            y = torch.ops.mkldnn._convolution_pointwise(t.to(dtype), w.to(dtype), b.to(dtype), *geometry, act, [], "")
            return y[:, :c.out_channels] if pad else y

        def join(c: nn.Conv2d, a: torch.Tensor, b: torch.Tensor, act: str = "relu") -> torch.Tensor:
            if act != "relu":
                return fused(c, torch.cat([a, b], 1), act, pad=-c.out_channels % 32)
            k = a.shape[1]
            wa, wb = (c.weight[:, s].to(dtype).contiguous() for s in (slice(0, k), slice(k, None)))
            y = torch.ops.mkldnn._convolution_pointwise(a, wa, None, *geometry, "none", [], "")
            y = torch.ops.mkldnn._convolution_pointwise_.binary(y, b, wb, c.bias.to(dtype), *geometry, "add",
                                                                1.0, None, [], "")
            return y.relu_()  # not fused: the sum post-op's ReLU fails on bfloat16 NCHW tensors

        return self.curve_maps(x, fused, join if split else None)

    def final_image(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)[1]`` (N,3,H,W) with the same float operations, for inference.

        On the CPU the convolutions run with their activations fused (:meth:`_fused_curve_maps`). The
        eight curve steps run in place on an (N,H,W,3) copy of x, reading r in its channels-last layout
        without copies; the curves are applied in float32 whatever the convolutions' dtype.
        With gradients enabled this is plain ``forward(x)[1]``.
        """
        if torch.is_grad_enabled():
            return self(x)[1]
        r = self._fused_curve_maps(x)
        r = self.curve_maps(x) if r is None else r
        n, _, h, w = x.shape
        rs = r.permute(0, 2, 3, 1).float().reshape(n, h, w, 8, 3)
        y = x.permute(0, 2, 3, 1).float().contiguous()
        for i in range(8):
            y = y.mul(y).sub_(y).mul_(rs[..., i, :]).add_(y)  # = y + r_i·(y² − y), same rounding
        return y.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = self.curve_maps(x)
        curves = torch.split(r, 3, dim=1)
        for i, r_i in enumerate(curves):
            x = x + r_i * (x * x - x)  # LE(x) = x + r·(x² − x)
            if i == 3:
                enhance_image_1 = x
        return enhance_image_1, x, r


def weights_init(m: nn.Module) -> None:
    """The reference initialisation: conv weights ~ N(0, 0.02), BatchNorm weight ~ N(1, 0.02), bias 0."""
    name = type(m).__name__
    if name.find("Conv") != -1:
        m.weight.data.normal_(0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)


def _build_dce(embed_dim: int = 32) -> nn.Module:
    return enhance_net_nopool()


def _build_emnet(embed_dim: int = 32) -> nn.Module:
    from network.emnet import EMNet

    return EMNet(dim=embed_dim)


# The enhancer registry: add an entry to plug in another enhancer everywhere (--arch choices follow).
ENHANCERS: dict[str, Callable[..., nn.Module]] = {"dce": _build_dce, "emnet": _build_emnet}


def size_multiple(arch: str) -> int:
    """``size_multiple`` of the enhancer class named ``arch``, for checks made before a model exists."""
    if arch == "emnet":
        from network.emnet import EMNet

        return EMNet.size_multiple
    return enhance_net_nopool.size_multiple


def check_crop(arch: str, size: int, flag: str) -> None:
    """Training crops must be multiples of what the architecture needs (no padding while training)."""
    m = size_multiple(arch)
    if size % m:
        raise UserError(f"{flag} {size} is not a multiple of {m}, which the {arch} enhancer needs; "
                        f"use {size - size % m or m}")


def build_enhancer(arch: str = "dce", embed_dim: int = 32) -> nn.Module:
    """Build the enhancer named ``arch`` (see ``ENHANCERS``) of width ``embed_dim`` (EMNet; > 0)."""
    if arch not in ENHANCERS:
        raise UserError(f"unknown enhancer {arch!r}; choose one of {', '.join(sorted(ENHANCERS))}")
    if embed_dim <= 0:
        raise UserError(f"enhancer width {embed_dim} must be a positive integer (EMNet: 32)")
    return ENHANCERS[arch](embed_dim=embed_dim)


def infer_arch(state: dict[str, torch.Tensor]) -> tuple[str, int] | None:
    """``(arch, embed_dim)`` recognised from a state dict's keys, or None."""
    if "e_conv1.weight" in state:
        return "dce", 32
    if "patch_embed.proj.weight" in state:
        return "emnet", int(state["patch_embed.proj.weight"].shape[0])
    return None


def load_enhancer(arch: str, weights: str, device: torch.device, embed_dim: int = 32) -> nn.Module:
    """Build ``arch`` (``"auto"``: recognised from the checkpoint), load ``weights`` (any accepted
    checkpoint layout) on ``device``, eval mode. The result has an ``arch`` attribute."""
    state = extract_state_dict(read_checkpoint(weights, map_location=device), weights)
    if arch == "auto":
        found = infer_arch(state)
        if found is None:
            raise UnknownEnhancer(f"{weights}: not a checkpoint of a known enhancer ({', '.join(sorted(ENHANCERS))})"
                                  f"; name its architecture")
        arch, embed_dim = found
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UserError(f"{weights}: {len(bad)} tensor(s) hold NaN/Inf (first: {bad[0]}); the run that wrote it "
                        f"diverged: use an earlier checkpoint")
    model = load_state(build_enhancer(arch, embed_dim), state, weights)
    model.arch = arch
    return model.to(device).eval()


class UnknownEnhancer(UserError):
    """The architecture of a checkpoint could not be recognised (the caller names its flag)."""


def pad_to_multiple(x: torch.Tensor, m: int = 8) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N,C,h,w) at the bottom/right up to multiples of ``m``; returns (padded, (h, w)).

    Reflect padding as in Restormer's test script; an axis shorter than or equal to its pad
    (where reflect is impossible) is padded with replicate instead.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % m, (-w) % m
    if pad_h:
        x = nn.functional.pad(x, (0, 0, 0, pad_h), mode="reflect" if pad_h < h else "replicate")
    if pad_w:
        x = nn.functional.pad(x, (0, pad_w, 0, 0), mode="reflect" if pad_w < w else "replicate")
    return x, (h, w)


def enhance(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The enhanced image (N,3,H,W) of any enhancer: DCE-Net's final image or EMNet's output.

    The input is reflect-padded to a multiple of the model's ``size_multiple`` (EMNet: 8) and the
    result cropped back. A model with a ``final_image`` method (DCE-Net) uses it. A uint8 x (8-bit values)
    is taken as ``x / 255`` in float32, so that :func:`enhance_tiled` converts one window at a time.
    """
    x = unpack_8bit(x)
    base = model.module if hasattr(model, "module") else model  # DDP/DataParallel keep the model inside
    x, (h, w) = pad_to_multiple(x, getattr(base, "size_multiple", 1))
    final = getattr(model, "final_image", None)
    out = final(x) if final is not None else model(x)
    if isinstance(out, (tuple, list)):
        out = out[1]
    return out[..., :h, :w]


def _even_tile(side: int, tile: int) -> int:
    """The size of the fewest equal tiles of at most ``tile`` pixels that cover ``side``."""
    parts = math.ceil(side / tile)
    return math.ceil(side / parts)


def enhance_tiled(model: nn.Module, x: torch.Tensor, tile: int, overlap: int = 8) -> torch.Tensor:
    """:func:`enhance` in equal pieces of at most ``tile`` x ``tile`` with ``overlap`` pixels of context on each side.

    Bounds memory on large images. For a purely convolutional enhancer whose receptive-field radius is
    at most ``overlap`` (DCE-Net: 7) the stitched result equals the whole-image result up to float
    rounding (a few 1e-6; at most one 8-bit level); x (N,3,H,W).
    """
    h, w = x.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return enhance(model, x)
    # Each side is split into equal tiles of at most ``tile`` pixels, and every window has the same shape
    # (the tile plus ``overlap`` on both sides, or the image side): an edge window is moved inwards rather
    # than cut. The allocator then reuses one set of buffers instead of fragmenting the heap with windows
    # of several shapes, and hardly any pixel is computed twice.
    th, tw = _even_tile(h, tile), _even_tile(w, tile)
    wh, ww = min(h, th + 2 * overlap), min(w, tw + 2 * overlap)
    out = None
    for top in range(0, h, th):
        for left in range(0, w, tw):
            t0, l0 = min(max(0, top - overlap), h - wh), min(max(0, left - overlap), w - ww)
            y = enhance(model, x[..., t0:t0 + wh, l0:l0 + ww])
            if out is None:
                out = y.new_empty(*y.shape[:-2], h, w)
            out[..., top:top + th, left:left + tw] = y[..., top - t0:top - t0 + th, left - l0:left - l0 + tw]
    return out

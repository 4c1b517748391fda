"""Enhancers: SCL-LLE's curve-estimation network (DCE-Net) and the factory that also builds EMNet.

``enhance_net_nopool`` keeps the reference class name, state-dict keys (``e_conv{1..7}``) and forward
triple, so the official SCL-LLE and Zero-DCE checkpoints load unchanged (SPEC §1).
"""
from __future__ import annotations

import math
import torch
from torch import nn

from utils.checkpoint import extract_state_dict, load_state, read_checkpoint
from utils.errors import UserError
from utils.image_io import unpack_8bit

from network.dce import enhance_net_nopool, weights_init  # noqa: F401 (the reference's names, re-exported)
from network.registry import ARCH_NAMES, ArchSpec, get_spec, spec_from_state

#: The ``--arch`` names (kept for callers of the old registry).
ENHANCERS = ARCH_NAMES


def size_multiple(arch: str) -> int:
    """``size_multiple`` of the architecture ``arch`` (see :mod:`network.registry`)."""
    return get_spec(arch).size_multiple


def check_crop(arch: str, size: int, flag: str) -> None:
    """Training crops must be multiples of what the architecture needs (no padding while training)."""
    get_spec(arch).check_crop(size, flag)


def build_enhancer(arch: str = "dce", embed_dim: int | None = None) -> nn.Module:
    """Build the enhancer named ``arch`` of width ``embed_dim`` (default: the architecture's own)."""
    return get_spec(arch).build(embed_dim)


def infer_arch(state: dict[str, torch.Tensor]) -> tuple[str, int] | None:
    """``(arch, width)`` recognised from a state dict's keys, or None."""
    found = spec_from_state(state)
    return None if found is None else (found[0].name, found[1])


def load_enhancer(arch: str, weights: str, device: torch.device, embed_dim: int | None = None) -> nn.Module:
    """Build ``arch`` (``"auto"``: recognised from the checkpoint), load ``weights`` (any accepted
    checkpoint layout) on ``device``, eval mode. The result has an ``arch`` attribute."""
    state = extract_state_dict(read_checkpoint(weights, map_location=device), weights)
    if arch == "auto":
        found = infer_arch(state)
        if found is None:
            raise UnknownEnhancer(f"{weights}: not a checkpoint of a known enhancer ({', '.join(ARCH_NAMES)})"
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
    from network.registry import spec_of

    x, (h, w) = pad_to_multiple(x, spec_of(model).size_multiple)
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

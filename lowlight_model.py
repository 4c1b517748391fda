"""The reference's module name for the enhancer: ``from lowlight_model import enhance_net_nopool`` keeps working.

SCL-LLE's ``lowlight_model.py`` defines DCE-Net; here the architectures live under :mod:`network`
(:mod:`network.dce`, :mod:`network.emnet`, their facts in :mod:`network.registry`) and the enhance path in
:mod:`network.enhancer`. This module re-exports what users of the reference and of this project import, and
keeps the two function forms of the enhance path:

    model = load_enhancer("auto", "checkpoints/LLE_model.pth")   # an Enhancer, eval mode
    y = model(x)                                                # = enhance(model, x): padded, cropped
    y = model.enhance(x, tile=512)                              # = enhance_tiled(model, x, 512)
"""
from __future__ import annotations

import torch
from torch import nn

from network.dce import enhance_net_nopool, weights_init  # noqa: F401 (the reference's names)
from network.enhancer import (TILE_OVERLAP, Enhancer, UnknownEnhancer, as_enhancer, build_enhancer,  # noqa: F401
                              load_enhancer, pad_to_multiple)
from utils.denoise import denoise_tensor


def enhance(model: nn.Module, x: torch.Tensor, denoise: float = 0.0, strength: float = 1.0,
            exposure: float | None = None, curve_scale: float = 1.0,
            highlight_guard: float | None = None) -> torch.Tensor:
    """The enhanced image (N,3,H,W) of any enhancer network, Enhancer or DDP wrapper: see :class:`Enhancer`.

    ``strength`` / ``exposure`` scale DCE-Net's curve maps (:meth:`Enhancer.set_curve_control`, for this call
    only; ``highlight_guard`` in percentage points as ``--highlight_guard``); ``curve_scale`` S > 1 estimates them
    on the image downscaled by S (:mod:`network.curve_scale`);
    ``denoise`` > 0 removes the noise the curves amplified (:func:`utils.denoise.denoise_tensor`; the
    result is then the 8-bit image as floats in [0, 1]). The defaults give the enhancer's output, bit for bit."""
    e = as_enhancer(model)
    if strength != 1.0 or exposure is not None or curve_scale != 1.0 or highlight_guard is not None:
        e = Enhancer(e.net, e.spec).set_curve_control(strength, exposure, curve_scale, highlight_guard)
    y = e(x)
    return denoise_tensor(y.clamp(0, 1), denoise) if denoise else y


def enhance_tiled(model: nn.Module, x: torch.Tensor, tile: int, overlap: int = TILE_OVERLAP) -> torch.Tensor:
    """:meth:`Enhancer.enhance` in tiles of at most ``tile`` pixels of any enhancer network."""
    return as_enhancer(model).enhance(x, tile, overlap)


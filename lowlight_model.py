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


def enhance(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The enhanced image (N,3,H,W) of any enhancer network, Enhancer or DDP wrapper: see :class:`Enhancer`."""
    return as_enhancer(model)(x)


def enhance_tiled(model: nn.Module, x: torch.Tensor, tile: int, overlap: int = TILE_OVERLAP) -> torch.Tensor:
    """:meth:`Enhancer.enhance` in tiles of at most ``tile`` pixels of any enhancer network."""
    return as_enhancer(model).enhance(x, tile, overlap)


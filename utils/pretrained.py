"""ImageNet backbones through torchvision's weights API, never downloaded.

torchvision looks for ``$TORCH_HOME/hub/checkpoints/<file>`` and loads a file found there without a
download or hash check. No machine of this project can download, so we check for the file first and
stop with a message that names it and the folder it belongs in.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn

from utils.errors import UserError


def weights_path(weights) -> str:
    """Path where torchvision expects the file of a ``*_Weights`` enum member."""
    filename = os.path.basename(weights.url)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def require_weights(weights) -> str:
    """Return the cached file of ``weights`` or raise a :class:`UserError` naming file and folder."""
    path = weights_path(weights)
    if not os.path.isfile(path):
        folder = os.path.dirname(path)
        raise UserError(
            f"pretrained weights {os.path.basename(path)} ({weights}) not found: put the file in {folder}/ "
            f"(set TORCH_HOME to use another cache folder)"
        )
    return path


def load_pretrained(builder: Callable[..., nn.Module], weights, **kwargs) -> nn.Module:
    """Build ``builder(weights=weights, **kwargs)`` after checking the weights file is cached.

    Example: ``load_pretrained(torchvision.models.vgg16, VGG16_Weights.IMAGENET1K_V1)``.
    A corrupt or wrong file becomes a one-line :class:`UserError` as well.
    """
    path = require_weights(weights)
    try:
        return builder(weights=weights, **kwargs)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load pretrained weights {path}: {first}; replace the file") from e

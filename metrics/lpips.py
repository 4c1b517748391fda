"""LPIPS (AlexNet, v0.1; SPEC §5, §7): the frozen network and the distance, for evaluation and as a loss.

The ``lpips`` package provides the network; its ImageNet trunk comes from the torch cache through
:func:`utils.pretrained.load_pretrained` (never downloaded), the linear calibration layers from the
package's own ``weights/v0.1/alex.pth``.
"""
from __future__ import annotations

import os
import warnings
from typing import Union

import torch
import torchvision
from torch import nn

from utils.pretrained import load_pretrained, weights_path

ALEXNET_WEIGHTS = torchvision.models.AlexNet_Weights.IMAGENET1K_V1


def lpips_available() -> bool:
    """Whether the AlexNet ImageNet file (``alexnet-owt-7be5be79.pth``) is in the torch cache."""
    return os.path.isfile(weights_path(ALEXNET_WEIGHTS))


def _frozen_lpips_class():
    import lpips

    class FrozenLPIPS(lpips.LPIPS):
        """lpips.LPIPS that stays in eval mode (no dropout in the linear layers) whatever its parent does."""

        def train(self, mode: bool = True) -> "FrozenLPIPS":
            return super().train(False)

    return FrozenLPIPS


def _copy_alexnet_features(model: nn.Module, features: nn.Sequential) -> None:
    """Copy torchvision AlexNet ``features`` into the lpips trunk's slices.

    The lpips trunk holds ``features[0:12]`` split into ``slice1..slice5`` under their original indices
    (``net.slice2.3`` is ``features.3``); every parameterised layer of ``features`` must be covered.
    """
    trunk = model.net
    covered = set()
    for s in range(1, trunk.N_slices + 1):
        for name, layer in getattr(trunk, f"slice{s}").named_children():
            src = features[int(name)]
            if type(src) is not type(layer):
                raise RuntimeError(f"lpips slice{s}.{name} is {type(layer).__name__}, AlexNet features.{name} "
                                   f"is {type(src).__name__}: unexpected lpips layout")
            layer.load_state_dict(src.state_dict(), strict=True)
            covered.add(int(name))
    needed = {i for i, m in enumerate(features) if any(True for _ in m.parameters())}
    if not needed <= covered:
        raise RuntimeError(f"lpips trunk does not cover AlexNet feature layers {sorted(needed - covered)}")
    if not torch.equal(trunk.slice1[0].weight, features[0].weight):
        raise RuntimeError("AlexNet weights were not copied into the lpips trunk")


def build_lpips(device: Union[str, torch.device] = "cpu", pretrained: bool = True) -> nn.Module:
    """LPIPS (AlexNet, v0.1), frozen, eval mode, on ``device``.

    ``pretrained=True`` loads the AlexNet ImageNet trunk from the torch cache (UserError naming
    ``alexnet-owt-7be5be79.pth`` and its folder when missing); ``pretrained=False`` keeps a random trunk
    (tests only). The calibrated linear layers always come from the lpips package's shipped file.
    """
    features = None
    if pretrained:  # check the file before building anything
        features = load_pretrained(torchvision.models.alexnet, ALEXNET_WEIGHTS).features
    with warnings.catch_warnings():
        # lpips builds its random trunk with torchvision's deprecated ``alexnet(pretrained=False)``:
        # nothing is downloaded, only deprecation warnings are raised; silence those.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.models")
        model = _frozen_lpips_class()(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if features is not None:
        _copy_alexnet_features(model, features)
    for prm in model.parameters():
        prm.requires_grad_(False)
    return model.eval().to(device)


def lpips_distance(model: nn.Module, a: torch.Tensor, b: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """LPIPS distance of images in [0, 1]: (N, 3, H, W) (or (3, H, W)) each → (N,) tensor.

    ``normalize=True``: inputs are mapped to [−1, 1] first, the range LPIPS expects (evaluation).
    ``normalize=False``: the [0, 1] images go in as they are — what EMNet's training loss does (SPEC §5).
    Gradients flow to the inputs (use it as a loss); wrap in ``torch.no_grad()`` for evaluation.
    """
    if a.dim() == 3:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    return model(a, b, normalize=normalize).reshape(a.shape[0])

"""Small helpers shared by the DeepLab models (layout of the public VainF/DeepLabV3Plus-Pytorch port)."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class IntermediateLayerGetter(nn.ModuleDict):
    """Keep the children of ``model`` up to the last one named in ``return_layers``; return their outputs.

    Same behaviour and state-dict layout as ``torchvision.models._utils.IntermediateLayerGetter``
    (which the public port uses): children are run in registration order, ``None`` children are
    skipped, children after the last requested one are dropped (e.g. ResNet's ``avgpool``/``fc``).
    ``forward(x)`` returns ``{return_layers[name]: output of child name}``.
    """

    def __init__(self, model: nn.Module, return_layers: dict[str, str]) -> None:
        names = [name for name, _ in model.named_children()]
        if not set(return_layers).issubset(names):
            raise ValueError(f"return_layers {sorted(return_layers)} are not all children of the model {names}")
        wanted = dict(return_layers)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for name, module in model.named_children():
            layers[name] = module
            wanted.pop(name, None)
            if not wanted:
                break
        super().__init__(layers)
        self.return_layers = dict(return_layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out

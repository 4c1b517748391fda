"""ResNet-50/101 backbones: torchvision's ResNet with strides replaced by dilation.

The public DeepLab port ships a verbatim copy of torchvision's ResNet; using torchvision's own gives the
same modules, numerics and state-dict keys (``conv1``, ``bn1``, ``layer1``..``layer4``; the DeepLab
wrapper drops ``avgpool``/``fc``).
"""
from __future__ import annotations

from typing import Sequence

import torchvision
from torchvision.models import ResNet, ResNet50_Weights, ResNet101_Weights

from utils.pretrained import load_pretrained


def _resnet(builder, weights, pretrained: bool, replace_stride_with_dilation: Sequence[bool]) -> ResNet:
    rswd = list(replace_stride_with_dilation)
    if pretrained:
        return load_pretrained(builder, weights, replace_stride_with_dilation=rswd)
    return builder(weights=None, replace_stride_with_dilation=rswd)


def resnet50(pretrained: bool = False, replace_stride_with_dilation: Sequence[bool] = (False, False, False)) -> ResNet:
    """torchvision ResNet-50; ``pretrained`` loads ``ResNet50_Weights.IMAGENET1K_V1`` from the local cache only.

    forward of layer4: (N, 3, H, W) -> (N, 2048, H/os, W/os); layer1 gives (N, 256, H/4, W/4).
    """
    return _resnet(torchvision.models.resnet50, ResNet50_Weights.IMAGENET1K_V1, pretrained,
                   replace_stride_with_dilation)


def resnet101(pretrained: bool = False, replace_stride_with_dilation: Sequence[bool] = (False, False, False)) -> ResNet:
    """torchvision ResNet-101; ``pretrained`` loads ``ResNet101_Weights.IMAGENET1K_V1`` from the local cache only."""
    return _resnet(torchvision.models.resnet101, ResNet101_Weights.IMAGENET1K_V1, pretrained,
                   replace_stride_with_dilation)

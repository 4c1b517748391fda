"""DeepLabV3 / DeepLabV3+ heads, ASPP and the model wrapper (layout of VainF/DeepLabV3Plus-Pytorch).

State-dict keys: ``backbone.*`` (see ``network.backbone``) and ``classifier.*``:
V3+ head: ``classifier.project``, ``classifier.aspp.{convs,project}``, ``classifier.classifier``;
V3 head: ``classifier.classifier.0`` (ASPP), ``classifier.classifier.{1,2,4}``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DeepLabV3(nn.Module):
    """``backbone`` (returns a dict of features) + ``classifier`` (head), logits upsampled to the input.

    forward: (N, 3, H, W) ImageNet-normalised image -> (N, num_classes, H, W) logits.
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_shape = x.shape[-2:]
        features = self.backbone(x)
        x = self.classifier(features)
        return F.interpolate(x, size=input_shape, mode="bilinear", align_corners=False)


def _init_head(module: nn.Module) -> None:
    """The port's head init: Kaiming-normal convs, BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class ASPPConv(nn.Sequential):
    """3x3 conv (padding = dilation = rate) + BN + ReLU: (N, C_in, h, w) -> (N, C_out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ASPPPooling(nn.Sequential):
    """Global average -> 1x1 conv -> BN -> ReLU -> bilinear back: (N, C_in, h, w) -> (N, C_out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = super().forward(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3, pooling branch (256 ch each), concat, 1x1.

    (N, C_in, h, w) -> (N, 256, h, w); Dropout(0.1) at the end (inactive in eval mode).
    """

    def __init__(self, in_channels: int, atrous_rates: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        rate1, rate2, rate3 = tuple(atrous_rates)
        self.convs = nn.ModuleList([
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                          nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)),
            ASPPConv(in_channels, out_channels, rate1),
            ASPPConv(in_channels, out_channels, rate2),
            ASPPConv(in_channels, out_channels, rate3),
            ASPPPooling(in_channels, out_channels),
        ])
        self.project = nn.Sequential(
            nn.Conv2d(5 * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHeadV3Plus(nn.Module):
    """V3+ decoder. Input dict: ``out`` (N, C_in, H/os, W/os), ``low_level`` (N, C_low, H/4, W/4).

    Output: (N, num_classes, H/4, W/4) logits (the wrapper upsamples to the input size).
    """

    def __init__(self, in_channels: int, low_level_channels: int, num_classes: int,
                 aspp_dilate: Sequence[int] = (12, 24, 36)) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Conv2d(low_level_channels, 48, 1, bias=False),
            nn.BatchNorm2d(48),
            nn.ReLU(inplace=True),
        )
        self.aspp = ASPP(in_channels, aspp_dilate)
        self.classifier = nn.Sequential(
            nn.Conv2d(304, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1),
        )
        _init_head(self)

    def forward(self, feature: dict[str, torch.Tensor]) -> torch.Tensor:
        low_level = self.project(feature["low_level"])
        out = self.aspp(feature["out"])
        out = F.interpolate(out, size=low_level.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([low_level, out], dim=1))


class DeepLabHead(nn.Module):
    """V3 head: ASPP -> 3x3 conv 256 + BN + ReLU -> 1x1 conv to classes.

    Input dict ``out`` (N, C_in, H/os, W/os) -> (N, num_classes, H/os, W/os) logits.
    """

    def __init__(self, in_channels: int, num_classes: int, aspp_dilate: Sequence[int] = (12, 24, 36)) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            ASPP(in_channels, aspp_dilate),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1),
        )
        _init_head(self)

    def forward(self, feature: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(feature["out"])

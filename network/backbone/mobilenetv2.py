"""MobileNetV2 with dilation, exactly as the public DeepLab port builds it (SPEC §4).

Differences from torchvision's MobileNetV2 (same parameter shapes, different numerics):
every conv has padding 0; each inverted-residual block zero-pads its *input* ("fixed padding",
(p, k_eff-1-p) per side) before the first 1x1 conv; the stem is not padded at all; beyond the
output stride, strides become dilations.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from utils.errors import UserError
from utils.pretrained import load_pretrained

# (expand ratio t, channels c, repeats n, stride s)
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]


def _make_divisible(v: float, divisor: int, min_value: Optional[int] = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` without going below 90 % of ``v``."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU(nn.Sequential):
    """Conv2d (padding 0, no bias) + BN + ReLU6: (N, C_in, h, w) -> (N, C_out, h', w')."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, 0, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )


def fixed_padding(kernel_size: int, dilation: int) -> tuple[int, int, int, int]:
    """``F.pad`` amounts (left, right, top, bottom) that keep a dilated ``kernel_size`` conv 'same'."""
    k_eff = kernel_size + (kernel_size - 1) * (dilation - 1)
    pad_total = k_eff - 1
    pad_beg = pad_total // 2
    return (pad_beg, pad_total - pad_beg, pad_beg, pad_total - pad_beg)


class InvertedResidual(nn.Module):
    """[1x1 expand] -> 3x3 depthwise (stride, dilation) -> 1x1 linear; residual if stride 1 and inp == oup.

    (N, inp, h, w) -> (N, oup, ceil(h/stride), ceil(w/stride)); the input is padded before the first conv.
    """

    def __init__(self, inp: int, oup: int, stride: int, dilation: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden_dim, kernel_size=1))
        layers.extend([
            ConvBNReLU(hidden_dim, hidden_dim, stride=stride, dilation=dilation, groups=hidden_dim),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ])
        self.conv = nn.Sequential(*layers)
        self.input_padding = fixed_padding(3, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_pad = F.pad(x, self.input_padding)
        if self.use_res_connect:
            return x + self.conv(x_pad)
        return self.conv(x_pad)


class MobileNetV2(nn.Module):
    """The port's MobileNetV2 feature extractor; ``features`` = [stem, 17 blocks, 1x1 ConvBNReLU 320->1280].

    The ImageNet classifier of the original is not built (the DeepLab port discards it).
    forward: (N, 3, H, W) -> (N, 1280, ~H/os, ~W/os).
    """

    def __init__(self, output_stride: int = 8, width_mult: float = 1.0, round_nearest: int = 8) -> None:
        super().__init__()
        self.output_stride = output_stride
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvBNReLU(3, input_channel, stride=2)]
        current_stride = 2
        dilation = 1
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            previous_dilation = dilation
            if current_stride == output_stride:
                stride = 1
                dilation *= s
            else:
                stride = s
                current_stride *= s
            output_channel = int(c * width_mult)  # the port overrides the _make_divisible value like this
            for i in range(n):
                if i == 0:
                    features.append(InvertedResidual(input_channel, output_channel, stride, previous_dilation, t))
                else:
                    features.append(InvertedResidual(input_channel, output_channel, 1, dilation, t))
                input_channel = output_channel
        features.append(ConvBNReLU(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def copy_by_order(target: nn.Module, source: dict[str, torch.Tensor], what: str) -> None:
    """Copy the tensors of ``source`` into ``target``'s state dict position by position (shapes must agree)."""
    dst = target.state_dict()
    if len(dst) != len(source):
        raise UserError(f"{what}: {len(source)} tensors, expected {len(dst)}; replace the weights file")
    new_state = {}
    for (dk, dv), (sk, sv) in zip(dst.items(), source.items()):
        if dv.shape != sv.shape:
            raise UserError(f"{what}: {sk} has shape {tuple(sv.shape)}, expected {tuple(dv.shape)} for {dk}; "
                            f"replace the weights file")
        new_state[dk] = sv
    target.load_state_dict(new_state, strict=True)


def mobilenet_v2(output_stride: int = 8, pretrained: bool = False) -> MobileNetV2:
    """The port's MobileNetV2; ``pretrained`` copies torchvision's ImageNet ``features`` (by order).

    The ImageNet file (``mobilenet_v2-b0353104.pth``) must already be in $TORCH_HOME/hub/checkpoints,
    else a :class:`UserError` names it.
    """
    model = MobileNetV2(output_stride=output_stride)
    if pretrained:
        weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
        reference = load_pretrained(torchvision.models.mobilenet_v2, weights)
        copy_by_order(model.features, reference.features.state_dict(), f"ImageNet MobileNetV2 ({weights})")
    return model

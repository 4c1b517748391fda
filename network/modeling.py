"""Factories of the DeepLab family (layout and numerics of VainF/DeepLabV3Plus-Pytorch).

Every factory has the signature ``(num_classes=19, output_stride=16, pretrained_backbone=False)`` and
returns a :class:`network._deeplab.DeepLabV3` whose state dict matches the public port's checkpoints
(e.g. ``best_deeplabv3plus_mobilenet_cityscapes_os16.pth``, loaded with
:func:`utils.checkpoint.load_weights`). ``pretrained_backbone=True`` reads ImageNet weights from
$TORCH_HOME/hub/checkpoints only (never downloads) and fails with a :class:`UserError` naming the file.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from torch import nn

from network._deeplab import DeepLabHead, DeepLabHeadV3Plus, DeepLabV3
from network.backbone import mobilenetv2, resnet
from network.utils import IntermediateLayerGetter
from utils.errors import UserError

OUTPUT_STRIDES = (8, 16)


def _aspp_dilate(output_stride: int) -> tuple[int, int, int]:
    if output_stride not in OUTPUT_STRIDES:
        raise UserError(f"output stride {output_stride} is not supported: use --output_stride 8 or 16")
    return (12, 24, 36) if output_stride == 8 else (6, 12, 18)


def _segm_resnet(name: str, resnet_builder: Callable, num_classes: int, output_stride: int,
                 pretrained_backbone: bool) -> DeepLabV3:
    """ResNet backbone: dilation in layer4 (os 16) or layer3+layer4 (os 8); low level = layer1 (256 ch)."""
    aspp_dilate = _aspp_dilate(output_stride)
    rswd = [False, True, True] if output_stride == 8 else [False, False, True]
    net = resnet_builder(pretrained=pretrained_backbone, replace_stride_with_dilation=rswd)
    if name == "deeplabv3plus":
        return_layers = {"layer4": "out", "layer1": "low_level"}
        classifier: nn.Module = DeepLabHeadV3Plus(2048, 256, num_classes, aspp_dilate)
    else:
        return_layers = {"layer4": "out"}
        classifier = DeepLabHead(2048, num_classes, aspp_dilate)
    return DeepLabV3(IntermediateLayerGetter(net, return_layers), classifier)


def _segm_mobilenet(name: str, num_classes: int, output_stride: int, pretrained_backbone: bool) -> DeepLabV3:
    """MobileNetV2 backbone split into ``low_level_features`` = features[0:4] (24 ch, stride 4) and
    ``high_level_features`` = features[4:18] (320 ch); the final 1x1 conv (features[18]) is dropped.
    Slicing keeps the original indices, so keys read ``backbone.high_level_features.4.*`` onwards."""
    aspp_dilate = _aspp_dilate(output_stride)
    net = mobilenetv2.mobilenet_v2(output_stride=output_stride, pretrained=pretrained_backbone)
    stages = nn.Sequential(OrderedDict([
        ("low_level_features", net.features[0:4]),
        ("high_level_features", net.features[4:-1]),
    ]))
    if name == "deeplabv3plus":
        return_layers = {"high_level_features": "out", "low_level_features": "low_level"}
        classifier: nn.Module = DeepLabHeadV3Plus(320, 24, num_classes, aspp_dilate)
    else:
        return_layers = {"high_level_features": "out"}
        classifier = DeepLabHead(320, num_classes, aspp_dilate)
    return DeepLabV3(IntermediateLayerGetter(stages, return_layers), classifier)


def deeplabv3_mobilenet(num_classes: int = 19, output_stride: int = 16,
                        pretrained_backbone: bool = False) -> DeepLabV3:
    """DeepLabV3, MobileNetV2 backbone."""
    return _segm_mobilenet("deeplabv3", num_classes, output_stride, pretrained_backbone)


def deeplabv3plus_mobilenet(num_classes: int = 19, output_stride: int = 16,
                            pretrained_backbone: bool = False) -> DeepLabV3:
    """DeepLabV3+, MobileNetV2 backbone (SCL-LLE's frozen segmentation network at os 16, 19 classes)."""
    return _segm_mobilenet("deeplabv3plus", num_classes, output_stride, pretrained_backbone)


def deeplabv3_resnet50(num_classes: int = 19, output_stride: int = 16,
                       pretrained_backbone: bool = False) -> DeepLabV3:
    """DeepLabV3, ResNet-50 backbone."""
    return _segm_resnet("deeplabv3", resnet.resnet50, num_classes, output_stride, pretrained_backbone)


def deeplabv3plus_resnet50(num_classes: int = 19, output_stride: int = 16,
                           pretrained_backbone: bool = False) -> DeepLabV3:
    """DeepLabV3+, ResNet-50 backbone."""
    return _segm_resnet("deeplabv3plus", resnet.resnet50, num_classes, output_stride, pretrained_backbone)


def deeplabv3_resnet101(num_classes: int = 19, output_stride: int = 16,
                        pretrained_backbone: bool = False) -> DeepLabV3:
    """DeepLabV3, ResNet-101 backbone."""
    return _segm_resnet("deeplabv3", resnet.resnet101, num_classes, output_stride, pretrained_backbone)


def deeplabv3plus_resnet101(num_classes: int = 19, output_stride: int = 16,
                            pretrained_backbone: bool = False) -> DeepLabV3:
    """DeepLabV3+, ResNet-101 backbone."""
    return _segm_resnet("deeplabv3plus", resnet.resnet101, num_classes, output_stride, pretrained_backbone)


SEGMENTATION_MODELS: dict[str, Callable[..., DeepLabV3]] = {
    "deeplabv3_mobilenet": deeplabv3_mobilenet,
    "deeplabv3plus_mobilenet": deeplabv3plus_mobilenet,
    "deeplabv3_resnet50": deeplabv3_resnet50,
    "deeplabv3plus_resnet50": deeplabv3plus_resnet50,
    "deeplabv3_resnet101": deeplabv3_resnet101,
    "deeplabv3plus_resnet101": deeplabv3plus_resnet101,
}


def build_segmentation_model(name: str, num_classes: int = 19, output_stride: int = 16,
                             pretrained_backbone: bool = False) -> DeepLabV3:
    """Build the model called ``name`` (a key of :data:`SEGMENTATION_MODELS`); unknown names raise UserError."""
    factory = SEGMENTATION_MODELS.get(name)
    if factory is None:
        raise UserError(f"unknown segmentation model {name!r}: choose one of {', '.join(SEGMENTATION_MODELS)}")
    return factory(num_classes=num_classes, output_stride=output_stride, pretrained_backbone=pretrained_backbone)


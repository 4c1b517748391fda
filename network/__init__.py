"""DeepLabV3 / DeepLabV3+ (MobileNetV2, ResNet-50/101 backbones) in the layout of the public PyTorch port
VainF/DeepLabV3Plus-Pytorch (the streaming mIoU metric is :class:`metrics.StreamSegMetrics`).

The names below are imported from :mod:`network.modeling` on first use (PEP 562), so that importing an
enhancer (``network.dce``, ``network.emnet``, ...) does not import torchvision: that import alone takes
about 4 s and 0.15 GB of resident memory, which ``lowlight_test.py`` never needs for DCE-Net."""
from __future__ import annotations

__all__ = [
    "SEGMENTATION_MODELS", "build_segmentation_model",
    "deeplabv3_mobilenet", "deeplabv3plus_mobilenet", "deeplabv3_resnet50", "deeplabv3plus_resnet50",
    "deeplabv3_resnet101", "deeplabv3plus_resnet101",
]


def __getattr__(name: str):
    if name in __all__:
        from network import modeling

        return getattr(modeling, name)
    raise AttributeError(f"module 'network' has no attribute {name!r}")

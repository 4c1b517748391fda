"""DeepLabV3 / DeepLabV3+ (MobileNetV2, ResNet-50/101 backbones) in the layout of the public PyTorch port
VainF/DeepLabV3Plus-Pytorch (the streaming mIoU metric is :class:`metrics.StreamSegMetrics`)."""
from network.modeling import (
    SEGMENTATION_MODELS,
    build_segmentation_model,
    deeplabv3_mobilenet,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
    deeplabv3plus_mobilenet,
    deeplabv3plus_resnet50,
    deeplabv3plus_resnet101,
)

__all__ = [
    "SEGMENTATION_MODELS", "build_segmentation_model",
    "deeplabv3_mobilenet", "deeplabv3plus_mobilenet", "deeplabv3_resnet50", "deeplabv3plus_resnet50",
    "deeplabv3_resnet101", "deeplabv3plus_resnet101",
]

"""Backbones of the DeepLab port: a dilated MobileNetV2 and torchvision's ResNet-50/101."""
from network.backbone.mobilenetv2 import MobileNetV2, mobilenet_v2
from network.backbone.resnet import resnet50, resnet101

__all__ = ["MobileNetV2", "mobilenet_v2", "resnet50", "resnet101"]

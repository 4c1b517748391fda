"""ImageNet input statistics, defined once for every network fed ImageNet-normalised images
(the DeepLab segmentation net of SCL-LLE's loss, EMNet's ResNet-18 memory query)."""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] → (x − mean) / std with ImageNet statistics, same shape/device/dtype."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std

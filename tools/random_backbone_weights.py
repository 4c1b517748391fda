"""Write RANDOMLY INITIALISED ImageNet backbones under torchvision's real file names.

    python -m tools.random_backbone_weights --torch_home .demo_torch_home [--seed 0]

No machine of this project can download the real ImageNet weights (SPEC §9). This writes stand-ins
(VGG16, ResNet-18, AlexNet, MobileNetV2 with torchvision's own random initialisation) into
``<torch_home>/hub/checkpoints/`` so the real loading code can run: the tests use it, and so does the
EMNet demo (README), whose figures are therefore *not* comparable with ImageNet-backed ones.
Existing files are never overwritten. Huge classifier matrices that this project never uses are stored
as one expanded value, so the files stay small.
"""
from __future__ import annotations

import argparse
import os

import torch
import torchvision.models as tvm

from utils.checkpoint import atomic_save
from utils.help import HelpFormatter

BACKBONES = {
    "vgg16": (tvm.vgg16, tvm.VGG16_Weights.IMAGENET1K_V1),
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
    "alexnet": (tvm.alexnet, tvm.AlexNet_Weights.IMAGENET1K_V1),
    "mobilenet_v2": (tvm.mobilenet_v2, tvm.MobileNet_V2_Weights.IMAGENET1K_V1),
}


def write_random_weights(folder: str, names=tuple(BACKBONES), seed: int = 0) -> list[str]:
    """Write the random stand-ins of ``names`` into ``folder``; returns the paths written."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for name in names:
        builder, weights = BACKBONES[name]
        path = os.path.join(folder, os.path.basename(weights.url))
        if os.path.exists(path):
            continue
        torch.manual_seed(seed)
        state = builder(weights=None).state_dict()
        state = {k: (torch.full((1,), 0.001).expand(v.shape) if v.numel() > 3_000_000 else v)
                 for k, v in state.items()}
        atomic_save(state, path)
        written.append(path)
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--torch_home", required=True, help="folder to use as TORCH_HOME (never your real cache)")
    p.add_argument("--names", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    folder = os.path.join(args.torch_home, "hub", "checkpoints")
    for path in write_random_weights(folder, args.names, args.seed):
        print(f"wrote RANDOM (not ImageNet) weights: {path}")
    print(f"use them with: TORCH_HOME={args.torch_home}")


if __name__ == "__main__":
    main()

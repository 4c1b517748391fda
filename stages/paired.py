"""What the two EMNet stages share: paired-data flags, full-image validation and run folders."""
from __future__ import annotations

import argparse
import os

import torch
from torch import nn

from lowlight_model import ENHANCERS, SIZE_MULTIPLE, enhance
from metrics import psnr_float, quantise, scores_8bit


def add_common_arguments(p: argparse.ArgumentParser, batch_size: int, nepoch: int, arch: str = "emnet") -> None:
    g = p.add_argument_group("data (paired: LOL-v1 low/high, LOL-v2 Low/Normal)")
    g.add_argument("--train_dir", default="datasets/data/LOL-demo/our485", help="paired training split")
    g.add_argument("--val_dir", default="datasets/data/LOL-demo/eval15", help="paired validation split")
    g.add_argument("--train_ps", type=int, default=128, help="training patch size")
    g.add_argument("--batch_size", type=int, default=batch_size)
    g.add_argument("--num_workers", type=int, default=2)
    g = p.add_argument_group("run")
    g.add_argument("--env", default="demo", help="run name: files go to <save_dir>/<env>/")
    g.add_argument("--save_dir", default="log", help="parent folder of the runs")
    choices = sorted(ENHANCERS) + (["auto"] if arch == "auto" else [])
    g.add_argument("--arch", default=arch, choices=choices,
                   help="enhancer architecture" + (" (auto: recognised from the checkpoint)" if arch == "auto" else ""))
    g.add_argument("--embed_dim", type=int, default=32, help="EMNet width")
    g.add_argument("--nepoch", type=int, default=nepoch)
    g.add_argument("--random_seed", type=int, default=1234)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from a checkpoint (no value: <save_dir>/<env>/models/<stage>_latest.pth)")


def run_dirs(args) -> tuple[str, str]:
    """``(<save_dir>/<env>, <save_dir>/<env>/models)``."""
    run_dir = os.path.join(args.save_dir, args.env)
    return run_dir, os.path.join(run_dir, "models")


@torch.no_grad()
def enhance_validation(model: nn.Module, val_set, device: torch.device, arch: str) -> list[torch.Tensor]:
    """Raw (unclamped) enhancer outputs (1,3,H,W) on the CPU for every full validation image; the
    memory pools the unclamped output (SPEC §6), everything else clamps to [0, 1]."""
    model.eval()
    outs = []
    for i in range(len(val_set)):
        low, _ = val_set.load(i)
        outs.append(enhance(model, low[None].to(device), SIZE_MULTIPLE[arch]).cpu())
    return outs


def score(outputs: list[torch.Tensor], val_set, float_psnr: bool = False) -> tuple[float, float]:
    """Mean PSNR and SSIM of outputs against the GT images. SSIM on 8-bit images (scikit-image); PSNR on
    the same 8-bit images (rounded; the reference's memory validation), or with ``float_psnr`` on the float
    images, data range 1 (the reference's enhancer validation, which picks the best checkpoint)."""
    p = s = 0.0
    for i, y in enumerate(outputs):
        gt = val_set.load(i)[1]
        eight = scores_8bit(quantise(y[0], "round"), quantise(gt, "round"))
        p += psnr_float(y[0].clamp(0, 1), gt) if float_psnr else eight["psnr"]
        s += eight["ssim"]
    return p / len(outputs), s / len(outputs)

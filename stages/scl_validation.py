"""The SCL stage's validation (``--val_dir``; the reference has none): paired PSNR / SSIM when the folder holds
pairs (``low/`` + ``high/`` or ``Low/`` + ``Normal/``), else, on a folder of low-light photos, the outputs'
mean brightness, clipped fraction and NIQE (:mod:`metrics`). A few enhanced images go to TensorBoard.

Every validation image is decoded once, before the run folder exists, so a corrupt file stops the run at
once, naming it. The model is evaluated in eval mode with no gradient and put back in train mode after.
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch
from tqdm import tqdm

from utils.errors import UserError
from utils.options import at_least

BRIGHTNESS_CLIP = 254  # a channel at or above this 8-bit level counts as clipped (as benchmarks/quality.py)


def add_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--val_dir", default=None, metavar="DIR",
                   help="validate on DIR: paired PSNR/SSIM if it holds low/ + high/ (or Low/ + Normal/), else "
                        "brightness, clipped %% and NIQE of the outputs of its images; default: no validation "
                        "(the reference)")
    g.add_argument("--val_every", type=at_least(1), default=None, metavar="N",
                   help="with --val_dir: validate every N iterations and after the last (default: --snapshot_iter)")
    g.add_argument("--val_images", type=at_least(0), default=3, metavar="K",
                   help="with --val_dir: the first K enhanced validation images go to TensorBoard")


def check_arguments(args: argparse.Namespace) -> None:
    if args.val_dir is None and args.val_every is not None:
        raise UserError("--val_every applies to a validation: add --val_dir DIR or drop --val_every")


class SclValidation:
    """The validation set of ``--val_dir``, decoded up front; calling it scores a model."""

    def __init__(self, root: str, images: int = 3) -> None:
        from datasets.lol import PairedDataset, is_paired_dir

        self.root, self.show = root, images
        self.paired = is_paired_dir(root)
        if self.paired:
            from stages.batches import cache_dataset

            self.data = PairedDataset(root, cache=True)
            self.names = self.data.names
            cache_dataset(self.data, root)  # every pair decoded (and kept) now: a corrupt file stops here
        else:
            from datasets.folder import ImageFolder

            folder = ImageFolder(root)
            self.names = [folder.relpath(i) for i in range(len(folder))]
            self.images = [folder[i][0] for i in range(len(folder))]
        self.niqe_skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def describe(self) -> str:
        what = "pairs: PSNR/SSIM" if self.paired else "photos: brightness, clipped %, NIQE"
        return f"{len(self)} {what} ({self.root})"

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, device: torch.device) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """``(figures, shown)``: the figures (the first is the one the progress bar shows) and up to
        ``images`` enhanced images (3,H,W) in [0, 1] by name, for TensorBoard."""
        was_training = model.training
        model.eval()
        try:
            return self._paired(model, device) if self.paired else self._folder(model, device)
        finally:
            model.train(was_training)

    def _paired(self, model, device):
        from evaluation import VALIDATION, evaluate, first_outputs, mean_psnr_ssim

        shown, keep = first_outputs(self.names, self.show)
        acc = evaluate(model, self.data, policy=VALIDATION, device=device, each=keep)
        psnr, ssim = mean_psnr_ssim(acc, "ori")
        return {"psnr": psnr, "ssim": ssim}, shown

    def _folder(self, model, device):
        from lowlight_model import enhance
        from metrics import brightness, clipped_fraction, niqe, quantise
        from metrics.niqe import BLOCK

        shown: dict[str, torch.Tensor] = {}
        bright, clipped, scores = [], [], []
        for name, img in zip(self.names, self.images):
            y = enhance(model, img[None].to(device)).clamp(0, 1).float()
            y8 = quantise(y[0], "round")
            bright.append(brightness(y8))
            clipped.append(100.0 * clipped_fraction(y8, BRIGHTNESS_CLIP))
            if (y8.shape[0] // BLOCK) * (y8.shape[1] // BLOCK) >= 2:
                scores.append(niqe(y8))
            elif name not in self.niqe_skipped:
                self.niqe_skipped.append(name)
                tqdm.write(f"note: {name} is {y8.shape[1]}x{y8.shape[0]}, too small for NIQE (two {BLOCK}x{BLOCK} "
                           f"blocks): not scored", file=sys.stderr)
            if len(shown) < self.show:
                shown[name] = y[0].cpu()
        return {"brightness": float(np.mean(bright)), "clipped_pct": float(np.mean(clipped)),
                "niqe": float(np.mean(scores)) if scores else math.nan}, shown

"""How the weights of ``--denoise`` (utils/denoise.py: LUMA, CHROMA) were chosen: PSNR / SSIM / noise σ of a
checkpoint's 8-bit outputs on paired folders, for several (LUMA, CHROMA) at strength 1.

    python benchmarks/denoise_sweep.py --weights checkpoints/LLE_model.pth \
        --pairs datasets/data/LOL-demo/eval15 datasets/data/sice-split/val
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import utils.denoise as D  # noqa: E402
from benchmarks.quality import enhancer_method  # noqa: E402
from datasets.lol import find_pairs  # noqa: E402
from metrics import noise_sigma, scores_8bit  # noqa: E402
from utils.errors import run_cli  # noqa: E402
from utils.help import HelpFormatter  # noqa: E402
from utils.image_io import read_image_uint8  # noqa: E402

WEIGHTS = ((0.0, 0.0), (0.5, 2.0), (0.75, 2.0), (0.5, 3.0), (1.0, 2.0), (0.75, 3.0))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--weights", nargs="+", required=True, help="checkpoints to score")
    p.add_argument("--pairs", nargs="+", required=True, help="paired folders (low/ + high/)")
    args = p.parse_args(argv)
    print("| checkpoint | pairs | LUMA | CHROMA | PSNR | SSIM | noise σ |\n|---|---|---|---|---|---|---|")
    for ck in args.weights:
        method = enhancer_method(ck, torch.device("cpu"))
        for folder in args.pairs:
            outs = [(method(read_image_uint8(lo)), read_image_uint8(hi)) for lo, hi in find_pairs(folder)]
            for luma, chroma in WEIGHTS:
                D.LUMA, D.CHROMA = luma, chroma
                rows = [(scores_8bit(d, h, "reference", 0), noise_sigma(d))
                        for o, h in outs for d in [D.denoise_8bit(o, 1.0 if luma + chroma else 0.0)]]
                print(f"| {os.path.basename(ck)} | {folder} | {luma} | {chroma} | "
                      f"{np.mean([s['psnr'] for s, _ in rows]):.3f} | {np.mean([s['ssim'] for s, _ in rows]):.4f} | "
                      f"{np.mean([n for _, n in rows]):.2f} |", flush=True)


if __name__ == "__main__":
    run_cli(main)

"""The README picture: input | output of the shipped checkpoint (with its card, as lowlight_test.py runs it) on the
samples and the LIME photos.

    python tools/make_readme_figure.py [--weights checkpoints/LLE_model.pth] [--out docs/demo_grid.jpg]

Rows are downscaled to ``--height`` pixels; LIME photos are used when ``../shared/data/LIME`` exists.
Also prints each image's mean brightness before/after and the per-channel means of the output (a
colour-cast check: the channel means of a neutral result stay close together).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from lowlight_model import enhance, load_enhancer  # noqa: E402
from utils.image_io import list_images, read_image_tensor, save_grid_rows  # noqa: E402
from utils.help import HelpFormatter  # noqa: E402
from utils.model_card import describe, inference_defaults  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--weights", default=os.path.join(REPO, "checkpoints", "LLE_model.pth"))
    p.add_argument("--out", default=os.path.join(REPO, "docs", "demo_grid.jpg"))
    p.add_argument("--height", type=int, default=150)
    p.add_argument("--per_row", type=int, default=3, help="input|output pairs per row")
    args = p.parse_args()
    model = load_enhancer("auto", args.weights, torch.device("cpu"))
    card = inference_defaults(args.weights)  # as lowlight_test.py runs the checkpoint
    if "exposure" in card:
        model.set_curve_control(**card)
        print(f"with its card: {describe(card)}")
    paths = list_images(os.path.join(REPO, "datasets", "test_data"), recursive=True)[::2]
    lime = os.path.join(os.path.dirname(REPO), "shared", "data", "LIME")
    if os.path.isdir(lime):
        paths += list_images(lime)[:6]
    tiles, gains = [], []
    for path in paths:
        x = read_image_tensor(path)[None]
        with torch.inference_mode():
            y = enhance(model, x).clamp(0, 1)
        ch = y[0].mean(dim=(1, 2))
        gains.append(y.mean().item() / max(x.mean().item(), 1e-6))
        print(f"{os.path.relpath(path, os.path.dirname(REPO)):<45} mean {x.mean():.3f} -> {y.mean():.3f}  "
              f"RGB means {ch[0]:.3f} {ch[1]:.3f} {ch[2]:.3f}")
        h, w = x.shape[-2:]
        size = (args.height, max(1, round(w * args.height / h)))
        tiles += [F.interpolate(t, size=size, mode="area")[0] for t in (x, y)]
    pairs = 2 * args.per_row
    rows = [tiles[i:i + pairs] for i in range(0, len(tiles), pairs)]
    save_grid_rows(rows, args.out)
    print(f"mean brightness gain x{sum(gains) / len(gains):.2f} over {len(gains)} images; wrote {args.out}")


if __name__ == "__main__":
    main()

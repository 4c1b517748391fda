"""Flicker of the video mode, with and without ``--temporal``, on clips built from real photos.

    python benchmarks/flicker.py [--photos /work/shared/data/kodak-train] [--n 4] [--frames 16]
        [--alphas 0.5 0.8 0.9] [--weights checkpoints/LLE_model.pth] [--card]

Two clips per photo, darkened with the project's low-light model (:mod:`datasets.synthesis`: one draw of
exposure, gain and read noise per clip, fresh Poisson-Gaussian noise in every frame, 8-bit):

* **static**: the whole photo (scaled to 384 pixels wide) in every frame; the figure is the temporal standard
  deviation of each output pixel, averaged over the pixels, over the same of the input (how much the enhancer
  amplifies the frame-to-frame noise);
* **pan**: a 320x240 window sliding 8 pixels a frame across the photo (scaled to 640 wide); the figure is the
  mean absolute frame-to-frame change of the output's mean brightness over the input's.

Each ``--temporal`` ALPHA also gets its distance from the per-frame output (PSNR of the 8-bit frames, mean over
frames; on the pan, where averaging curve maps of moving content can leave trails). The figures are of the 8-bit
frames before any video encoding. Printed as a Markdown table.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets.synthesis import draw_params, rng_for, synthesize_lowlight  # noqa: E402
from lowlight_model import load_enhancer  # noqa: E402
from utils.help import HelpFormatter  # noqa: E402
from utils.image_io import list_images, read_image  # noqa: E402
from utils.model_card import describe, inference_defaults  # noqa: E402
from video import FrameEnhancer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _resized(photo: np.ndarray, width: int) -> np.ndarray:
    h, w = photo.shape[:2]
    im = Image.fromarray((photo * 255 + 0.5).astype(np.uint8)).resize((width, round(h * width / w)), Image.LANCZOS)
    return np.asarray(im, np.float32) / 255


def _frames(photo: np.ndarray, kind: str, n: int, seed: str) -> list[np.ndarray]:
    """``n`` uint8 frames of one clip (see the module docstring)."""
    rng = rng_for(0, seed)
    params = draw_params(rng)
    if kind == "static":
        scene = _resized(photo, 384)
        windows = [scene] * n
    else:
        scene = _resized(photo, 640)
        h, w = 240, 320
        top = (scene.shape[0] - h) // 2
        windows = [scene[top:top + h, 8 * t:8 * t + w] for t in range(n)]
    return [(synthesize_lowlight(x, rng, params=params)[0] * 255 + 0.5).astype(np.uint8) for x in windows]


def _static(clip: list[np.ndarray]) -> float:
    """Mean over the pixels of the temporal standard deviation (8-bit levels)."""
    return float(np.stack(clip).astype(np.float64).std(axis=0).mean())


def _pan(clip: list[np.ndarray]) -> float:
    """Mean absolute frame-to-frame change of the mean brightness (8-bit levels)."""
    means = np.array([f.astype(np.float64).mean() for f in clip])
    return float(np.abs(np.diff(means)).mean())


def _psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    vals = []
    for x, y in zip(a, b):
        mse = float(((x.astype(np.float64) - y) ** 2).mean())
        vals.append(99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse))
    return float(np.mean(vals))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--photos", default=os.path.join(os.path.dirname(REPO), "shared", "data", "kodak-train"))
    p.add_argument("--n", type=int, default=4, help="photos used (the first N, sorted)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    p.add_argument("--weights", default=os.path.join(REPO, "checkpoints", "LLE_model.pth"))
    p.add_argument("--card", action="store_true",
                   help="run the checkpoint with its card's inference defaults, as lowlight_test.py does (default: "
                        "the network's own output)")
    a = p.parse_args()
    torch.manual_seed(0)
    model = load_enhancer("auto", a.weights, "cpu")
    card = inference_defaults(a.weights) if a.card else {}
    if "exposure" in card:
        model.set_curve_control(**card)
    photos = list_images(a.photos)[:a.n]
    rows = {alpha: {"static": [], "pan": [], "psnr_static": [], "psnr_pan": []} for alpha in [0.0, *a.alphas]}
    for path in photos:
        photo = read_image(path)
        for kind, figure in (("static", _static), ("pan", _pan)):
            clip = _frames(photo, kind, a.frames, f"flicker/{kind}/{os.path.basename(path)}")
            base = None
            for alpha in rows:
                enhance = FrameEnhancer(model, torch.device("cpu"), temporal=alpha)
                out = [enhance(f) for f in clip]
                base = out if alpha == 0 else base
                rows[alpha][kind].append(figure(out) / figure(clip))
                rows[alpha]["psnr_" + kind].append(_psnr(out, base))
            print(f"{os.path.basename(path)} {kind}: " + ", ".join(f"α={al:g} {rows[al][kind][-1]:.3f}" for al in rows),
                  file=sys.stderr)
    print(f"{len(photos)} photos of {a.photos}, {a.frames} frames per clip, {os.path.basename(a.weights)}"
          + (f" with its card ({describe(card)})" if card else "") + "\n")
    print("| --temporal | static: temporal std, output / input | pan: Δ mean brightness, output / input "
          "| PSNR to per-frame (static / pan) |")
    print("|---|---|---|---|")
    for alpha, r in rows.items():
        def f(k: str) -> str:
            v = np.array(r[k])
            return f"{v.mean():.3f} ({v.min():.3f}–{v.max():.3f})"
        psnr = "—" if alpha == 0 else f"{np.mean(r['psnr_static']):.1f} / {np.mean(r['psnr_pan']):.1f} dB"
        print(f"| {alpha:g} | {f('static')} | {f('pan')} | {psnr} |")


if __name__ == "__main__":
    main()

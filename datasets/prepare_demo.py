"""Build a small synthetic demo training set, in the real layouts, from scikit-image's bundled photos.

Usage: ``python -m datasets.prepare_demo [--out datasets/data] [--samples datasets/test_data] [--seed 0]``

**Photos** (``skimage.data``, all offline, RGB uint8):

* TRAIN: ``astronaut`` (512x512), ``rocket`` (427x640), ``motorcycle`` (left view of
  ``stereo_motorcycle``, 500x741), ``immunohistochemistry`` (512x512).
* HELD-OUT, never used for any training file: ``chelsea`` (300x451) and ``coffee`` (400x600).
  (``skimage.data.cat`` is the same picture as ``chelsea`` and is not used; ``retina``,
  ``hubble_deep_field`` and ``colorwheel`` are mostly black or synthetic and are not used.)

**Synthesis** (sRGB float in [0, 1]; one ``numpy.random.default_rng(seed)`` drives every draw in a fixed
order, so the output is byte-identical for a given seed; images are resized with Pillow LANCZOS on
8-bit data and written as 8-bit PNG with torchvision's rounding ``floor(255·v + 0.5)``):

1. *Crop*: photo = TRAIN[i mod 4]; its short side is rescaled to t ~ U[c, min(short, 2.5c)]
   (c = crop size, 256 by default), then a uniformly random c x c window is cut and flipped left-right
   with probability 1/2.
2. *Low light*: ``low = clip(k · x^γ + n, 0, 1)`` with per-image k ~ U[0.08, 0.25], γ ~ U[1.4, 2.2],
   and i.i.d. Gaussian noise n ~ N(0, σ²) per pixel and channel, σ ~ U[0.005, 0.015].
3. *Negatives*, alternating: over-exposed ``clip(a · x, 0, 1)^g`` with a ~ U[1.8, 2.5], g ~ U[0.6, 0.8];
   under-exposed ``k · x^γ`` with k ~ U[0.2, 0.45], γ ~ U[1.2, 1.8] (no noise).

**Files written** (N = ``--n_crops``, default 60):

* ``out/cityscapes/leftImg8bit/train/demo/<photo>_<i>_leftImg8bit.png``: N darkened crops (no gtFine:
  use ``require_labels=False``); ``out/LOL-demo/our485/{low,high}/<photo>_<i>.png``: the same N crops as
  (low-light, original) pairs.
* ``out/Contrast/GT/pos_<photo>_<i>.png``: N other original crops (positives);
  ``out/Contrast/low/{over,under}_<photo>_<i>.png``: N negatives made from N further crops.
* ``out/LOL-demo/eval15/{low,high}/<photo>_<j>.png``: from HELD-OUT photos only, 3 pairs per photo:
  j = 0 is the whole photo resized to ≤ 400 px on the long side, j ≥ 1 are random crops (sides in
  [192, 400]) of the photo at its own resolution; all sides are multiples of 8; darkened as in step 2.
* ``out/demo_manifest.json``: photos, seed and the parameters (k, γ, σ, ...) of every image.
* With ``--samples DIR``: ``DIR/skimage/<photo>_<j>.png`` = the eval15 low-light images (identical
  files; their ground truth is ``eval15/high``).

Re-running removes files that an earlier run listed in the manifest but this run did not write.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Callable

import numpy as np
from PIL import Image

from utils.errors import UserError, run_cli
from utils.image_io import list_images, save_image

TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle", "immunohistochemistry")
HELD_OUT_PHOTOS = ("chelsea", "coffee")
MANIFEST = "demo_manifest.json"


def load_photo(name: str) -> np.ndarray:
    """A bundled scikit-image colour photo as uint8 HxWx3."""
    import skimage.data as data

    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return np.ascontiguousarray(np.asarray(img)[..., :3], dtype=np.uint8)


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 HxWx3 → uint8 hxwx3 with Pillow LANCZOS."""
    if img.shape[:2] == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.LANCZOS))


def to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def random_crop(rng: np.random.Generator, img: np.ndarray, c: int) -> np.ndarray:
    """Step 1: rescale the short side to U[c, min(short, 2.5c)], random c x c window, random flip."""
    h, w = img.shape[:2]
    short = min(h, w)
    t = rng.uniform(c, max(c, min(short, 2.5 * c)))
    s = t / short
    img = resize(img, max(c, round(h * s)), max(c, round(w * s)))
    top = int(rng.integers(0, img.shape[0] - c + 1))
    left = int(rng.integers(0, img.shape[1] - c + 1))
    out = img[top:top + c, left:left + c]
    return out[:, ::-1] if rng.random() < 0.5 else out


def darken(rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """Step 2: ``clip(k·x^γ + N(0, σ²), 0, 1)``."""
    k, g, sigma = rng.uniform(0.08, 0.25), rng.uniform(1.4, 2.2), rng.uniform(0.005, 0.015)
    noise = rng.normal(0.0, sigma, size=x.shape).astype(np.float32)
    low = np.clip(np.float32(k) * np.power(x, np.float32(g)) + noise, 0.0, 1.0)
    return low, {"k": round(k, 4), "gamma": round(g, 4), "sigma": round(sigma, 4)}


def negative(rng: np.random.Generator, x: np.ndarray, over: bool) -> tuple[np.ndarray, dict]:
    """Step 3: over-exposed ``clip(a·x)^g`` or under-exposed ``k·x^γ``."""
    if over:
        a, g = rng.uniform(1.8, 2.5), rng.uniform(0.6, 0.8)
        return np.power(np.clip(np.float32(a) * x, 0.0, 1.0), np.float32(g)), {"a": round(a, 4), "g": round(g, 4)}
    k, g = rng.uniform(0.2, 0.45), rng.uniform(1.2, 1.8)
    return np.float32(k) * np.power(x, np.float32(g)), {"k": round(k, 4), "gamma": round(g, 4)}


def eval_views(rng: np.random.Generator, img: np.ndarray, n: int, max_side: int) -> list[np.ndarray]:
    """View 0: whole photo, long side ≤ max_side; views ≥ 1: random crops; all sides multiples of 8."""
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    rh, rw = round(h * s), round(w * s)
    full = resize(img, rh, rw)
    ch, cw = rh // 8 * 8, rw // 8 * 8
    views = [full[(rh - ch) // 2:(rh - ch) // 2 + ch, (rw - cw) // 2:(rw - cw) // 2 + cw]]
    lo = min(192, max_side, h // 8 * 8, w // 8 * 8)
    for _ in range(1, n):
        vh = 8 * int(rng.integers(lo // 8, min(h, max_side) // 8 + 1))
        vw = 8 * int(rng.integers(lo // 8, min(w, max_side) // 8 + 1))
        top, left = int(rng.integers(0, h - vh + 1)), int(rng.integers(0, w - vw + 1))
        views.append(img[top:top + vh, left:left + vw])
    return views


def build_demo(out: str, samples: str | None = None, seed: int = 0, n_crops: int = 60, crop: int = 256,
               eval_per_photo: int = 3, max_side: int = 400, log: Callable[[str], None] = lambda s: None) -> dict:
    """Write the demo data set under ``out`` (see the module docstring); returns the manifest."""
    if n_crops < 1 or crop < 8 or eval_per_photo < 1 or max_side < 8:
        raise UserError("prepare_demo: --n_crops, --eval_per_photo must be ≥ 1 and --crop_size, --max_side ≥ 8")
    rng = np.random.default_rng(seed)
    photos = {name: load_photo(name) for name in TRAIN_PHOTOS + HELD_OUT_PHOTOS}
    city = os.path.join(out, "cityscapes", "leftImg8bit", "train", "demo")
    lol = os.path.join(out, "LOL-demo")
    files: dict[str, dict] = {}

    def write(x: np.ndarray, path: str, params: dict) -> None:
        save_image(x, path)
        files[os.path.relpath(path, out).replace(os.sep, "/")] = params

    for i in range(n_crops):  # darkened inputs and LOL-style training pairs
        name = TRAIN_PHOTOS[i % len(TRAIN_PHOTOS)]
        x = to_float(random_crop(rng, photos[name], crop))
        low, p = darken(rng, x)
        write(low, os.path.join(city, f"{name}_{i:03d}_leftImg8bit.png"), {"photo": name, **p})
        write(low, os.path.join(lol, "our485", "low", f"{name}_{i:03d}.png"), {"photo": name, **p})
        write(x, os.path.join(lol, "our485", "high", f"{name}_{i:03d}.png"), {"photo": name})
    for i in range(n_crops):  # positives
        name = TRAIN_PHOTOS[i % len(TRAIN_PHOTOS)]
        write(to_float(random_crop(rng, photos[name], crop)), os.path.join(out, "Contrast", "GT", f"pos_{name}_{i:03d}.png"),
              {"photo": name})
    for i in range(n_crops):  # negatives
        name = TRAIN_PHOTOS[i % len(TRAIN_PHOTOS)]
        over = i % 2 == 0
        q, p = negative(rng, to_float(random_crop(rng, photos[name], crop)), over)
        kind = "over" if over else "under"
        write(q, os.path.join(out, "Contrast", "low", f"{kind}_{name}_{i:03d}.png"), {"photo": name, **p})
    sample_lows = []
    for name in HELD_OUT_PHOTOS:  # evaluation pairs from held-out photos only
        for j, view in enumerate(eval_views(rng, photos[name], eval_per_photo, max_side)):
            x = to_float(view)
            low, p = darken(rng, x)
            fname = f"{name}_{j}.png"
            write(low, os.path.join(lol, "eval15", "low", fname), {"photo": name, "size": list(view.shape[:2]), **p})
            write(x, os.path.join(lol, "eval15", "high", fname), {"photo": name})
            sample_lows.append((fname, low))
    if samples:
        for fname, low in sample_lows[:6]:
            save_image(low, os.path.join(samples, "skimage", fname))

    manifest = {"seed": seed, "crop_size": crop, "n_crops": n_crops, "train_photos": list(TRAIN_PHOTOS),
                "held_out_photos": list(HELD_OUT_PHOTOS), "files": files}
    _remove_stale(out, set(files))
    _check_foreign(out, set(files), log)
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def _remove_stale(out: str, written: set[str]) -> None:
    """Delete files listed by an earlier run's manifest that this run did not write."""
    path = os.path.join(out, MANIFEST)
    if not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            old = json.load(f).get("files", {})
    except (OSError, ValueError):
        return
    for rel in set(old) - written:
        p = os.path.join(out, rel)
        if os.path.isfile(p):
            os.remove(p)


def _check_foreign(out: str, written: set[str], log: Callable[[str], None]) -> None:
    """Warn when a demo folder also holds images this script did not write (they would be mixed in)."""
    for sub in ("cityscapes/leftImg8bit/train", "Contrast/GT", "Contrast/low", "LOL-demo"):
        d = os.path.join(out, sub)
        if os.path.isdir(d):
            other = [p for p in list_images(d, recursive=True)
                     if os.path.relpath(p, out).replace(os.sep, "/") not in written]
            if other:
                log(f"warning: {d} also holds {len(other)} other image(s), e.g. {other[0]}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m datasets.prepare_demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="datasets/data", help="output root (default: datasets/data)")
    ap.add_argument("--samples", default=None, help="also write low-light samples to SAMPLES/skimage/ "
                    "(e.g. datasets/test_data)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n_crops", type=int, default=60, help="training crops per folder (default 60)")
    ap.add_argument("--crop_size", type=int, default=256, help="training crop side in pixels (default 256)")
    ap.add_argument("--eval_per_photo", type=int, default=3, help="eval pairs per held-out photo (default 3)")
    ap.add_argument("--max_side", type=int, default=400, help="longest eval image side (default 400)")
    args = ap.parse_args(argv)
    t0 = time.time()
    m = build_demo(args.out, args.samples, args.seed, args.n_crops, args.crop_size, args.eval_per_photo,
                   args.max_side, log=print)
    print(f"wrote {len(m['files'])} files under {args.out} in {time.time() - t0:.1f} s "
          f"(train photos: {', '.join(TRAIN_PHOTOS)}; held out: {', '.join(HELD_OUT_PHOTOS)})")
    if args.samples:
        print(f"samples: {os.path.join(args.samples, 'skimage')}")


if __name__ == "__main__":
    run_cli(main)

"""Build the demo / shipped-model training set, in the real layouts, from normal-light photos.

Usage: ``python -m datasets.prepare_demo [--out datasets/data] [--samples datasets/test_data] [--seed 0]
[--photos DIR ...] [--val_fraction 0.25] [--n_crops 120]``

**Photos** (RGB, 8 bit):

* scikit-image's bundled colour photos (offline): TRAIN ``astronaut`` (512x512), ``rocket`` (427x640),
  ``motorcycle`` (left view of ``stereo_motorcycle``, 500x741), ``immunohistochemistry`` (512x512);
  HELD-OUT ``chelsea`` (300x451) and ``coffee`` (400x600). (``cat`` is ``chelsea`` again; ``retina``,
  ``hubble_deep_field`` and ``colorwheel`` are mostly black or synthetic and are not used.)
* every image of each ``--photos DIR`` (e.g. ``../shared/data/kodak-train``), named by its file stem.
  Each folder is split **by photo**: its sorted files are permuted with ``rng_for(seed, "split/<DIR name>")``
  and the first ``round(val_fraction · n)`` (at least 1 when n ≥ 2) are HELD-OUT.

Held-out photos give the evaluation pairs only; no training file (input, pair, positive or negative,
not even a crop) comes from them.

**Synthesis**: :mod:`datasets.synthesis` (sRGB → linear, white-balance shift, exposure log-uniform in
[1/50, 1/3], Poisson shot noise with a random gain, read noise, sRGB, 8 bits; over-exposed negatives in
linear light, gain log-uniform in [2.5, 8]). Every file has its own generator ``rng_for(seed, key)`` with a
key naming it (``train/<i>``, ``positive/<i>``, ``negative/<i>``, ``views/<photo>``, ``eval/<file>``), so a
file's content depends only on the seed and that key (adding ``--photos`` does not change the
scikit-image samples). Crops and views are resized with Pillow LANCZOS on 8-bit data.

1. *Crop*: photo = TRAIN[i mod n_train]; its short side is rescaled to t ~ U[c, min(short, 2.5c)]
   (c = crop size, 256 by default), then a uniformly random c x c window is cut and flipped left-right
   with probability 1/2.
2. *Low light*: :func:`datasets.synthesis.synthesize_pair`; optionally a share ``--light_prob`` of the
   training crops get saturated light sources (lamps) and a share ``--pool_prob`` lit pools
   (:class:`~datasets.synthesis.LightConfig`), in the low-light input and in its ground truth (both 0
   by default, the data of the shipped model). Negatives, positives and evaluation pairs never get them.
3. *Negatives*, alternating: over-exposed (:func:`~datasets.synthesis.synthesize_overexposed`) and
   under-exposed (the low-light synthesis of step 2).

**Files written** (N = ``--n_crops``, default 120):

* ``out/cityscapes/leftImg8bit/train/demo/<photo>_<i>_leftImg8bit.png``: N darkened crops (no gtFine:
  use ``require_labels=False``); ``out/LOL-demo/our485/{low,high}/<photo>_<i>.png``: the same N crops as
  (low-light, original) pairs.
* ``out/Contrast/GT/pos_<photo>_<i>.png``: N other original crops (positives);
  ``out/Contrast/low/{over,under}_<photo>_<i>.png``: N negatives made from N further crops.
* ``out/LOL-demo/eval15/{low,high}/<photo>_<j>.png``: from HELD-OUT photos only, ``--eval_per_photo``
  pairs per photo: j = 0 is the whole photo resized to ≤ ``--max_side`` px on the long side, j ≥ 1 are
  random crops (sides in [192, max_side]) of the photo at its own resolution; all sides are multiples of 8.
* ``out/demo_manifest.json``: photos, seed, synthesis configuration and the parameters of every image.
* With ``--samples DIR``: ``DIR/skimage/<photo>_<j>.png`` = the eval low-light images of the held-out
  scikit-image photos (identical files; their ground truth is ``eval15/high``).

Re-running removes files that an earlier run listed in the manifest but this run did not write.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from typing import Callable

import numpy as np
from PIL import Image

from datasets.synthesis import (DEFAULT, LightConfig, config_dict, rng_for, synthesize_lowlight, synthesize_overexposed,
                                synthesize_pair)
from utils.errors import UserError, run_cli
from utils.fs import atomic_write
from utils.image_io import list_images, read_image_uint8, save_image
from utils.help import HelpFormatter

TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle", "immunohistochemistry")
HELD_OUT_PHOTOS = ("chelsea", "coffee")
MANIFEST = "demo_manifest.json"


def load_photo(name: str) -> np.ndarray:
    """A bundled scikit-image colour photo as uint8 HxWx3."""
    import skimage.data as data

    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return np.ascontiguousarray(np.asarray(img)[..., :3], dtype=np.uint8)


def split_folder(folder: str, seed: int, val_fraction: float) -> tuple[dict[str, str], dict[str, str]]:
    """Split the images of ``folder`` by photo: ``({stem: path} train, {stem: path} held out)``."""
    files = list_images(folder) if os.path.isdir(folder) else []
    if not files:
        raise UserError(f"--photos {folder}: no images found; pass a folder of normal-light photos")
    files = sorted(files)
    order = rng_for(seed, "split/" + os.path.basename(os.path.normpath(folder))).permutation(len(files))
    n_val = 0 if len(files) < 2 else min(len(files) - 1, max(1, round(val_fraction * len(files))))
    named = [(os.path.splitext(os.path.basename(files[i]))[0], files[i]) for i in order]
    return dict(named[n_val:]), dict(named[:n_val])


def gather_photos(folders: list[str], seed: int, val_fraction: float) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """All photos as uint8 arrays, the training names and the held-out names (scikit-image first)."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"--val_fraction {val_fraction}: must be in [0, 1)")
    photos = {name: load_photo(name) for name in TRAIN_PHOTOS + HELD_OUT_PHOTOS}
    train, held = list(TRAIN_PHOTOS), list(HELD_OUT_PHOTOS)
    for folder in folders:
        tr, va = split_folder(folder, seed, val_fraction)
        for names, group in ((train, tr), (held, va)):
            for stem, path in sorted(group.items()):
                if stem in photos:
                    raise UserError(f"--photos {folder}: photo name {stem!r} is used twice; rename one of them")
                photos[stem] = read_image_uint8(path)
                names.append(stem)
    return photos, train, held


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


def _rounded(p: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in p.items()}


def build_demo(out: str, samples: str | None = None, seed: int = 0, n_crops: int = 120, crop: int = 256,
               eval_per_photo: int = 3, max_side: int = 400, log: Callable[[str], None] = lambda s: None,
               photo_dirs: list[str] | None = None, val_fraction: float = 0.25, light_prob: float = 0.0,
               pool_prob: float = 0.0) -> dict:
    """Write the data set under ``out`` (see the module docstring); returns the manifest."""
    if n_crops < 1 or crop < 8 or eval_per_photo < 1 or max_side < 8:
        raise UserError("prepare_demo: --n_crops, --eval_per_photo must be ≥ 1 and --crop_size, --max_side ≥ 8")
    for flag, v in (("--light_prob", light_prob), ("--pool_prob", pool_prob)):
        if not 0.0 <= v <= 1.0:
            raise UserError(f"prepare_demo: {flag} {v}: must be in [0, 1]")
    lights = LightConfig(prob=light_prob, pool_prob=pool_prob)
    photos, train_names, held_names = gather_photos(list(photo_dirs or []), seed, val_fraction)
    city = os.path.join("cityscapes", "leftImg8bit", "train", "demo")
    files: dict[str, dict] = {}

    def write(x: np.ndarray, rel: str, params: dict) -> None:
        save_image(x, os.path.join(out, rel))
        files[rel.replace(os.sep, "/")] = _rounded(params)

    for i in range(n_crops):
        name = train_names[i % len(train_names)]
        rng = rng_for(seed, f"train/{i}")  # darkened inputs and LOL-style training pairs
        x = to_float(random_crop(rng, photos[name], crop))
        low, high, p = synthesize_pair(x, rng, lights=lights)
        write(low, os.path.join(city, f"{name}_{i:03d}_leftImg8bit.png"), {"photo": name, **p})
        write(low, os.path.join("LOL-demo", "our485", "low", f"{name}_{i:03d}.png"), {"photo": name, **p})
        write(high, os.path.join("LOL-demo", "our485", "high", f"{name}_{i:03d}.png"), {"photo": name})
        rng = rng_for(seed, f"positive/{i}")
        write(to_float(random_crop(rng, photos[name], crop)), os.path.join("Contrast", "GT", f"pos_{name}_{i:03d}.png"),
              {"photo": name})
        rng = rng_for(seed, f"negative/{i}")
        x = to_float(random_crop(rng, photos[name], crop))
        over = i % 2 == 0
        q, p = synthesize_overexposed(x, rng) if over else synthesize_lowlight(x, rng)
        write(q, os.path.join("Contrast", "low", f"{'over' if over else 'under'}_{name}_{i:03d}.png"), {"photo": name, **p})
    sample_lows = []
    for name in held_names:  # evaluation pairs from held-out photos only
        views = eval_views(rng_for(seed, f"views/{name}"), photos[name], eval_per_photo, max_side)
        for j, view in enumerate(views):
            x = to_float(view)
            fname = f"{name}_{j}.png"
            low, p = synthesize_lowlight(x, rng_for(seed, f"eval/{fname}"))
            write(low, os.path.join("LOL-demo", "eval15", "low", fname), {"photo": name, "size": list(view.shape[:2]), **p})
            write(x, os.path.join("LOL-demo", "eval15", "high", fname), {"photo": name})
            if name in HELD_OUT_PHOTOS:
                sample_lows.append((fname, low))
    if samples:
        for fname, low in sample_lows[:6]:
            save_image(low, os.path.join(samples, "skimage", fname))

    manifest = {"seed": seed, "crop_size": crop, "n_crops": n_crops, "train_photos": train_names,
                "held_out_photos": held_names, "photo_dirs": [os.path.abspath(d) for d in photo_dirs or []],
                "val_fraction": val_fraction, "synthesis": config_dict(DEFAULT), "lights": asdict(lights), "files": files}
    _remove_stale(out, set(files))
    _check_foreign(out, set(files), log)
    with atomic_write(os.path.join(out, MANIFEST), "w") as f:  # later runs read it to remove stale files
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m datasets.prepare_demo", description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    g = ap.add_argument_group("output")
    g.add_argument("--out", default="datasets/data", help="output root (default: datasets/data)")
    g.add_argument("--samples", default=None, help="also write low-light samples to SAMPLES/skimage/ "
                   "(e.g. datasets/test_data; default: none)")
    g.add_argument("--seed", type=int, default=0)
    g = ap.add_argument_group("photos")
    g.add_argument("--photos", action="append", default=[], metavar="DIR",
                   help="a folder of normal-light photos to add (repeatable); split by photo into train/held out")
    g.add_argument("--val_fraction", type=float, default=0.25, help="held-out share of each --photos folder")
    g = ap.add_argument_group("training crops")
    g.add_argument("--n_crops", type=int, default=120, help="training crops in all, taken from the training photos in turn (default 120)")
    g.add_argument("--crop_size", type=int, default=256, help="training crop side in pixels (default 256)")
    g = ap.add_argument_group("evaluation pairs")
    g.add_argument("--eval_per_photo", type=int, default=3, help="eval pairs per held-out photo (default 3)")
    g.add_argument("--max_side", type=int, default=400, help="longest eval image side (default 400)")
    g.add_argument("--light_prob", type=float, default=0.0,
                   help="share of training crops given saturated light sources (lamps) (default 0: none)")
    g.add_argument("--pool_prob", type=float, default=0.0,
                   help="share of training crops given lit pools (local light of 0.3-3x the normal exposure) "
                         "(default 0: none)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    t0 = time.time()
    m = build_demo(args.out, args.samples, args.seed, args.n_crops, args.crop_size, args.eval_per_photo,
                   args.max_side, log=print, photo_dirs=args.photos, val_fraction=args.val_fraction,
                   light_prob=args.light_prob, pool_prob=args.pool_prob)
    print(f"wrote {len(m['files'])} files under {args.out} in {time.time() - t0:.1f} s "
          f"(train photos: {', '.join(m['train_photos'])}; held out: {', '.join(m['held_out_photos'])})")
    if args.samples:
        print(f"samples: {os.path.join(args.samples, 'skimage')}")


if __name__ == "__main__":
    run_cli(main)

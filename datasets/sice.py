"""The fixed split of ``sice-pairs`` (real SICE exposure brackets, ``low/NNNN.jpg`` + ``high/NNNN.jpg``) by
scene into a training part and a validation part, about 3 : 1, and a tool that writes both as folders of
symbolic links in the LOL layout (no image is copied).

    python -m datasets.sice --src ../shared/data/sice-pairs --out datasets/data/sice-split
    # -> datasets/data/sice-split/train/{low,high}/NNNN.jpg, datasets/data/sice-split/val/{low,high}/NNNN.jpg
    python -m datasets.sice --scl_into datasets/data128p --repeat 4   # + the training part into SCL data
    python -m datasets.sice --train_repeat 4 --downscale 256   # + train_x4/ (links), train256/, val256/

**Scenes.** A name ``NNNN`` is the number of the pair's low frame in the source folder (Zero-DCE++'s
training set, SICE Part 1 brackets stored one after another), and each name is one scene
(:func:`scene_of`). Brackets next to each other in that folder can still show the same place (``0692`` and
``0697`` do, from two viewpoints), so :func:`split_scenes` keeps names less than :data:`NEIGHBOUR_GAP`
numbers apart on the same side: it chains the sorted scene numbers into groups wherever two consecutive
numbers differ by less than the gap.

**Split.** The groups, in increasing number, are dealt out in turns of four: the third of each four
(positions 2, 6, 10, ...) is validation, the rest training. No randomness: the same names always give the
same parts, and every part spans the whole folder. On the 83 pairs of ``../shared/data/sice-pairs`` this
gives 62 training and 21 validation pairs (the lists: ``docs/training.md``).
"""
from __future__ import annotations

import argparse
import os
import re

from utils.errors import UserError, run_cli
from utils.image_io import read_image_uint8
from utils.help import HelpFormatter

NEIGHBOUR_GAP = 6
VAL_EVERY, VAL_AT = 4, 2
_NUMBER = re.compile(r"(\d+)")


def scene_of(name: str) -> str:
    """The scene of a pair file name: its stem (``"0692.jpg"`` → ``"0692"``); each sice-pairs name is one scene."""
    return os.path.splitext(os.path.basename(name))[0]


def _number(scene: str) -> int:
    m = _NUMBER.search(scene)
    if m is None:
        raise ValueError(f"split_scenes: scene {scene!r} holds no frame number (names must be like 0692.jpg)")
    return int(m.group(1))


def scene_groups(names: list[str], gap: int = NEIGHBOUR_GAP) -> list[list[str]]:
    """The scenes of ``names`` (sorted by number, duplicates once) chained into groups of neighbours:
    consecutive scene numbers less than ``gap`` apart share a group."""
    scenes = sorted({scene_of(n) for n in names}, key=lambda s: (_number(s), s))
    groups: list[list[str]] = []
    for s in scenes:
        if groups and _number(s) - _number(groups[-1][-1]) < gap:
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def split_scenes(names: list[str], gap: int = NEIGHBOUR_GAP) -> tuple[list[str], list[str]]:
    """``(train, val)``: the sorted names of ``names`` whose scene is in the training / validation part (see
    the module docstring: every fourth group of neighbouring scenes, from the third, is validation)."""
    val_scenes = {s for i, g in enumerate(scene_groups(names, gap)) if i % VAL_EVERY == VAL_AT for s in g}
    train = sorted(n for n in names if scene_of(n) not in val_scenes)
    val = sorted(n for n in names if scene_of(n) in val_scenes)
    return train, val


def _link(target: str, link: str) -> None:
    """``link`` → ``target`` (absolute); an existing identical link is kept, anything else there is an error."""
    if os.path.islink(link) and os.readlink(link) == target:
        return
    if os.path.lexists(link):
        raise UserError(f"{link}: already exists and is not a link to {target}; remove the folder or choose "
                        f"another --out")
    os.symlink(target, link)


def write_split(src: str, out: str, gap: int = NEIGHBOUR_GAP) -> dict[str, list[str]]:
    """Write ``out/train`` and ``out/val`` (each ``low/`` + ``high/``) as links to the pairs of ``src``;
    returns ``{"train": names, "val": names}`` (low-light file names)."""
    from datasets.lol import find_pairs

    pairs = {os.path.basename(low): (low, high) for low, high in find_pairs(src)}
    train, val = split_scenes(list(pairs), gap)
    for part, names in (("train", train), ("val", val)):
        for side in ("low", "high"):
            os.makedirs(os.path.join(out, part, side), exist_ok=True)
        for name in names:
            low, high = pairs[name]
            _link(os.path.abspath(low), os.path.join(out, part, "low", name))
            _link(os.path.abspath(high), os.path.join(out, part, "high", os.path.basename(high)))
    return {"train": train, "val": val}


def write_repeated(part_dir: str, out: str, repeat: int) -> int:
    """``out/{low,high}/NNNN_rK.ext``: every pair of ``part_dir`` linked ``repeat`` times (a longer epoch for
    stages that validate once per epoch: random crops of each copy differ). Returns the number of pairs."""
    from datasets.lol import find_pairs

    pairs = find_pairs(part_dir)
    for side in ("low", "high"):
        os.makedirs(os.path.join(out, side), exist_ok=True)
    for low, high in pairs:
        stem, ext = os.path.splitext(os.path.basename(low))
        for k in range(repeat):
            _link(os.path.abspath(low), os.path.join(out, "low", f"{stem}_r{k}{ext}"))
            _link(os.path.abspath(high), os.path.join(out, "high", f"{stem}_r{k}{ext}"))
    return len(pairs)


def write_downscaled(part_dir: str, out: str, size: int) -> int:
    """``out/{low,high}/NNNN.png``: every pair of ``part_dir`` resized to ``size`` x ``size`` (Pillow's LANCZOS
    on the 8-bit frames, lossless PNG), for cheap validation of slow enhancers. Returns the number of pairs."""
    from PIL import Image

    from datasets.lol import find_pairs

    pairs = find_pairs(part_dir)
    for side in ("low", "high"):
        os.makedirs(os.path.join(out, side), exist_ok=True)
    for low, high in pairs:
        name = os.path.splitext(os.path.basename(low))[0] + ".png"
        for side, path in (("low", low), ("high", high)):
            img = Image.fromarray(read_image_uint8(path), "RGB").resize((size, size), Image.Resampling.LANCZOS)
            img.save(os.path.join(out, side, name))
    return len(pairs)


def add_to_scl(split_part: str, into: str, repeat: int = 1) -> int:
    """Add the real pairs of ``split_part`` (``low/`` + ``high/``, e.g. ``sice-split/train``) to the SCL-LLE
    data of ``into`` (``cityscapes/`` + ``Contrast/``, as ``datasets.prepare_demo`` writes it), as links:

    * each low frame ``repeat`` times as an unlabelled training image
      (``cityscapes/leftImg8bit/train/sice/NNNN_rK_leftImg8bit.jpg``): random crops of a 512x512 frame
      differ, so repeating weighs the real frames against the synthetic crops;
    * its normally exposed frame as that image's exposure reference, under the same name in
      ``cityscapes/reference/train/sice/`` (read only with ``train.py --stage scl --w_expref W``);
    * each normally exposed frame as a contrast positive (``Contrast/GT/sice_NNNN.jpg``) and each low frame
      as a contrast negative (``Contrast/low/sice_NNNN.jpg``), as SCL-LLE's contrast set pairs normal-light
      photos with badly exposed ones.

    Returns the number of pairs added. Nothing is copied."""
    from datasets.lol import find_pairs

    if repeat < 1:
        raise UserError(f"--repeat {repeat}: must be at least 1")
    for sub in ("cityscapes", "Contrast"):
        if not os.path.isdir(os.path.join(into, sub)):
            raise UserError(f"{into}: no {sub}/ folder; create the SCL data first (python -m datasets.prepare_demo "
                            f"--out {into})")
    train_dir = os.path.join(into, "cityscapes", "leftImg8bit", "train", "sice")
    ref_dir = os.path.join(into, "cityscapes", "reference", "train", "sice")
    os.makedirs(train_dir, exist_ok=True)
    os.makedirs(ref_dir, exist_ok=True)
    pairs = find_pairs(split_part)
    for low, high in pairs:
        stem, ext = os.path.splitext(os.path.basename(low))
        for k in range(repeat):
            _link(os.path.abspath(low), os.path.join(train_dir, f"{stem}_r{k}_leftImg8bit{ext}"))
            _link(os.path.abspath(high), os.path.join(ref_dir, f"{stem}_r{k}_leftImg8bit{ext}"))
        _link(os.path.abspath(high), os.path.join(into, "Contrast", "GT", f"sice_{os.path.basename(high)}"))
        _link(os.path.abspath(low), os.path.join(into, "Contrast", "low", f"sice_{os.path.basename(low)}"))
    return len(pairs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m datasets.sice", description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    ap.add_argument("--src", default=os.path.join("..", "shared", "data", "sice-pairs"),
                    help="the sice-pairs folder (low/ + high/)")
    ap.add_argument("--out", default=os.path.join("datasets", "data", "sice-split"),
                    help="where train/ and val/ (folders of links) go")
    ap.add_argument("--scl_into", default=None, metavar="DIR",
                    help="also add the training part to the SCL-LLE data in DIR (cityscapes/ + Contrast/, see "
                         "add_to_scl; default: none)")
    ap.add_argument("--repeat", type=int, default=1, help="with --scl_into: links per low frame")
    ap.add_argument("--train_repeat", type=int, default=0, metavar="K",
                    help="also write train_xK/: each training pair linked K times (default 0: not)")
    ap.add_argument("--downscale", type=int, default=0, metavar="S",
                    help="also write trainS/ and valS/: the pairs resized to S x S (default 0: not)")
    args = ap.parse_args(argv)
    parts = write_split(args.src, args.out)
    if args.train_repeat > 0:
        write_repeated(os.path.join(args.out, "train"), os.path.join(args.out, f"train_x{args.train_repeat}"),
                       args.train_repeat)
    if args.downscale > 0:
        for part in ("train", "val"):
            write_downscaled(os.path.join(args.out, part), os.path.join(args.out, f"{part}{args.downscale}"),
                             args.downscale)
    if args.scl_into:
        n = add_to_scl(os.path.join(args.out, "train"), args.scl_into, args.repeat)
        print(f"{args.scl_into}: {n} real low frames x{args.repeat} as training images, {n} contrast pairs")
    for part, names in parts.items():
        print(f"{part}: {len(names)} pairs in {os.path.join(args.out, part)}: "
              + " ".join(scene_of(n) for n in names))


if __name__ == "__main__":
    run_cli(main)

"""Paired low/normal-light data (LOL-v1, LOL-v2 real, LOL-v2 synthetic, sice-pairs), detected from the folder layout.

==================  =========================  =====================================
layout              folders                    pairing
==================  =========================  =====================================
LOL-v1              ``root/low``, ``root/high``    identical file names
LOL-v2 real         ``root/Low``, ``root/Normal``  ``lowXXXXX.png`` ↔ ``normalXXXXX.png``
LOL-v2 synthetic    ``root/Low``, ``root/Normal``  identical file names
sice-pairs          ``root/low``, ``root/high``    identical file names (JPEG)
==================  =========================  =====================================

Files may be PNG, JPEG, BMP or TIFF (any mix; greyscale files are read as RGB), or links to them (the
folders of :mod:`datasets.sice`'s split).

``root`` is one split, e.g. ``LOL/our485``, ``LOL/eval15``, ``LOL-v2/Real_captured/Test``. Names are
matched by file stem (the extension may differ). Every file must have a partner, else :class:`UserError`.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from datasets.augment import augment as apply_augment
from datasets.augment import random_mode
from utils.errors import UserError
from utils.image_io import image_size, list_images, read_image_tensor, unpack_8bit

LAYOUTS = (("low", "high"), ("Low", "Normal"))
_SPLIT_HINTS = ("our485", "eval15", "Train", "Test", "Real_captured", "Synthetic")


def _layout(root: str) -> tuple[str, str] | None:
    for low, high in LAYOUTS:
        if os.path.isdir(os.path.join(root, low)) and os.path.isdir(os.path.join(root, high)):
            return os.path.join(root, low), os.path.join(root, high)
    return None


def is_paired_dir(root: str) -> bool:
    """True if ``root`` holds ``low/`` + ``high/`` or ``Low/`` + ``Normal/``."""
    return os.path.isdir(root) and _layout(root) is not None


def _by_stem(files: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0]
        if stem in out:
            raise UserError(f"{f}: two images named {stem!r} (also {out[stem]}); keep only one")
        out[stem] = f
    return out


def _partner_stems(stem: str) -> list[str]:
    """Candidate normal-light stems for a low-light stem: same name, then ``low…`` → ``normal…``."""
    cands = [stem]
    if stem[:3].lower() == "low":
        cands += ["normal" + stem[3:], "Normal" + stem[3:]]
    return cands


def find_pairs(root: str) -> list[tuple[str, str]]:
    """``[(low_path, high_path), ...]`` sorted by low-light file name; see the module docstring."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: folder not found; check the path")
    dirs = _layout(root)
    if dirs is None:
        subs = [s for s in _SPLIT_HINTS if os.path.isdir(os.path.join(root, s))]
        hint = f" (it has {', '.join(subs)}/: pass one split folder)" if subs else ""
        raise UserError(f"{root}: no paired data found{hint}; expected low/ + high/ (LOL-v1) or "
                        f"Low/ + Normal/ (LOL-v2)")
    low_dir, high_dir = dirs
    lows, highs = _by_stem(list_images(low_dir)), _by_stem(list_images(high_dir))
    if not lows and not highs:
        raise UserError(f"{root}: {low_dir} and {high_dir} contain no images")
    pairs, unmatched, used = [], [], set()
    for stem, low in lows.items():
        partner = next((s for s in _partner_stems(stem) if s in highs and s not in used), None)
        if partner is None:
            unmatched.append(low)
        else:
            used.add(partner)
            pairs.append((low, highs[partner]))
    unmatched += [highs[s] for s in highs if s not in used]
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
        raise UserError(f"{root}: {len(unmatched)} file(s) without a partner: {shown}; every image in "
                        f"{os.path.basename(low_dir)}/ needs one in {os.path.basename(high_dir)}/ "
                        f"(same name, or lowXXX ↔ normalXXX)")
    return sorted(pairs, key=lambda p: os.path.basename(p[0]))


def _size_error(low: str, high: str, ls: tuple[int, int], hs: tuple[int, int]) -> UserError:
    return UserError(f"{low} is {ls[0]}x{ls[1]} but {high} is {hs[0]}x{hs[1]}; a pair must have the same size")


class PairedDataset(Dataset):
    """Items ``(low (3,H,W), high (3,H,W), name, index)``, float32 in [0, 1]; ``name`` = low file name.

    ``patch_size``: the same random crop of both (reflect-padded first if smaller).
    ``augment``: the same random transform of :mod:`datasets.augment` (8 modes) on both.
    ``size_check``: check all pair sizes up front from file headers (a mismatch is always an error
    when a pair is loaded). ``cache``: keep decoded pairs in memory, 8-bit images as uint8 (2·3·H·W bytes
    per pair; crops and augmentation run on those, only the patch is converted to float).
    """

    def __init__(self, root: str, patch_size: int | None = None, augment: bool = False,
                 size_check: bool = True, cache: bool = False) -> None:
        self.root, self.patch_size, self.augment = root, patch_size, augment
        self.pairs = find_pairs(root)
        self.cache = cache
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if size_check:
            self.check_sizes()

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        """File names of the low-light images."""
        return [os.path.basename(low) for low, _ in self.pairs]

    @property
    def gt_names(self) -> list[str]:
        """File names of the ground-truth images (LOL-v2 real: ``normalXXXXX.png``), which the reference's
        test script gives its outputs."""
        return [os.path.basename(high) for _, high in self.pairs]

    def check_sizes(self) -> None:
        """Raise :class:`UserError` naming both files for the first pair whose sizes differ."""
        for low, high in self.pairs:
            ls, hs = image_size(low), image_size(high)
            if ls != hs:
                raise _size_error(low, high, ls, hs)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The full pair ``index`` (no crop/augmentation), float32."""
        low, high = self.stored(index)
        return unpack_8bit(low), unpack_8bit(high)

    def stored(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair ``index`` as cached (uint8 for 8-bit files, else float32), read and cached on a miss."""
        if index in self._cache:
            return self._cache[index]
        low_path, high_path = self.pairs[index]
        low, high = read_image_tensor(low_path, keep_8bit=True), read_image_tensor(high_path, keep_8bit=True)
        if low.shape != high.shape:
            raise _size_error(low_path, high_path, (low.shape[2], low.shape[1]), (high.shape[2], high.shape[1]))
        if self.cache:
            self._cache[index] = (low, high)
        return low, high

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str, int]:
        low, high = self.stored(index)
        if self.patch_size:
            if min(low.shape[-2:]) < self.patch_size:  # padded by reflection: in float
                low, high = unpack_8bit(low), unpack_8bit(high)
            low, high = paired_random_crop(low, high, self.patch_size)
        if self.augment:
            mode = random_mode()
            low, high = apply_augment(low, mode), apply_augment(high, mode)
        return (unpack_8bit(low).contiguous(), unpack_8bit(high).contiguous(), os.path.basename(self.pairs[index][0]),
                index)


def paired_random_crop(low: torch.Tensor, high: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``size x size`` crop of two (C,H,W) tensors (torch RNG); pads by reflection
    (replication if the image is too small to reflect) on the bottom/right when smaller than ``size``.

    Offsets are drawn as the reference draws them: uniform in [0, H − size) (the last offset, H − size,
    is never drawn), 0 when H == size; the same for W.
    """
    h, w = low.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        low = F.pad(low[None], (0, pw, 0, ph), mode=mode)[0]
        high = F.pad(high[None], (0, pw, 0, ph), mode=mode)[0]
        h, w = low.shape[-2:]
    top = int(torch.randint(0, h - size, (1,)).item()) if h > size else 0
    left = int(torch.randint(0, w - size, (1,)).item()) if w > size else 0
    return low[:, top:top + size, left:left + size], high[:, top:top + size, left:left + size]

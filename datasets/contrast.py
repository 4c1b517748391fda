"""Positives (normal light, ``root/GT``) and negatives (over/under-exposed, ``root/low``) for SCL-LLE.

Each training step draws ``n`` random files from each folder and resizes every one to
``crop_size x crop_size`` (aspect ratio not kept) with Pillow's LANCZOS filter on the 8-bit image —
the filter the reference selects with ``Image.ANTIALIAS``. Resized images are cached in memory as
uint8 (``3*crop²`` bytes each: 0.44 MB at 384), so every file is decoded once; :meth:`ContrastSet.preload`
decodes them all up front, so a corrupt file stops a training run before it starts, naming the file.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from utils.errors import UserError
from utils.image_io import list_images, read_image_uint8

POSITIVE_DIR = "GT"
NEGATIVE_DIR = "low"


def load_resized(path: str, size: int) -> torch.Tensor:
    """Read ``path`` and resize to ``size x size`` with LANCZOS: uint8 tensor (3, size, size)."""
    img = Image.fromarray(read_image_uint8(path), "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy())


class ImagePool:
    """All images of one folder, resized to ``size`` on first use and cached (uint8)."""

    def __init__(self, folder: str, size: int, cache: bool = True) -> None:
        if not os.path.isdir(folder):
            raise UserError(f"{folder}: folder not found; create it and put images in it")
        self.files = list_images(folder, recursive=False)
        if not self.files:
            raise UserError(f"{folder}: no images found; add .png/.jpg images")
        self.size, self.cache = size, cache
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def get(self, i: int) -> torch.Tensor:
        """Image ``i`` as uint8 (3, size, size)."""
        if i in self._cache:
            return self._cache[i]
        t = load_resized(self.files[i], self.size)
        if self.cache:
            self._cache[i] = t
        return t

    def preload(self) -> None:
        """Decode and cache every image now (a corrupt file raises :class:`UserError` naming it)."""
        for i in range(len(self.files)):
            self.get(i)

    def draw(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[int]]:
        """``n`` random images (distinct if ``n <= len``), float32 (n, 3, size, size) in [0, 1], and their
        indices."""
        if n <= len(self.files):
            idx = torch.randperm(len(self.files), generator=generator)[:n]
        else:
            idx = torch.randint(0, len(self.files), (n,), generator=generator)
        ids = [int(i) for i in idx]
        return torch.stack([self.get(i) for i in ids]).float().div_(255.0), ids


class ContrastSet:
    """``sample(n)`` → ``(P, Q)``: n positives from ``root/GT`` and n negatives from ``root/low``."""

    def __init__(self, root: str, crop_size: int = 384, cache: bool = True) -> None:
        if not os.path.isdir(root):
            raise UserError(f"{root}: contrast folder not found; it needs {POSITIVE_DIR}/ (normal light) "
                            f"and {NEGATIVE_DIR}/ (over/under-exposed) sub-folders")
        self.root, self.crop_size = root, crop_size
        self.positives = ImagePool(os.path.join(root, POSITIVE_DIR), crop_size, cache)
        self.negatives = ImagePool(os.path.join(root, NEGATIVE_DIR), crop_size, cache)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, list]:
        """``(P, Q, ids)``: P and Q float32 (n, 3, crop, crop) in [0, 1], driven by ``generator`` (or torch's
        global RNG); ``ids`` = ``[("P", i), ...] + [("Q", j), ...]`` names the images drawn, the keys under
        which :class:`losses.SCLLoss` caches their Gram matrices."""
        (P, pi), (Q, qi) = self.positives.draw(n, generator), self.negatives.draw(n, generator)
        return P, Q, [("P", i) for i in pi] + [("Q", j) for j in qi]

    def preload(self) -> None:
        """Decode every positive and negative now (see :meth:`ImagePool.preload`)."""
        self.positives.preload()
        self.negatives.preload()

    def __repr__(self) -> str:
        return (f"ContrastSet({self.root!r}, crop_size={self.crop_size}, positives={len(self.positives)}, "
                f"negatives={len(self.negatives)})")

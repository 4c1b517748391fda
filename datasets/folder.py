"""Every image of a folder (and its sub-folders) for inference: items ``(image (3,H,W) in [0,1], rel_path)``.

``rel_path`` is relative to ``root`` (e.g. ``"night/001.png"``) so results can be written to the same
relative path under an output folder (SPEC §7, folder-mode inference). ``root`` may also be one image file.
"""
from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset

from utils.errors import UserError
from utils.image_io import is_image_file, list_images, read_image_tensor


class ImageFolder(Dataset):
    """Images under ``root`` (recursively by default), sorted by relative path."""

    def __init__(self, root: str, recursive: bool = True) -> None:
        self.root = root
        if os.path.isfile(root):
            if not is_image_file(root):
                raise UserError(f"{root}: not an image file (.png/.jpg/.jpeg/.bmp/.tif/.tiff)")
            self.base, self.files = os.path.dirname(root), [root]
        else:
            self.base = root
            self.files = list_images(root, recursive=recursive)
            if not self.files:
                raise UserError(f"{root}: no images found; put .png/.jpg images in it or its sub-folders")

    def __len__(self) -> int:
        return len(self.files)

    def relpath(self, index: int) -> str:
        """Path of item ``index`` relative to ``root`` (with ``/`` separators)."""
        return os.path.relpath(self.files[index], self.base or ".").replace(os.sep, "/")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return read_image_tensor(self.files[index]), self.relpath(index)

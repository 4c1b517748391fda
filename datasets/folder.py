"""Every image of a folder (and its sub-folders) for inference: items ``(image (3,H,W) in [0,1], rel_path)``.

``rel_path`` is relative to ``root`` (e.g. ``"night/001.png"``) so results can be written to the same
relative path under an output folder (SPEC §7, folder-mode inference). ``root`` may also be one image file.
Files with an image extension that cannot be enhanced losslessly into the same format (WebP, GIF, ...)
are listed in ``skipped`` so callers can report them.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Executor, Future
from typing import Callable, Iterable, Iterator, TypeVar

import torch
from torch.utils.data import Dataset

from utils.errors import UserError
from utils.image_io import IMG_EXTENSIONS, image_size, is_image_file, list_images, read_image_tensor, walk_folders

# Image formats seen in photo folders that are not read (reported, never silently dropped).
UNSUPPORTED_EXTENSIONS = (".webp", ".gif", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".ppm", ".pgm", ".tga", ".ico",
                          ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw")  # camera raw

T = TypeVar("T")
R = TypeVar("R")


def _unsupported(root: str, recursive: bool) -> list[str]:
    out = []
    for dirpath, filenames in walk_folders(root) if recursive else [(root, os.listdir(root))]:
        out += [os.path.join(dirpath, f) for f in filenames
                if not f.startswith(".") and f.lower().endswith(UNSUPPORTED_EXTENSIONS)]
    return sorted(out)


class ImageFolder(Dataset):
    """Images under ``root`` (recursively by default), sorted by relative path."""

    def __init__(self, root: str, recursive: bool = True) -> None:
        self.root = root
        self.skipped: list[str] = []
        if os.path.isfile(root):
            if not is_image_file(root):
                raise UserError(f"{root}: not an image file ({'/'.join(IMG_EXTENSIONS)}); convert it to PNG")
            self.base, self.files = os.path.dirname(root), [root]
        else:
            self.base = root
            self.files = list_images(root, recursive=recursive)
            self.skipped = _unsupported(root, recursive)
            if not self.files:
                extra = (f" ({len(self.skipped)} file(s) in formats that are not read, e.g. "
                         f"{os.path.basename(self.skipped[0])}: convert them to PNG)") if self.skipped else ""
                raise UserError(f"{root}: no images found; put .png/.jpg images in it or its sub-folders{extra}")

    def __len__(self) -> int:
        return len(self.files)

    def relpath(self, index: int) -> str:
        """Path of item ``index`` relative to ``root`` (with ``/`` separators)."""
        return os.path.relpath(self.files[index], self.base or ".").replace(os.sep, "/")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return read_image_tensor(self.files[index]), self.relpath(index)

    def shard(self, rank: int, world: int) -> list[int]:
        """The indices process ``rank`` of ``world`` handles: every world-th file, disjoint across ranks."""
        return list(range(rank, len(self.files), world))

    def size(self, index: int) -> tuple[int, int] | None:
        """(H, W) of item ``index`` after EXIF orientation, from the file header (no decoding); None if unreadable."""
        try:
            w, h = image_size(self.files[index])
        except UserError:  # reported when the image itself is read
            return None
        return h, w


def same_size_batches(data: ImageFolder, indices: list[int], batch_size: int) -> list[list[int]]:
    """``indices`` grouped into batches of at most ``batch_size`` images of one size (by header), in file
    order of each size's first image; unreadable headers form batches of one."""
    if batch_size <= 1:
        return [[i] for i in indices]
    groups: dict[object, list[int]] = {}
    for i in indices:
        size = data.size(i)
        groups.setdefault(size if size is not None else ("unreadable", i), []).append(i)
    return [g[k:k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]


def ordered_map(pool: Executor | None, fn: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[tuple[T, R | Exception]]:
    """``(item, fn(item))`` in the order of ``items``, computed on ``pool`` up to ``ahead`` items in advance
    (decoding overlaps whatever the caller does meanwhile). An exception is yielded in place of the result.
    ``pool`` None: computed in the caller's thread."""
    def call(item):
        try:
            return fn(item)
        except Exception as e:  # handed to the caller, which reports it
            return e

    if pool is None:
        for item in items:
            yield item, call(item)
        return

    def take(entry: tuple[T, Future]) -> tuple[T, R | Exception]:
        return entry[0], entry[1].result()  # a local of the generator would keep the result alive while it waits

    queue: deque = deque()
    for item in items:
        queue.append((item, pool.submit(call, item)))
        if len(queue) > ahead:
            yield take(queue.popleft())
    while queue:
        yield take(queue.popleft())

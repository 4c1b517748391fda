"""Cityscapes (or darkened Cityscapes) images with fine labels mapped to the 19 train ids.

Layout (SPEC §3)::

    root/leftImg8bit/<split>/<city>/<base>_leftImg8bit.png
    root/gtFine/<split>/<city>/<base>_gtFine_labelIds.png

Label ids are mapped with the standard Cityscapes table (:data:`ID_TO_TRAINID`); every other id → 255.
Training: pad (image 0, label 255) to at least ``crop_size``, random crop, random horizontal flip, all
applied jointly to image and label with torch's RNG. Evaluation: the full image. :meth:`Cityscapes.load`
keeps decoded images in memory (8-bit images as uint8, labels as uint8) up to ``cache_mb``; a training
stage calls it for every item up front, so a corrupt file stops the run before training starts.

EXIF orientation: the image is read upright (its EXIF orientation applied, as every image of the project)
and its label, a map of the *stored* pixels, takes the image's orientation too, so the two stay aligned
pixel for pixel. Cityscapes PNGs carry no orientation (nothing changes for them); a phone photo with one
gets an upright image and label. A label must have the image's stored size.

Exposure references (this project's addition, ``references=True``): an image may have a normally exposed
frame of the same scene, aligned pixel for pixel, at ``root/reference/<split>/<same relative path>`` (the
real brackets that :func:`datasets.sice.add_to_scl` links there). Items then are ``(image, label,
reference)``: the reference cropped and flipped with the image, or all −1 (:data:`NO_REFERENCE`) where an
image has none, so a batch mixes both.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from utils.errors import UserError
from utils.image_io import apply_orientation, exif_orientation, list_images, read_image_tensor, unpack_8bit

IGNORE_INDEX = 255
# labelId → trainId for the 19 evaluated classes (cityscapesScripts ``labels.py``).
ID_TO_TRAINID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
               "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
               "motorcycle", "bicycle")
_LUT = np.full(256, IGNORE_INDEX, dtype=np.int64)
for _id, _train in ID_TO_TRAINID.items():
    _LUT[_id] = _train

NO_REFERENCE = -1.0  # the value of every pixel of an item's reference when its image has none
REFERENCE_DIR = "reference"
IMAGE_SUFFIX = "_leftImg8bit"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def encode_labels(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes label ids (any integer array) → train ids 0..18 / 255, int64, same shape."""
    ids = np.asarray(label_ids).astype(np.int64)
    out = np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
    valid = (ids >= 0) & (ids < 256)
    out[valid] = _LUT[ids[valid]]
    return out


NO_LABELS_HINT = "pass require_labels=False"


def read_label(path: str, hint: str = NO_LABELS_HINT) -> np.ndarray:
    """Read a ``*_gtFine_labelIds.png`` file and map it to train ids: int64 (H, W)."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: label file not found; add it or {hint}")
    try:
        with Image.open(path) as im:
            im.load()
            ids = np.asarray(im)
    except Exception as e:
        raise UserError(f"{path}: cannot read label image ({str(e)[:200]}); replace or remove it") from e
    if ids.ndim != 2:
        raise UserError(f"{path}: label image has {ids.shape[-1]} channels; use the single-channel "
                        f"*{LABEL_SUFFIX} file, not the colour one")
    return encode_labels(ids)


class Cityscapes(Dataset):
    """Items ``(image float32 (3,H,W) in [0,1], label int64 (H,W) with values 0..18 or 255)``.

    ``crop_size`` (int or None) applies only when ``train``. With ``require_labels=False`` a missing
    label file (or a missing ``gtFine`` folder) gives an all-255 label instead of an error; ``hint`` ends
    the message about missing labels (a command-line caller names its flags). ``cache_mb``: memory for
    decoded images (0 = none).
    """

    def __init__(self, root: str, split: str = "train", crop_size: int | None = 384, train: bool = True,
                 require_labels: bool = True, hint: str = NO_LABELS_HINT, cache_mb: float = 0,
                 references: bool = False) -> None:
        self.root, self.split, self.train = root, split, train
        self.crop_size = crop_size
        self.require_labels = require_labels
        self.cache_bytes, self._cache, self._cached_bytes = cache_mb * 2**20, {}, 0
        img_dir = os.path.join(root, "leftImg8bit", split)
        lbl_dir = os.path.join(root, "gtFine", split)
        if not os.path.isdir(img_dir):
            raise UserError(f"{img_dir}: folder not found; expected {os.path.join(root, 'leftImg8bit', split, '<city>', '*' + IMAGE_SUFFIX + '.png')}")
        images = list_images(img_dir, recursive=True)
        if not images:
            raise UserError(f"{img_dir}: no images found; expected <city>/*{IMAGE_SUFFIX}.png files")
        if require_labels and not os.path.isdir(lbl_dir):
            raise UserError(f"{lbl_dir}: label folder not found; add gtFine or {hint}")
        self.files: list[tuple[str, str | None]] = []
        for path in images:
            rel_dir = os.path.relpath(os.path.dirname(path), img_dir)
            stem = os.path.splitext(os.path.basename(path))[0]
            base = stem[: -len(IMAGE_SUFFIX)] if stem.endswith(IMAGE_SUFFIX) else stem
            label = os.path.normpath(os.path.join(lbl_dir, rel_dir, base + LABEL_SUFFIX))
            if not os.path.isfile(label):
                if require_labels:
                    raise UserError(f"{label}: label file not found for {path}; add it or {hint}")
                label = None
            self.files.append((path, label))
        self.references: list[str | None] | None = None
        if references:
            ref_dir = os.path.join(root, REFERENCE_DIR, split)
            if not os.path.isdir(ref_dir):
                raise UserError(f"{ref_dir}: folder of exposure references not found; add the real pairs with "
                                f"python -m datasets.sice --scl_into {os.path.dirname(root.rstrip(os.sep)) or '.'} "
                                f"(or drop --w_expref)")
            self.references = [_reference_of(path, img_dir, ref_dir) for path, _ in self.files]
            if not any(self.references):
                raise UserError(f"{ref_dir}: no image of {img_dir} has a reference of the same relative path")

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The full image float32 (3,H,W) in [0,1] and label int64 (H,W) of item ``index``, cached."""
        return _as_float(*self.stored(index))

    def stored(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` as cached: image uint8 (8-bit files) or float32, label uint8; read and cached
        (while the budget allows) on a miss."""
        if index in self._cache:
            return self._cache[index]
        image, label = self._read(index)
        if self.references is not None and self.references[index] is not None:  # cached as 6 channels
            image = _with_reference(image, self.references[index], self.files[index][0])
        label = label.to(torch.uint8)  # train ids and 255 (ignore)
        size = image.numel() * image.element_size() + label.numel()
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[index] = (image, label)
            self._cached_bytes += size
        return image, label

    def _read(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img_path, lbl_path = self.files[index]
        image = read_image_tensor(img_path, keep_8bit=True)  # uint8 for 8-bit files
        h, w = image.shape[-2:]
        if lbl_path is None:
            label = torch.full((h, w), IGNORE_INDEX, dtype=torch.int64)
        else:
            label = torch.from_numpy(_oriented_label(lbl_path, img_path, h, w))
        return image, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image, label = self.stored(index)
        if self.train:  # crop first: only the crop is converted to float
            image, label = random_crop_flip(image, label, self.crop_size)
        image, label = _as_float(image, label)
        if self.references is None:
            return image, label
        if image.shape[0] == 6:
            return image[:3].contiguous(), label, image[3:].contiguous()
        return image, label, torch.full_like(image, NO_REFERENCE)


def _reference_of(path: str, img_dir: str, ref_dir: str) -> str | None:
    """The reference file of the image ``path`` (same path relative to ``ref_dir``), or None."""
    ref = os.path.join(ref_dir, os.path.relpath(path, img_dir))
    return ref if os.path.isfile(ref) else None


def _with_reference(image: torch.Tensor, ref_path: str, img_path: str) -> torch.Tensor:
    """``image`` (3,H,W) of ``img_path`` with its reference stacked below it (6,H,W), both uint8 when both files
    are 8-bit, else float; the reference must be as large."""
    ref = read_image_tensor(ref_path, keep_8bit=True)
    if ref.shape != image.shape:
        raise UserError(f"{ref_path}: reference is {ref.shape[-1]}x{ref.shape[-2]} but image {img_path} is "
                        f"{image.shape[-1]}x{image.shape[-2]}; a reference must be the same scene, aligned, "
                        f"at the same size")
    if ref.dtype != image.dtype:
        ref, image = unpack_8bit(ref), unpack_8bit(image)
    return torch.cat([image, ref])


def _oriented_label(lbl_path: str, img_path: str, h: int, w: int) -> np.ndarray:
    """The train-id label (H, W) of the image ``img_path`` read upright as (h, w): the label is checked
    against the image's stored size, then given the image's EXIF orientation."""
    ids = read_label(lbl_path)
    orientation = exif_orientation(img_path)
    stored = (w, h) if orientation in (5, 6, 7, 8) else (h, w)  # the transposing orientations
    if ids.shape != stored:
        note = f" as stored (before its EXIF orientation {orientation})" if orientation != 1 else ""
        raise UserError(f"{lbl_path}: label is {ids.shape[1]}x{ids.shape[0]} but image {img_path} is "
                        f"{stored[1]}x{stored[0]}{note}; they must match")
    return apply_orientation(ids, orientation)


def _as_float(image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(image float32 in [0,1], label int64) from the cached forms (uint8 image scaled by 1/255)."""
    return unpack_8bit(image), label.long()


def random_crop_flip(image: torch.Tensor, label: torch.Tensor, crop_size: int | None,
                     flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint pad-if-needed (bottom/right; image 0, label 255) + random crop + random horizontal flip."""
    if crop_size:
        h, w = image.shape[-2:]
        ph, pw = max(0, crop_size - h), max(0, crop_size - w)
        if ph or pw:
            image = torch.nn.functional.pad(image, (0, pw, 0, ph), value=0.0)
            label = torch.nn.functional.pad(label, (0, pw, 0, ph), value=IGNORE_INDEX)
            h, w = image.shape[-2:]
        top = int(torch.randint(0, h - crop_size + 1, (1,)).item())
        left = int(torch.randint(0, w - crop_size + 1, (1,)).item())
        image = image[:, top:top + crop_size, left:left + crop_size]
        label = label[top:top + crop_size, left:left + crop_size]
    if flip and torch.rand(1).item() < 0.5:
        image, label = image.flip(-1), label.flip(-1)
    return image.contiguous(), label.contiguous()

"""How papers compute PSNR / SSIM: the metric conventions selectable in paired evaluation (``--metrics``).

* ``reference`` (the default, the papers this project reproduces): :func:`metrics.image.psnr` /
  :func:`metrics.image.ssim`, scikit-image on 8-bit RGB, SSIM with its 7x7 uniform window;
* ``basicsr_rgb`` (BasicSR's ``calculate_psnr`` / ``calculate_ssim``): PSNR of the RGB values, SSIM with the
  11x11 Gaussian window (σ 1.5) of Wang et al.'s MATLAB release on each channel, averaged;
* ``basicsr_y`` (the same with ``test_y_channel=True``): both on the luma Y of ITU-R BT.601
  (``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` on R, G, B in [0, 1]; Y in [16, 235], not rounded).

Every convention takes ``crop_border``: the pixels left out at each edge before scoring (BasicSR's option,
e.g. the scale factor in super-resolution; 0 here by default). The Gaussian SSIM is scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: its mean over the
map without the 5-pixel rim equals BasicSR's valid-window mean (``tests/test_metrics_conventions.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from metrics.image import psnr as _psnr_reference
from metrics.image import ssim as _ssim_reference

#: ITU-R BT.601 luma weights of R, G, B in [0, 1] (BasicSR's ``rgb2ycbcr(y_only=True)``), and its offset.
BT601_Y = np.array([65.481, 128.553, 24.966])
BT601_OFFSET = 16.0
#: The Gaussian SSIM window: 11x11, σ 1.5 (scikit-image's truncate 3.5 gives radius int(3.5·1.5 + 0.5) = 5).
GAUSSIAN_SIGMA = 1.5
GAUSSIAN_SIDE = 11


def y_channel(img8: np.ndarray) -> np.ndarray:
    """BT.601 luma (H, W, 1) in [16, 235] (float, unrounded) of a uint8 RGB (H, W, 3) image, as BasicSR's
    ``to_y_channel`` (float32 on [0, 1], then scaled back by 255)."""
    rgb = img8.astype(np.float32) / 255.0
    y = (rgb @ BT601_Y + BT601_OFFSET) / 255.0
    return (y.astype(np.float32) * 255.0)[..., None]


def _psnr_255(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB (peak 255) of two equal-shape arrays in float64; inf for identical ones."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 * 255.0 / mse))


def _ssim_gaussian(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM with the 11x11 Gaussian window (σ 1.5, K1 0.01, K2 0.03, data range 255) of (H, W, C) arrays, each
    channel on its own, averaged; the map's 5-pixel rim left out (the valid window)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a.astype(np.float64), b.astype(np.float64), channel_axis=-1, data_range=255,
                                       gaussian_weights=True, sigma=GAUSSIAN_SIGMA, use_sample_covariance=False))


@dataclass(frozen=True)
class Convention:
    """One way of computing PSNR / SSIM of two uint8 (H, W, 3) images (after the crop): ``prepare`` maps each
    image to the array scored, ``psnr`` / ``ssim`` score them; ``ssim_side`` is the smallest side SSIM needs."""

    name: str
    description: str
    prepare: Callable[[np.ndarray], np.ndarray]
    psnr: Callable[[np.ndarray, np.ndarray], float]
    ssim: Callable[[np.ndarray, np.ndarray], float]
    ssim_side: int


CONVENTIONS = {
    "reference": Convention("reference", "PSNR/SSIM on 8-bit RGB (scikit-image, data range 255, SSIM 7x7 uniform "
                            "window)", lambda a: a, _psnr_reference, _ssim_reference, 7),
    "basicsr_rgb": Convention("basicsr_rgb", "PSNR/SSIM on 8-bit RGB as BasicSR (SSIM 11x11 Gaussian window, "
                              "sigma 1.5, per channel, averaged)", lambda a: a, _psnr_255, _ssim_gaussian,
                              GAUSSIAN_SIDE),
    "basicsr_y": Convention("basicsr_y", "PSNR/SSIM on the Y channel of ITU-R BT.601 as BasicSR (test_y_channel; "
                            "SSIM 11x11 Gaussian window, sigma 1.5)", y_channel, _psnr_255, _ssim_gaussian,
                            GAUSSIAN_SIDE),
}
CONVENTION_NAMES = tuple(CONVENTIONS)


def get_convention(name: str) -> Convention:
    """The convention called ``name`` (one of :data:`CONVENTION_NAMES`)."""
    if name not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTION_NAMES)}; got {name!r}")
    return CONVENTIONS[name]


def describe(name: str, crop_border: int = 0) -> str:
    """One line naming convention ``name`` and the crop, for reports and tables."""
    crop = f", {crop_border}-pixel border cropped" if crop_border else ""
    return f"{name}: {get_convention(name).description}{crop}"


class CropTooLarge(ValueError):
    """``crop_border`` leaves nothing of an image."""


def crop(img: np.ndarray, crop_border: int) -> np.ndarray:
    """``img`` without ``crop_border`` pixels at each edge (BasicSR's ``crop_border``)."""
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0; got {crop_border}")
    if 2 * crop_border >= min(img.shape[:2]):
        raise CropTooLarge(f"crop_border {crop_border} leaves nothing of a {img.shape[1]}x{img.shape[0]} image")
    return img[crop_border:img.shape[0] - crop_border, crop_border:img.shape[1] - crop_border]


def scores_8bit(y8: np.ndarray, gt8: np.ndarray, convention: str = "reference", crop_border: int = 0,
                with_ssim: bool = True) -> dict[str, float]:
    """``{"psnr", "ssim"}`` of an 8-bit image against the 8-bit ground truth (uint8 (H, W, 3) each) in
    ``convention`` (:data:`CONVENTIONS`) after cropping ``crop_border`` pixels at each edge; the one place
    evaluation and validation compute them. ``with_ssim=False``: PSNR only (an image smaller than the window)."""
    conv = get_convention(convention)
    a, b = (conv.prepare(crop(np.asarray(x), crop_border)) for x in (gt8, y8))
    figures = {"psnr": conv.psnr(a, b)}
    if with_ssim:
        figures["ssim"] = conv.ssim(a, b)
    return figures

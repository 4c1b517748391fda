"""Full-reference image metrics (SPEC §7) and the 8-bit conversions of the evaluation protocol.

* PSNR / SSIM follow the papers' protocol: 8-bit RGB HxWx3 arrays (rounded like torchvision's
  ``save_image``), scikit-image, data range 255, SSIM with its default 7x7 uniform window.
* :func:`quantise`: the reference test script's 8-bit conversions ("trunc" for the enhancer alone,
  "round_half_even" for the memory output); :func:`psnr_float`: PSNR of float images (data range 1), the
  reference's validation criterion.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

from utils.image_io import to_uint8

ArrayOrTensor = Union[np.ndarray, torch.Tensor]


def _as_uint8(a: ArrayOrTensor) -> np.ndarray:
    """uint8 HxWx3 array as is; a float image tensor through :func:`utils.image_io.to_uint8`."""
    if torch.is_tensor(a):
        return a.detach().cpu().numpy() if a.dtype == torch.uint8 else to_uint8(a)
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 HxWx3 array (use utils.image_io.to_uint8), got dtype {a.dtype}")
    return a


def psnr(a: ArrayOrTensor, b: ArrayOrTensor) -> float:
    """PSNR in dB of two uint8 (H, W, 3) images (skimage, data_range 255); inf for identical images.

    ``a`` is the reference (GT) by convention; PSNR is symmetric. Float (3, H, W) tensors are quantised
    first with :func:`utils.image_io.to_uint8`.
    """
    from skimage.metrics import peak_signal_noise_ratio

    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(_as_uint8(a), _as_uint8(b), data_range=255))


def ssim(a: ArrayOrTensor, b: ArrayOrTensor) -> float:
    """SSIM of two uint8 (H, W, 3) images: skimage ``structural_similarity(channel_axis=-1,
    data_range=255)`` with its default 7x7 uniform window (the papers' protocol)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_as_uint8(a), _as_uint8(b), channel_axis=-1, data_range=255))


QUANTISE_MODES = ("round", "round_half_even", "trunc")


def quantise(y: torch.Tensor, mode: str = "round") -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) float tensor → uint8 (H, W, 3), clamped to [0, 1] first.

    ``"round"``: :func:`utils.image_io.to_uint8` (``x·255 + 0.5`` truncated, as ``save_image``);
    ``"round_half_even"``: ``np.round(x·255)`` in float32 (ties to even: 0.5 → 0, 1.5 → 2), as the
    reference's "mem" images and every image of its memory validation; ``"trunc"``: ``(x·255)`` truncated
    in float32, as the reference's "ori" images.
    """
    if mode == "round":
        return to_uint8(y.clamp(0, 1))
    if mode not in QUANTISE_MODES:
        raise ValueError(f"quantise mode must be one of {', '.join(QUANTISE_MODES)}; got {mode!r}")
    t = y.detach().cpu().float().reshape(-1, *y.shape[-2:]).clamp(0, 1)
    scaled = t.permute(1, 2, 0).numpy() * np.float32(255.0)
    return (np.round(scaled) if mode == "round_half_even" else scaled).astype(np.uint8)


def psnr_float(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two float images in [0, 1] (any equal shapes), data range 1, no quantisation
    (skimage's ``peak_signal_noise_ratio`` on the float arrays, as the reference's validation)."""
    mse = torch.mean((a.detach().double().cpu() - b.detach().double().cpu()) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)

"""No-reference exposure metrics of an enhanced photo (uint8 (H, W, 3)): brightness, clipping, visible noise."""
from __future__ import annotations

import math

import numpy as np

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def brightness(img: np.ndarray) -> float:
    """Mean of a uint8 image over pixels and channels, scaled to [0, 1]."""
    return float(np.asarray(img).mean()) / 255.0


def clipped_fraction(img: np.ndarray, level: int = 254) -> float:
    """Share of pixels of a uint8 (H, W, 3) image with any channel ≥ ``level``, in [0, 1]."""
    return float((np.asarray(img) >= level).any(axis=-1).mean())


def noise_sigma(img: np.ndarray) -> float:
    """Immerkær's noise estimate (1996) of a uint8 (H, W, 3) image's BT.601 luminance Y, in 8-bit levels:
    ``σ = sqrt(π/2) · Σ|Y ∗ M| / (6 (W−2)(H−2))`` with ``M = [[1,−2,1],[−2,4,−2],[1,−2,1]]`` (M annihilates
    flat areas and linear ramps); 0 for images under 3x3 pixels."""
    a = np.asarray(img, dtype=np.float64)
    y = 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
    h, w = y.shape
    if h < 3 or w < 3:
        return 0.0
    conv = sum(_IMMERKAER[i, j] * y[i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3))
    return float(math.sqrt(math.pi / 2) * np.abs(conv).sum() / (6.0 * (w - 2) * (h - 2)))

"""The sRGB transfer curve (IEC 61966-2-1), defined once for the data synthesis (numpy) and the losses (torch)."""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

ArrayOrTensor = Union[np.ndarray, torch.Tensor]


def srgb_to_linear(c: ArrayOrTensor) -> ArrayOrTensor:
    """sRGB-encoded values → linear light in [0, 1]: ``c/12.92`` for ``c <= 0.04045``, else
    ``((c + 0.055)/1.055)^2.4``; values are clamped to [0, 1] first.

    A tensor stays a tensor (any shape, device and dtype; differentiable: the clamp keeps the power's base
    positive, so neither branch's gradient is NaN). Anything else becomes a float32 numpy array.
    """
    if torch.is_tensor(c):
        c, where = c.clamp(0.0, 1.0), torch.where
    else:
        c, where = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0), np.where
    return where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] → sRGB-encoded values in [0, 1], float32 (inverse of :func:`srgb_to_linear`)."""
    lin = np.clip(np.asarray(lin, dtype=np.float32), 0.0, 1.0)
    hi = 1.055 * np.power(np.maximum(lin, 0.0031308), 1.0 / 2.4) - 0.055
    return np.where(lin <= 0.0031308, 12.92 * lin, hi).astype(np.float32)

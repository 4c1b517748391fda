"""Colour metrics of an enhanced image against its input: how much an enhancer changes the colour balance.

Channel proportions ``p_c = x_c / Σ x`` and the colour shift ``Σ_c |p_c(in) − p_c(out)|`` (0 … 2; a grey
image against a pure red one gives 4/3) are defined once, in torch (:func:`proportions`,
:func:`proportion_shift`): the numpy metrics below call them on float64 tensors sharing the arrays'
memory, and the training term :class:`losses.colour.L_balance` on the enhancer's output.

* :func:`colour_shift`: image level, the proportions of the channel means. It weights each region's
  colour by its brightness, in the input by the input's and in the output by the output's: an enhancer
  that brightens dark regions more than bright ones (every tone curve does) moves the image's
  proportions towards the colour of its dark regions while keeping every pixel's colour;
* :func:`pixel_colour_shift`: the mean over pixels of each pixel's own shift, so only the change of
  colour (removed noise counts as one: a dark noisy pixel's proportions are mostly noise);
* :func:`tone_shift`: the image-level shift of an output with the method's per-pixel brightness and the
  input's per-pixel proportions: what the image-level shift would be if no pixel's colour changed.

Images are (H, W, 3) arrays, uint8 or float; black pixels and images count as grey (1/3, 1/3, 1/3).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor


def proportions(x: Tensor, dim: int = -1, eps: float = 0.0) -> Tensor:
    """``x_c / (Σ_c x + eps)`` along the channel axis ``dim``, same shape; ``1/C`` where the denominator
    is 0 (a black pixel or image with ``eps`` 0). Differentiable."""
    s = x.sum(dim=dim, keepdim=True) + eps
    return torch.where(s != 0, x / s, 1.0 / x.shape[dim])


def proportion_shift(p_in: Tensor, p_out: Tensor, dim: int = -1) -> Tensor:
    """``Σ_c |p_out − p_in|`` along ``dim`` (0 … 2 for proportions): the colour shift."""
    return (p_out - p_in).abs().sum(dim=dim)


def _float64(img: np.ndarray) -> Tensor:
    """An image as a float64 tensor, sharing the array's memory where it is float64 already."""
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float64))


def channel_proportions(img: np.ndarray) -> np.ndarray:
    """``mean_c / Σ mean`` of an (H, W, 3) image, float64 (3,); (1/3, 1/3, 1/3) for a black image."""
    m = np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return proportions(torch.from_numpy(m)).numpy()


def colour_shift(inp: np.ndarray, out: np.ndarray) -> float:
    """L1 distance between the channel proportions of input and output (0 … 2)."""
    return float(proportion_shift(torch.from_numpy(channel_proportions(inp)),
                                  torch.from_numpy(channel_proportions(out))))


def pixel_proportions(img: np.ndarray) -> np.ndarray:
    """``x_c / Σ x`` of every pixel of an (H, W, 3) image, float64 (H, W, 3); (1/3, 1/3, 1/3) for black."""
    return proportions(_float64(img)).numpy()


def pixel_colour_shift(inp: np.ndarray, out: np.ndarray, q_in: Optional[np.ndarray] = None) -> float:
    """Mean over pixels of the L1 distance between each pixel's channel proportions in input and output (0 … 2).
    ``q_in``: ``pixel_proportions(inp)`` when the caller has it already."""
    q_in = pixel_proportions(inp) if q_in is None else q_in
    return float(proportion_shift(_float64(q_in), proportions(_float64(out))).numpy().mean())


def tone_shift(inp: np.ndarray, out: np.ndarray, q_in: Optional[np.ndarray] = None) -> float:
    """Image-level colour shift of ``q(in) · Σ_c out_c`` (each pixel's input proportions at the output's
    brightness): the part of :func:`colour_shift` that the tone curve makes without changing any colour.
    ``q_in``: ``pixel_proportions(inp)`` when the caller has it already."""
    q_in = pixel_proportions(inp) if q_in is None else q_in
    return colour_shift(inp, q_in * np.asarray(out, dtype=np.float64).sum(axis=-1, keepdims=True))

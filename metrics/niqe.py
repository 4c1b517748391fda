"""NIQE (Mittal, Soundararajan and Bovik, "Making a Completely Blind Image Quality Analyzer", IEEE SPL 2013),
the MATLAB release's definition; lower = more natural.

The image's luminance (Y of MATLAB's ``rgb2ycbcr``, rounded to integers, no border crop) is cut to whole
96x96 blocks. At two scales (the image, then the image halved by MATLAB's antialiased bicubic ``imresize``)
each block gives 18 natural-scene statistics of its MSCN coefficients ``(I − μ) / (σ + 1)`` (``μ``, ``σ``: the
7x7 Gaussian-weighted local mean and deviation): the shape and spread of a generalised Gaussian fitted to the
coefficients, and shape, mean and the two spreads of an asymmetric one fitted to their products with each of
four neighbours. NIQE is the Mahalanobis-like distance between the multivariate Gaussian of the image's
block features and the pristine model:
``sqrt((μ_p − μ)ᵀ pinv((Σ_p + Σ)/2) (μ_p − μ))``.

The pristine model (``metrics/data/niqe_pris_params.npz``: ``mu_pris_param``, ``cov_pris_param``,
``gaussian_window``) is the MATLAB release's ``modelparameters.mat`` as converted by BasicSR; see
``metrics/data/README.md`` for its source and licence. Gives BasicSR's figures (which match MATLAB's, e.g.
5.7296 on BasicSR's ``baboon.png``) to ±0.001: ``tests/test_metrics_niqe.py``. The luminance, the MSCN
coefficients and the halved image are kept in float32 as BasicSR keeps them: in a flat (e.g. black) region
the float32 local mean leaves tiny non-zero coefficients where float64 gives exact zeros, which moves the
fitted spreads (up to 0.06 on a dark LIME photo).
"""
from __future__ import annotations

import functools
import math
import os

import numpy as np

PARAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "niqe_pris_params.npz")
BLOCK = 96
_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))
_SHAPES = np.arange(0.2, 10.001, 0.001)  # the release's grid of generalised-Gaussian shapes


def gamma_fn(x):
    """SciPy's gamma function, imported on first use (``import metrics`` stays free of SciPy)."""
    from scipy.special import gamma

    return gamma(x)


def convolve(*args, **kwargs):
    """SciPy's ``ndimage.convolve``, imported on first use."""
    from scipy.ndimage import convolve as scipy_convolve

    return scipy_convolve(*args, **kwargs)


@functools.lru_cache(maxsize=1)
def _rho() -> np.ndarray:
    """ρ(shape) of the release's shape grid: Γ(2/s)² / (Γ(1/s)·Γ(3/s))."""
    return gamma_fn(2 / _SHAPES) ** 2 / (gamma_fn(1 / _SHAPES) * gamma_fn(3 / _SHAPES))


@functools.lru_cache(maxsize=1)
def pristine_model(path: str = PARAMS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mu (36,), cov (36, 36), gaussian_window (7, 7))`` of the pristine model file."""
    with np.load(path) as p:
        return p["mu_pris_param"].reshape(-1), p["cov_pris_param"], p["gaussian_window"]


def luminance(img: np.ndarray) -> np.ndarray:
    """Y of MATLAB's ``rgb2ycbcr`` (16–235) of a uint8 RGB (H, W, 3) array, rounded, float32 (H, W)."""
    x = np.asarray(img).astype(np.float32) / np.float32(255.0)
    y = ((x.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) + 16.0) / 255.0).astype(np.float32)
    return np.round(y * np.float32(255.0))


def _cubic(d: np.ndarray) -> np.ndarray:
    a = np.abs(d)
    near = (1.5 * a - 2.5) * a * a + 1.0
    far = ((-0.5 * a + 2.5) * a - 4.0) * a + 2.0
    return np.where(a <= 1, near, np.where(a <= 2, far, 0.0))


def resize_matrix(n_in: int, scale: float) -> np.ndarray:
    """The (n_out, n_in) matrix of MATLAB's ``imresize`` along one axis (bicubic, antialiased when
    shrinking, symmetric padding at the borders), ``n_out = ceil(n_in · scale)``."""
    n_out = math.ceil(n_in * scale)
    k = min(scale, 1.0)  # the kernel is stretched by 1 / scale when shrinking (antialiasing)
    width = 4.0 / k
    centre = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinates
    taps = np.floor(centre - width / 2)[:, None] + np.arange(math.ceil(width) + 2)[None, :]
    w = k * _cubic(k * (centre[:, None] - taps))
    w /= w.sum(axis=1, keepdims=True)
    period = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])  # symmetric: edge pixel repeated
    cols = period[(taps.astype(np.int64) - 1) % (2 * n_in)]
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.repeat(np.arange(n_out), taps.shape[1]), cols.ravel()), w.ravel())
    return out


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's ``imresize(img, scale)`` (bicubic, antialiasing) of a 2-D float array."""
    h, w = img.shape
    return resize_matrix(h, scale) @ img @ resize_matrix(w, scale).T


def aggd_fit(x: np.ndarray) -> tuple[float, float, float]:
    """``(shape, left spread, right spread)`` of an asymmetric generalised Gaussian fitted by moment
    matching on the release's shape grid (0.2 … 10, step 0.001). As in the release, a side without values
    has a NaN spread and the shape falls to the grid's first value, 0.2 (the block's NaN features are
    left out of the covariance, its other features still count in the mean)."""
    x = x.ravel()
    neg, pos = x[x < 0], x[x > 0]
    left = np.sqrt(np.mean(neg ** 2)) if neg.size else np.float32(np.nan)
    right = np.sqrt(np.mean(pos ** 2)) if pos.size else np.float32(np.nan)
    if neg.size and pos.size:
        g = left / right
        r = np.mean(np.abs(x)) ** 2 / np.mean(x ** 2)
        r_norm = r * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
        shape = _SHAPES[np.argmin((_rho() - r_norm) ** 2)]
    else:
        shape = _SHAPES[0]
    spread = math.sqrt(gamma_fn(1 / shape) / gamma_fn(3 / shape))
    return float(shape), float(left * spread), float(right * spread)


def block_features(block: np.ndarray) -> list[float]:
    """The 18 statistics of one block of MSCN coefficients (see the module docstring)."""
    shape, left, right = aggd_fit(block)
    feats = [shape, (left + right) / 2]
    for shift in _NEIGHBOURS:
        shape, left, right = aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
        mean = (right - left) * gamma_fn(2 / shape) / gamma_fn(1 / shape)
        feats += [shape, mean, left, right]
    return feats


def _mscn(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    mu = convolve(y, window, mode="nearest")
    sigma = np.sqrt(np.abs(convolve(y * y, window, mode="nearest") - mu * mu))
    return (y - mu) / (sigma + 1)


def niqe_features(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(blocks, 36) features of a luminance image (0–255) cut to whole 96x96 blocks, columns-major block order."""
    rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    y = y[:rows * BLOCK, :cols * BLOCK]
    per_scale = []
    for scale in (1, 2):
        coeffs, b = _mscn(y, window), BLOCK // scale
        per_scale.append([block_features(coeffs[i * b:(i + 1) * b, j * b:(j + 1) * b])
                          for j in range(cols) for i in range(rows)])
        y = (imresize(y / np.float32(255.0), 0.5).astype(np.float32) * np.float32(255.0))
    return np.concatenate([np.asarray(f) for f in per_scale], axis=1)


def niqe(image: np.ndarray) -> float:
    """NIQE of an RGB uint8 (H, W, 3) image (at least 96x96 pixels and two blocks); lower = more natural."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"niqe: image must be a uint8 (H, W, 3) RGB array, got {img.dtype} {img.shape}")
    if (img.shape[0] // BLOCK) * (img.shape[1] // BLOCK) < 2:
        raise ValueError(f"niqe: image must hold at least two {BLOCK}x{BLOCK} blocks, got {img.shape[:2]}")
    mu_p, cov_p, window = pristine_model()
    feats = niqe_features(luminance(img), window)
    mu = np.nanmean(feats, axis=0)
    cov = np.cov(feats[~np.isnan(feats).any(axis=1)], rowvar=False)
    d = mu_p - mu
    return float(math.sqrt(d @ np.linalg.pinv((cov_p + cov) / 2) @ d))

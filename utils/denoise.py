"""Noise removal after the curves (``--denoise S``): the noise a tone curve amplifies in a dark photo.

A curve that brightens a dark pixel k times brightens its sensor noise k times too, and most of what shows is
*chroma* noise: coloured blotches on flat regions. :func:`denoise_8bit` runs OpenCV's non-local means
(``cv2.fastNlMeansDenoising``, Buades et al. 2005) on the enhanced 8-bit image in YCrCb (BT.601, OpenCV's
8-bit full-range form), luma and chroma apart, with strengths set from that image's own noise level ``σ``
(Immerkær's estimator on its luma, :func:`metrics.noise_sigma`, in 8-bit levels):

* luma Y: ``h = LUMA · S · σ`` (light: the detail is in Y),
* chroma Cr/Cb (together): ``h = CHROMA · S · σ`` (strong: the blotches are there).

YCrCb rather than CIELAB (OpenCV's ``fastNlMeansDenoisingColored``): smoothing a/b at fixed L changes the
BT.601 luma of dark saturated pixels, which *raised* the luma noise of dark flat patches; smoothing Cr/Cb
leaves Y as it is.

So a clean photo (small σ) is left almost untouched and a noisy one is smoothed more, without a
per-photo setting. ``S = 0`` is off: the output is the enhancer's, bit for bit. The weights were chosen on
the synthetic held-out pairs and the sice-pairs validation part (``docs/quality.md``, "Noise option").
"""
from __future__ import annotations

import numpy as np
import torch

LUMA, CHROMA = 0.75, 2.0          # h = LUMA·S·σ on Y, CHROMA·S·σ on Cr/Cb
TEMPLATE, SEARCH = 5, 15          # patch and search window of the non-local means (pixels)


def denoise_8bit(img: np.ndarray, strength: float = 1.0, sigma: float | None = None) -> np.ndarray:
    """``img`` (uint8 HxWx3 RGB) with its noise removed at ``strength`` (0: ``img`` itself). ``sigma``: the
    noise level to use (default: measured on ``img``)."""
    if strength < 0:
        raise ValueError(f"denoise strength {strength}: must be >= 0")
    if strength == 0 or img.shape[0] < 3 or img.shape[1] < 3:
        return img
    import cv2

    from metrics.exposure import noise_sigma

    s = noise_sigma(img) if sigma is None else float(sigma)
    h, h_color = LUMA * strength * s, CHROMA * strength * s
    if h_color <= 0:
        return img
    ycc = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2YCrCb)
    y = ycc[..., 0].copy()
    if h > 0:
        y = cv2.fastNlMeansDenoising(y, None, h, TEMPLATE, SEARCH)
    crcb = cv2.fastNlMeansDenoising(np.ascontiguousarray(ycc[..., 1:]), None, h_color, TEMPLATE, SEARCH)
    return cv2.cvtColor(np.dstack([y, crcb]), cv2.COLOR_YCrCb2RGB)


def denoise_tensor(y: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """:func:`denoise_8bit` of each image of ``y`` ((N,)3,H,W floats in [0, 1]); the result is the 8-bit
    image as floats (k/255) on ``y``'s device. ``strength`` 0 returns ``y`` itself."""
    if strength == 0:
        return y
    from utils.image_io import to_uint8

    batch = y if y.dim() == 4 else y[None]
    outs = [torch.from_numpy(denoise_8bit(to_uint8(im.detach().float().cpu()), strength)).permute(2, 0, 1)
            for im in batch]
    out = torch.stack(outs).to(device=y.device, dtype=y.dtype).div_(255.0)
    return out if y.dim() == 4 else out[0]

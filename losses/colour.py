"""This project's colour terms (not in SCL-LLE or Zero-DCE): per-cell chromaticity and image-level balance.

:class:`L_balance` is the colour shift of :mod:`metrics.colour` (the same functions) as a training term;
:class:`L_chroma` decodes sRGB with :func:`utils.colour.srgb_to_linear` for its linear-light variant.
"""
from __future__ import annotations

from torch import Tensor, nn

from metrics.colour import proportion_shift, proportions
from utils.colour import srgb_to_linear


class L_chroma(nn.Module):
    """Chromaticity consistency (this project's addition, not in SCL-LLE or Zero-DCE).

    c(x) = p / Σ_c p (:func:`metrics.colour.proportions`) with p = avgpool_patch(x) (the pooling averages
    out sensor noise); returns
    mean |c(E) − c(I)| over N, channels and cells, a scalar. The curves then keep each pixel's hue and
    saturation of the input while brightening it: without VGG terms nothing else in the SCL-LLE
    total ties the three curve maps together (``L_color`` pulls every image towards grey).
    ``weighting="brightness"`` weights each cell by the output's brightness Σ_c p(E) (normalised per
    image, the weights not differentiated): bright cells, where clipping a channel shifts the colour and
    where a colour shift shows, count most, and dark cells, whose chromaticity is mostly noise, least.
    ``space="linear"`` undoes the sRGB curve of I and E before pooling, so the chromaticity kept is that of
    linear light. A change of exposure scales linear light and keeps its chromaticity, but the sRGB
    curve's linear toe and offset make dark pixels more saturated in sRGB proportions than the same
    scene well exposed; keeping linear chromaticity lets the curves desaturate dark pixels as a longer
    exposure would, while bright pixels (on the power-law part of the curve) keep their sRGB proportions.
    ``linear_share`` t in [0, 1] (``space="linear"`` only): the loss is t · (linear-light term) +
    (1 − t) · (sRGB term), a compromise between the two.
    ``linear_fade=(a, b)`` (``space="linear"``, uniform weighting): each cell's share fades from t to 0
    as its input's brightest channel v goes from a to b, t · clamp((b − v) / (b − a), 0, 1): dark cells,
    where the sRGB toe distorts the proportions (and chroma noise is worst), keep linear chromaticity,
    brighter ones their sRGB colour.
    I, E: (N,3,H,W) in [0,1].
    """

    def __init__(self, patch_size: int = 4, eps: float = 1e-4, weighting: str = "uniform",
                 space: str = "srgb", linear_share: float = 1.0,
                 linear_fade: tuple[float, float] | None = None) -> None:
        super().__init__()
        if weighting not in ("uniform", "brightness"):
            raise ValueError(f"weighting {weighting!r}: uniform or brightness")
        if space not in ("srgb", "linear"):
            raise ValueError(f"space {space!r}: srgb or linear")
        if not 0.0 <= linear_share <= 1.0:
            raise ValueError(f"linear_share {linear_share}: must be in [0, 1]")
        if linear_fade is not None:
            if space != "linear" or weighting != "uniform":
                raise ValueError("linear_fade needs space='linear' and uniform weighting")
            if not 0.0 <= linear_fade[0] < linear_fade[1]:
                raise ValueError(f"linear_fade {tuple(linear_fade)}: need 0 <= a < b")
        self.fade = None if linear_fade is None else (float(linear_fade[0]), float(linear_fade[1]))
        self.pool = nn.AvgPool2d(patch_size)
        self.eps, self.weighting = float(eps), weighting
        self.linear_share = float(linear_share) if space == "linear" else 0.0  # sRGB space: share 0

    def forward(self, I: Tensor, E: Tensor) -> Tensor:
        t = self.linear_share  # a term whose weight is 0 is not computed
        if self.fade is not None and t > 0:
            a, b = self.fade
            pi = self.pool(I)
            tc = t * ((b - pi.amax(dim=1, keepdim=True)) / (b - a)).clamp(0.0, 1.0)
            lin = self._err(self.pool(srgb_to_linear(I)), self.pool(srgb_to_linear(E)))[0]
            return (tc * lin + (1.0 - tc) * self._err(pi, self.pool(E))[0]).mean()
        lin = self._term(srgb_to_linear(I), srgb_to_linear(E)) if t > 0 else 0.0
        srgb = self._term(I, E) if t < 1 else 0.0
        return t * lin + (1.0 - t) * srgb

    def _err(self, pi: Tensor, pe: Tensor) -> tuple[Tensor, Tensor]:
        """From pooled input and output cells: |c(E) − c(I)| per channel and cell (N,3,h,w), and the output
        cells' sums Σ_c p(E) (N,1,h,w)."""
        ci = proportions(pi, dim=1, eps=self.eps).detach()
        return (proportions(pe, dim=1, eps=self.eps) - ci).abs(), pe.sum(dim=1, keepdim=True)

    def _term(self, I: Tensor, E: Tensor) -> Tensor:
        err, se = self._err(self.pool(I), self.pool(E))
        if self.weighting == "uniform":
            return err.mean()
        w = se.detach() / (se.detach().sum(dim=(2, 3), keepdim=True) + self.eps)  # sums to 1 per image
        return (err * w).sum() / (I.shape[0] * I.shape[1])


class L_balance(nn.Module):
    """Image-level colour balance (this project's addition, not in SCL-LLE or Zero-DCE).

    P(x) = m / Σ_c m with m the per-channel mean of the whole image; returns the batch mean of
    Σ_c |P(E) − P(I)| (:func:`metrics.colour_shift`, the same functions), I's proportions held fixed.
    Brightening dark regions more than bright ones moves the image's proportions towards the dark
    regions' colour even when every pixel keeps its own (``L_chroma`` keeps those); this term asks
    the curves to keep the image's overall colour balance as well. I, E: (N,3,H,W) in [0,1].
    """

    def __init__(self, eps: float = 1e-4, colour_only: bool = False) -> None:
        super().__init__()
        self.eps, self.colour_only = float(eps), bool(colour_only)

    def forward(self, I: Tensor, E: Tensor) -> Tensor:
        if self.colour_only:  # same value; no gradient through each pixel's brightness Σ_c E
            s = E.sum(dim=1, keepdim=True)
            E = E / (s + self.eps) * s.detach()
        pi = proportions(I.mean(dim=(2, 3)), dim=1, eps=self.eps).detach()
        return proportion_shift(pi, proportions(E.mean(dim=(2, 3)), dim=1, eps=self.eps), dim=1).mean()

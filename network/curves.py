"""Curve control at test time (``--strength``, ``--exposure``): DCE-Net's curve maps scaled by one number per
image, without retraining.

DCE-Net brightens with eight light-enhancement curves ``LE(y) = y + r·(y² − y)``, one curve parameter per
pixel, channel and step (the maps ``r`` (N, 24, H, W) in [−1, 1]). Scaling every map by ``s`` — ``r' =
clamp(s·r, −1, 1)``, the clamp keeping each curve monotone and inside [0, 1] — makes the same curves
weaker (``s < 1``) or stronger (``s > 1``): ``s = 0`` is the input itself, ``s = 1`` the model's own output.

* ``--strength S`` uses ``s = S`` for every image (1: the model's output bit for bit, through the
  unchanged path).
* ``--exposure E`` finds, for each image, the ``s`` in [:data:`S_MIN`, :data:`S_MAX`] whose output has mean brightness
  E (mean over pixels and channels of the clamped output, :func:`metrics.brightness`): bisection in
  :data:`STEPS` steps on the image subsampled to at most :data:`SOLVE_PIXELS` pixels (the maps are computed
  once; only the cheap curve steps repeat). Where the maps brighten (``r ≤ 0``: ``y² − y ≤ 0``, DCE-Net's usual case) each
  output pixel grows with ``s``, so the brightness does too and the solution is unique. A negative ``s``
  turns the curves into darkening ones, for an E below the input's own brightness; an E the curves cannot
  reach gives the nearest end.
"""
from __future__ import annotations

import math

import torch

S_MIN, S_MAX = -1.0, 4.0
STEPS = 24
SOLVE_PIXELS = 1 << 16


def apply_curves(x: torch.Tensor, r: torch.Tensor, s: torch.Tensor | float | None = None) -> torch.Tensor:
    """The eight curve steps on ``x`` (N,3,H,W) with maps ``r`` (N,24,H,W), each image's maps scaled by ``s``
    ((N,) or a number; None: unscaled) and clamped to [−1, 1]. Float32 arithmetic; not clamped."""
    r = r.float()
    if s is not None:
        s = torch.as_tensor(s, dtype=torch.float32, device=r.device).reshape(-1, 1, 1, 1)
        r = (r * s).clamp_(-1.0, 1.0)
    y = x.float()
    for r_i in torch.split(r, 3, dim=1):
        y = y + r_i * (y * y - y)
    return y


def apply_curves_in_place(x: torch.Tensor, r: torch.Tensor, s: torch.Tensor | float | None = None) -> torch.Tensor:
    """:func:`apply_curves` with the same arithmetic, for inference without gradients: ``r`` (consumed) is scaled
    in place when ``s`` is given, and the steps run in place on a channels-last float32 copy of ``x``, reading
    ``r`` in its channels-last layout without copies (DCE-Net's ``final_image`` and the curve controls)."""
    n, _, h, w = x.shape
    r = r.float()
    if s is not None:
        r.mul_(torch.as_tensor(s, dtype=torch.float32, device=r.device).reshape(-1, 1, 1, 1)).clamp_(-1.0, 1.0)
    rs = r.permute(0, 2, 3, 1).reshape(n, h, w, 8, 3)
    y = x.permute(0, 2, 3, 1).float().contiguous()
    for i in range(8):
        y = y.mul(y).sub_(y).mul_(rs[..., i, :]).add_(y)  # = y + r_i·(y² − y), apply_curves's rounding
    return y.permute(0, 3, 1, 2)


CLIP_LEVEL = 254  # an 8-bit channel at or above it counts as clipped (metrics.exposure.clipped_fraction)


def clipped_share(y: torch.Tensor) -> torch.Tensor:
    """Per image (N,), the share of pixels of ``y`` (N,3,H,W) whose 8-bit value (``lowlight_test.py``'s
    rounding, ``y·255 + 0.5`` truncated) reaches :data:`CLIP_LEVEL` in any channel."""
    return (y * 255.0 + 0.5 >= CLIP_LEVEL).any(dim=1).float().mean(dim=(1, 2))


@torch.no_grad()
def solve_strength(x: torch.Tensor, r: torch.Tensor, exposure: float, steps: int = STEPS, s_min: float = S_MIN,
                   s_max: float = S_MAX, pixels: int = SOLVE_PIXELS, guard: float | None = None) -> torch.Tensor:
    """Per image (N,), the scale ``s`` in [s_min, s_max] of the maps ``r`` whose clamped output of ``x`` has mean
    brightness ``exposure`` (bisection on a subsample of at most ``pixels`` pixels; see the module).

    ``guard`` (a share of pixels, e.g. 0.005; None: off) protects highlights: where that ``s`` is above 1 and
    its output clips more than ``guard`` more pixels (:func:`clipped_share`) than the model's own output
    (``s = 1``), ``s`` is lowered to the largest value in [1, s] that clips at most that many (a second
    bisection). The guard never darkens below the model's own output, and changes nothing where ``s ≤ 1``."""
    h, w = x.shape[-2:]
    stride = max(1, math.ceil(math.sqrt(h * w / pixels)))
    xs, rs = x[..., ::stride, ::stride].float(), r[..., ::stride, ::stride].float()
    lo = torch.full((x.shape[0],), float(s_min), device=x.device)
    hi = torch.full_like(lo, float(s_max))
    for _ in range(steps):
        mid = (lo + hi) / 2
        dark = apply_curves(xs, rs, mid).clamp_(0, 1).mean(dim=(1, 2, 3)) < exposure
        lo, hi = torch.where(dark, mid, lo), torch.where(dark, hi, mid)
    s = (lo + hi) / 2
    if guard is None:
        return s
    limit = clipped_share(apply_curves(xs, rs, 1.0)) + guard
    over = (s > 1) & (clipped_share(apply_curves(xs, rs, s)) > limit)
    if not bool(over.any()):
        return s
    lo, hi = torch.ones_like(s), s.clone()
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = clipped_share(apply_curves(xs, rs, mid)) <= limit
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return torch.where(over, lo, s)

"""Zero-DCE's non-reference terms (colour constancy, spatial consistency, exposure, illumination smoothness)
as SCL-LLE's ``Myloss.py`` has them (SPEC §2): reference names, call signatures and values.

Images are float tensors (N, C, H, W) in [0, 1]; every constant follows the input's device and dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class L_color(nn.Module):
    """Colour constancy: x (N,3,H,W) → k (N,1,1,1), k = sqrt((m_r−m_g)⁴ + (m_r−m_b)⁴ + (m_b−m_g)⁴).

    Values and gradients are the reference's, except where the three channel means are equal (a grey or
    all-black crop, common in real dark frames): there the reference's ``pow(0, 0.5)`` back-propagates
    ``inf · 0 = NaN`` and stops training; here the gradient is 0, its limit (k is quadratic in the
    differences there)."""

    def forward(self, x: Tensor) -> Tensor:
        mr, mg, mb = torch.split(x.mean(dim=(2, 3), keepdim=True), 1, dim=1)
        drg, drb, dgb = (mr - mg) ** 2, (mr - mb) ** 2, (mb - mg) ** 2
        s = drg ** 2 + drb ** 2 + dgb ** 2
        positive = s > 0
        return torch.where(positive, torch.pow(torch.where(positive, s, torch.ones_like(s)), 0.5), s)  # 0, or NaN


class L_spa(nn.Module):
    """Spatial consistency (Zero-DCE): returns the per-location map E (N,1,H//4,W//4), not reduced.

    Channel means of ``org`` and ``enhance`` are 4x4 average-pooled; for each of the left/right/up/down
    neighbour differences D (3x3 kernels, zero padding 1), E = Σ_dir (D(org) − D(enhance))².
    """

    def __init__(self) -> None:
        super().__init__()
        kernels = {
            "left": [[0, 0, 0], [-1, 1, 0], [0, 0, 0]],
            "right": [[0, 0, 0], [0, 1, -1], [0, 0, 0]],
            "up": [[0, -1, 0], [0, 1, 0], [0, 0, 0]],
            "down": [[0, 0, 0], [0, 1, 0], [0, -1, 0]],
        }
        for name, k in kernels.items():
            self.register_buffer(f"weight_{name}", torch.tensor(k, dtype=torch.float32)[None, None], persistent=False)
        self.pool = nn.AvgPool2d(4)

    def forward(self, org: Tensor, enhance: Tensor) -> Tensor:
        org_pool = self.pool(org.mean(dim=1, keepdim=True))
        enh_pool = self.pool(enhance.mean(dim=1, keepdim=True))
        out = torch.zeros_like(enh_pool)
        for name in ("left", "right", "up", "down"):
            w = getattr(self, f"weight_{name}").to(enh_pool)
            out = out + (F.conv2d(org_pool, w, padding=1) - F.conv2d(enh_pool, w, padding=1)) ** 2
        return out


class L_exp(nn.Module):
    """Exposure control on m = avgpool_patch(mean_c(x)) (N,1,H/patch,W/patch) → scalar.

    ``variant="scl"`` (default, SCL-LLE's file): mean((clamp(m,0,.55)−level)²) + mean((clamp(m,.55,1)−level)²);
    ``variant="zero_dce"`` (Zero-DCE's original): mean((m−level)²). Each patch mean enters one unclamped term
    and the other is the constant (0.55−level)², so the two differ by that constant and have the same
    gradient (except for means exactly at 0.55).
    """

    VARIANTS = ("scl", "zero_dce")

    def __init__(self, patch_size: int, mean_val: float, variant: str = "scl") -> None:
        super().__init__()
        if variant not in self.VARIANTS:
            raise ValueError(f"L_exp variant {variant!r} is not one of {', '.join(self.VARIANTS)}")
        self.pool = nn.AvgPool2d(patch_size)
        self.mean_val = float(mean_val)
        self.variant = variant

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """``keep`` (N,) bool, optional: the items that count; the others add 0 and still count in the mean
        over the batch (None: every item, the reference)."""
        m = self.pool(x.mean(dim=1, keepdim=True))
        if self.variant == "zero_dce":
            sq = (m - self.mean_val) ** 2
        else:
            low, high = m.clamp(0.0, 0.55), m.clamp(0.55, 1.0)
            sq = (low - self.mean_val) ** 2 + (high - self.mean_val) ** 2
        if keep is not None:
            sq = sq * keep.to(sq.dtype).view(-1, 1, 1, 1)
        return torch.mean(sq)


class L_exp_ref(nn.Module):
    """Exposure towards a reference (this project's addition): x, ref (N,3,H,W) → scalar
    Σ_n valid_n · mean((avgpool(mean_c(x_n)) − avgpool(mean_c(ref_n)))²) / N, the mean over patches of
    ``patch_size`` pixels. An item whose reference is negative (``datasets.cityscapes.NO_REFERENCE``, no
    reference) has valid_n = 0: it adds 0 and still counts in N, so the term's scale follows the share of
    the batch that has references. The reference is a target: no gradient flows into it. ``relative``: both
    sides' patch means are divided by their image's mean patch mean first, so the term asks for the
    reference's pattern of light and shade and leaves the overall level to the other terms."""

    def __init__(self, patch_size: int, relative: bool = False) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(patch_size)
        self.relative = relative

    @staticmethod
    def has_reference(ref: Tensor) -> Tensor:
        """(N,) bool: the items of ``ref`` (N,3,H,W) that have a reference."""
        return ref.flatten(1).amin(dim=1) >= 0

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        ref = ref.detach()
        valid = self.has_reference(ref).to(x.dtype).view(-1, 1, 1, 1)
        m = self.pool(x.mean(dim=1, keepdim=True))
        target = self.pool(ref.clamp(min=0).mean(dim=1, keepdim=True)).to(m.dtype)
        if self.relative:  # each image's patch means over their mean: the pattern, not the level
            m = m / m.mean(dim=(2, 3), keepdim=True).clamp(min=1e-3)
            target = target / target.mean(dim=(2, 3), keepdim=True).clamp(min=1e-3)
        return torch.mean(valid * (m - target) ** 2)


class L_TV(nn.Module):
    """Illumination smoothness of the curve maps A (N,C,H,W) → scalar.

    w·2·(Σ(A[:,:,1:,:]−A[:,:,:-1,:])² / ((H−1)·W) + Σ(A[:,:,:,1:]−A[:,:,:,:-1])² / (H·(W−1))) / N.
    """

    def __init__(self, TVLoss_weight: float = 1) -> None:
        super().__init__()
        self.TVLoss_weight = TVLoss_weight

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        h_tv = ((x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2).sum()
        w_tv = ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).sum()
        return self.TVLoss_weight * 2 * (h_tv / ((h - 1) * w) + w_tv / (h * (w - 1))) / n

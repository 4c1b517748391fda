"""EMNet's supervised objective (SPEC §5): SSIM (piq) + LPIPS (AlexNet) + L1 + L2 against the ground truth."""
from __future__ import annotations

import torch
from torch import nn

from metrics.lpips import build_lpips, lpips_distance


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 − SSIM(x, y) for (N, 3, H, W) in [0, 1] → scalar tensor, differentiable; piq's ``ssim`` as the
    reference uses it: 11x11 Gaussian window σ 1.5, no padding, data range 1, and for a shorter side
    ≥ 384 both images average-pooled by f = round(min(H, W) / 256) first; mean over channels and batch."""
    import piq

    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):  # piq asserts on NaN: let the NaN guard see it
        return (x.sum() + y.sum()) * float("nan")
    return 1.0 - piq.ssim(x, y, data_range=1.0, reduction="mean", downsample=True)


class SupervisedLoss(nn.Module):
    """Weighted SSIM/LPIPS/L1/L2 terms (0 turns a term off); returns ``{name: weighted term}``.

    ``forward(y, gt)``: y the raw enhancer output (N,3,H,W), clamped to [0, 1] here as in the reference
    (pixels outside get no gradient); gt in [0, 1]. LPIPS gets the [0, 1] images as the reference does
    (the ``lpips`` package's ``normalize=False``) unless ``lpips_normalize`` rescales them to [-1, 1].
    Building LPIPS needs the AlexNet file in the torch cache (:class:`utils.errors.UserError` otherwise).
    """

    TERMS = ("ssim", "lpips", "l1", "l2")

    def __init__(self, ssim: float = 1.0, lpips: float = 1.0, l1: float = 0.0, l2: float = 0.0,
                 lpips_normalize: bool = False, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.w = {k: float(v) for k, v in zip(self.TERMS, (ssim, lpips, l1, l2)) if v}
        if not self.w:
            raise ValueError("SupervisedLoss: every weight is 0")
        self.lpips = build_lpips(device or "cpu") if "lpips" in self.w else None
        self.lpips_normalize = bool(lpips_normalize)

    def forward(self, y: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        t, y = {}, y.clamp(0, 1)
        if "ssim" in self.w:
            t["ssim"] = self.w["ssim"] * ssim_loss(y, gt)
        if "lpips" in self.w:
            t["lpips"] = self.w["lpips"] * lpips_distance(self.lpips, y, gt, self.lpips_normalize).mean()
        if "l1" in self.w:
            t["l1"] = self.w["l1"] * nn.functional.l1_loss(y, gt)
        if "l2" in self.w:
            t["l2"] = self.w["l2"] * nn.functional.mse_loss(y, gt)
        return t

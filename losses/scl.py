"""SCL-LLE's own terms without VGG (SPEC §2): brightness contrast, semantic brightness consistency and the
frozen segmentation net's cross-entropy, with the reference names, call signatures and values.

Shapes: N batch, C channels, H x W pixels; images are float tensors in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from network.imagenet import imagenet_normalize


class L_con(nn.Module):
    """Brightness distance: a, b (N,C,H,W) → scalar mean(|mean_c(a) − mean_c(b)|)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.mean(torch.abs(a.mean(dim=1, keepdim=True) - b.mean(dim=1, keepdim=True)))


def contrastive_loss(E: Tensor, P: Tensor, Q: Tensor, margin: float = 0.3) -> Tensor:
    """max(L_con(E, P) − L_con(E, Q) + margin, 0): E closer to positives P than to negatives Q. Scalar."""
    con = L_con()
    return torch.clamp(con(E, P) - con(E, Q) + margin, min=0)


class L_segexp(nn.Module):
    """Semantic brightness consistency: x (N,3,H,W) images, y (N,H,W) integer labels → scalar.

    Default (``per_image=False``) reproduces the reference exactly. With x̄ = mean_c(x) (N,1,H,W) and
    for every class id i in 0..num_classes−1 (35 in the reference):
    ``a = where(y == i, x̄, 0)`` — (N,H,W) broadcast against (N,1,H,W) gives (N,N,H,W), a[p,q] = x̄[p]
    where the labels of image q equal i (cross-batch) —; d = mean(a) over all elements, a constant for
    the gradient as in the reference; ``a = where(a == 0, d, a)``; term_i = mean((a − d)²). The loss is
    Σ_i term_i.

    ``per_image=True`` is the corrected variant: each image's own labels select its own pixels. With
    R(n,c) = {pixels of image n with label c}, for every c ≠ ``ignore_index`` (255) present in y[n],
    μ(n,c) = mean of x̄[n] over R(n,c), and the loss is
    Σ_n Σ_c Σ_{p∈R(n,c)} (x̄[n,p] − μ(n,c))² / (N·H·W),
    i.e. the mean over images of Σ_c (|R(n,c)| / (H·W)) · Var(x̄[n] over R(n,c)) — the area-weighted
    within-class variance of brightness, ignored pixels counting 0. No zero-brightness exception.
    """

    def __init__(self, per_image: bool = False, num_classes: int = 35, ignore_index: int = 255) -> None:
        super().__init__()
        self.per_image = per_image
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        xm = x.mean(dim=1, keepdim=True)
        return self._per_image(xm[:, 0], y) if self.per_image else self._reference(xm, y)

    def _reference(self, xm: Tensor, y: Tensor) -> Tensor:
        zeros = torch.zeros(y.shape, dtype=xm.dtype, device=xm.device)
        loss = xm.new_zeros(())
        for i in range(self.num_classes):
            a = torch.where(y == i, xm, zeros)  # (N,N,H,W): labels of image q on brightness of image p
            # the reference subtracts d as a constant (torch.FloatTensor([d])); where d fills the zeros,
            # (d − d) contributes no gradient either, so detaching d is exactly its gradient
            d = torch.mean(a).detach()
            a = torch.where(a == 0, d, a)
            loss = loss + torch.mean((a - d) ** 2)
        return loss

    def _per_image(self, xm: Tensor, y: Tensor) -> Tensor:
        n = xm.shape[0]
        valid = y != self.ignore_index
        if not bool(valid.any()):
            return (xm * 0).sum()
        labels = torch.where(valid, y, torch.zeros_like(y)).long()
        k = int(labels.max()) + 1
        idx = (torch.arange(n, device=y.device).view(n, *([1] * (y.dim() - 1))) * k + labels)[valid]
        vals = xm[valid]
        sums = xm.new_zeros(n * k).index_add(0, idx, vals)
        counts = xm.new_zeros(n * k).index_add(0, idx, torch.ones_like(vals))
        means = sums / counts.clamp(min=1)
        return ((vals - means[idx]) ** 2).sum() / xm.numel()


class SegmentationLoss(nn.Module):
    """Cross-entropy (ignore_index 255) of a frozen segmentation net on the ImageNet-normalised E.

    E (N,3,H,W) in [0,1], y (N,H,W) train ids → scalar. ``seg_net`` maps (N,3,H,W) to logits
    (N,K,H,W) (a dict with ``"out"`` is accepted too). Its parameters are frozen, and this loss is the one
    object that sets its mode, at construction and again on every call (so a container's ``.train()`` or
    ``.eval()`` cannot change it):

    * ``train_mode=False`` (default): eval mode, running statistics never change;
    * ``train_mode=True`` (the reference, SPEC §2): train mode — BatchNorm on batch statistics with
      momentum 0.01 in ``seg_net.backbone`` and 0.1 in ``seg_net.classifier`` (the public port's
      settings), running statistics drifting, the head's Dropout active.

    ``detach=False`` (default, as in the paper): the gradient reaches the enhancer through the frozen
    net. ``detach=True`` reproduces the reference: E is detached, the value carries no gradient.
    """

    def __init__(self, seg_net: nn.Module, detach: bool = False, ignore_index: int = 255,
                 train_mode: bool = False) -> None:
        super().__init__()
        self.seg_net = seg_net.requires_grad_(False)
        self.detach = detach
        self.ignore_index = ignore_index
        self.train_mode = train_mode
        if train_mode:
            for part, momentum in (("backbone", 0.01), ("classifier", 0.1)):
                for m in getattr(seg_net, part, nn.Identity()).modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.momentum = momentum
        self.seg_net.train(train_mode)

    def train(self, mode: bool = True) -> "SegmentationLoss":
        """Sets this module's flag only; the segmentation net keeps the mode chosen by ``train_mode``."""
        self.training = mode
        return self

    def forward(self, E: Tensor, y: Tensor) -> Tensor:
        if self.seg_net.training != self.train_mode:  # e.g. switched by a container it is also registered in
            self.seg_net.train(self.train_mode)
        if self.detach:
            with torch.no_grad():
                return self._ce(E.detach(), y)
        return self._ce(E, y)

    def _ce(self, E: Tensor, y: Tensor) -> Tensor:
        out = self.seg_net(imagenet_normalize(E))
        if isinstance(out, dict):
            out = out["out"]
        return F.cross_entropy(out, y.long(), ignore_index=self.ignore_index)

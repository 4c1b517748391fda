"""SCL-LLE losses (SPEC §2), with the reference class names, call signatures and values.

Shapes: N batch, C channels, H x W pixels. Images are float tensors in [0, 1]; no loss here moves
anything to a fixed device — every constant follows the device and dtype of the input.

VGG16 is loaded by :func:`get_vgg_features` and can be shared by :class:`perception_loss` and
:class:`PerceptualLoss` (pass it as ``vgg``; it is a submodule of each, moved by ``.to()``). Both
losses accept precomputed feature dicts from :class:`VGGFeatures` instead of images, so a training
step can run VGG on E once instead of three times::

    vgg = get_vgg_features(E.device)
    fE = vgg(E)                                   # relu1_2, relu2_2, relu4_3 in one pass
    with torch.no_grad():
        fI, fP, fQ = vgg(I), vgg(P, last="relu2_2"), vgg(Q, last="relu2_2")
    loss = perception_loss(vgg=vgg)(fI, fE) + feature_contrastive_loss(fE, fP, fQ, gram_loss=PerceptualLoss(vgg))
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from network.imagenet import imagenet_normalize
from utils.pretrained import load_pretrained

Features = Dict[str, Tensor]
ImageOrFeatures = Union[Tensor, Features]



def srgb_to_linear(x: Tensor) -> Tensor:
    """IEC 61966-2-1 decoding of sRGB values in [0, 1] (the torch twin of ``datasets.synthesis.srgb_to_linear``)."""
    x = x.clamp(0.0, 1.0)  # the power's base stays positive, so neither branch's gradient is NaN
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


# ----------------------------------------------------------------------------------------------- Zero-DCE
class L_color(nn.Module):
    """Colour constancy: x (N,3,H,W) → k (N,1,1,1), k = sqrt((m_r−m_g)⁴ + (m_r−m_b)⁴ + (m_b−m_g)⁴)."""

    def forward(self, x: Tensor) -> Tensor:
        mr, mg, mb = torch.split(x.mean(dim=(2, 3), keepdim=True), 1, dim=1)
        drg, drb, dgb = (mr - mg) ** 2, (mr - mb) ** 2, (mb - mg) ** 2
        return torch.pow(drg ** 2 + drb ** 2 + dgb ** 2, 0.5)


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

    def forward(self, x: Tensor) -> Tensor:
        m = self.pool(x.mean(dim=1, keepdim=True))
        if self.variant == "zero_dce":
            return torch.mean((m - self.mean_val) ** 2)
        low, high = m.clamp(0.0, 0.55), m.clamp(0.55, 1.0)
        return torch.mean((low - self.mean_val) ** 2) + torch.mean((high - self.mean_val) ** 2)


class L_chroma(nn.Module):
    """Chromaticity consistency (this project's addition, not in SCL-LLE or Zero-DCE).

    c(x) = p / Σ_c p with p = avgpool_patch(x) (the pooling averages out sensor noise); returns
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
        ci = pi / (pi.sum(dim=1, keepdim=True) + self.eps)
        se = pe.sum(dim=1, keepdim=True)
        return (pe / (se + self.eps) - ci.detach()).abs(), se

    def _term(self, I: Tensor, E: Tensor) -> Tensor:
        err, se = self._err(self.pool(I), self.pool(E))
        if self.weighting == "uniform":
            return err.mean()
        w = se.detach() / (se.detach().sum(dim=(2, 3), keepdim=True) + self.eps)  # sums to 1 per image
        return (err * w).sum() / (I.shape[0] * I.shape[1])


class L_balance(nn.Module):
    """Image-level colour balance (this project's addition, not in SCL-LLE or Zero-DCE).

    P(x) = m / Σ_c m with m the per-channel mean of the whole image; returns the batch mean of
    Σ_c |P(E) − P(I)| (the "colour shift" of ``benchmarks/quality.py``), I's proportions held fixed.
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
        mi, me = I.mean(dim=(2, 3)), E.mean(dim=(2, 3))
        pi = (mi / (mi.sum(dim=1, keepdim=True) + self.eps)).detach()
        pe = me / (me.sum(dim=1, keepdim=True) + self.eps)
        return (pe - pi).abs().sum(dim=1).mean()


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


# -------------------------------------------------------------------------------------- SCL-LLE, no VGG
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


# ------------------------------------------------------------------------------------------------- VGG
class VGGFeatures(nn.Module):
    """Frozen VGG16 ``features[:23]`` (eval, requires_grad False) returning relu1_2, relu2_2, relu4_3.

    x (N,3,H,W) raw [0,1] images (no ImageNet normalisation, as in the reference) →
    ``{"relu1_2": (N,64,H,W), "relu2_2": (N,128,H/2,W/2), "relu4_3": (N,512,H/8,W/8)}``.
    ``last`` stops early (e.g. ``"relu2_2"`` for the Gram loss). Put it on the inputs' device yourself
    (``.to(device)``, or :func:`get_vgg_features`). ``vgg`` is a built torchvision VGG16; by default the
    ImageNet one is loaded from ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`` (never downloaded; a
    missing file is a UserError).
    """

    LAYERS = (("relu1_2", 0, 4), ("relu2_2", 4, 9), ("relu3_3", 9, 16), ("relu4_3", 16, 23))
    OUTPUTS = ("relu1_2", "relu2_2", "relu4_3")

    def __init__(self, vgg: Optional[nn.Module] = None) -> None:
        super().__init__()
        if vgg is None:
            import torchvision
            vgg = load_pretrained(torchvision.models.vgg16, torchvision.models.VGG16_Weights.IMAGENET1K_V1)
        feats = vgg.features
        self.slices = nn.ModuleList(nn.Sequential(*[feats[j] for j in range(a, b)]) for _, a, b in self.LAYERS)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGFeatures":
        """Always stays in eval mode (frozen)."""
        return super().train(False)

    def forward(self, x: Tensor, last: str = "relu4_3") -> Features:
        if last not in self.OUTPUTS:
            raise ValueError(f"last must be one of {self.OUTPUTS}, got {last!r}")
        out: Features = {}
        h = x
        for (name, _, _), block in zip(self.LAYERS, self.slices):
            h = block(h)
            if name in self.OUTPUTS:
                out[name] = h
            if name == last:
                break
        return out


def get_vgg_features(device: Optional[Union[str, torch.device]] = None) -> VGGFeatures:
    """A new frozen :class:`VGGFeatures` with the ImageNet VGG16 (loaded from the torch cache) on ``device``.
    Load it once per training run and pass it to :class:`perception_loss` and :class:`PerceptualLoss`."""
    vgg = VGGFeatures()
    return vgg.to(device) if device is not None else vgg


def gram(f: Tensor) -> Tensor:
    """Gram matrix per image: f (N,C,H,W) → f·fᵀ / (C·H·W), shape (N,C,C)."""
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


class _VGGLoss(nn.Module):
    """Holds a :class:`VGGFeatures` as a submodule (so ``.to()`` moves it; its weights are frozen). Pass
    one ``vgg`` to several losses to share it; without one, the ImageNet VGG16 is loaded."""

    def __init__(self, vgg: Optional[VGGFeatures] = None) -> None:
        super().__init__()
        self.vgg = vgg if vgg is not None else get_vgg_features()

    def features(self, x: ImageOrFeatures, last: str) -> Features:
        """VGG features of an image batch, or ``x`` itself if it already is a feature dict."""
        return x if isinstance(x, dict) else self.vgg(x, last=last)


class perception_loss(_VGGLoss):
    """Content loss: F.mse_loss(relu4_3(I), relu4_3(E)) of VGG16 ``features[:23]`` on raw [0,1] images.

    I, E: (N,3,H,W) images or feature dicts from :class:`VGGFeatures` (``"relu4_3"`` needed). Scalar.
    """

    def forward(self, I: ImageOrFeatures, E: ImageOrFeatures) -> Tensor:
        return F.mse_loss(self.features(I, "relu4_3")["relu4_3"], self.features(E, "relu4_3")["relu4_3"])


class PerceptualLoss(_VGGLoss):
    """Gram (texture) distance G(x, y) = Σ_{l ∈ relu1_2, relu2_2} Σ (gram(φ_l(y)) − gram(φ_l(x)))².

    x, y: (N,3,H,W) images or feature dicts (``"relu1_2"``, ``"relu2_2"``) → scalar (sum of squared
    errors over the batch and both layers); y may also be a :class:`GramDict` of precomputed targets.
    """

    layers = ("relu1_2", "relu2_2")

    def grams(self, x: Union[ImageOrFeatures, "GramDict"]) -> "GramDict":
        """The Gram matrices {layer: (N,C,C)} of an image batch or feature dict (a GramDict as it is)."""
        if isinstance(x, GramDict):
            return x
        f = self.features(x, "relu2_2")
        return GramDict({k: gram(f[k]) for k in self.layers})

    def forward(self, x: ImageOrFeatures, y: Union[ImageOrFeatures, "GramDict"]) -> Tensor:
        gx, gy = self.grams(x), self.grams(y)
        return sum(((gy[k] - gx[k]) ** 2).sum() for k in self.layers)


class GramDict(dict):
    """Precomputed Gram matrices {layer: (N,C,C)} of :class:`PerceptualLoss` targets (e.g. the cached
    contrast images of :class:`losses.SCLLoss`); the loss uses them instead of recomputing features."""


def feature_contrastive_loss(E: ImageOrFeatures, P: ImageOrFeatures, Q: ImageOrFeatures, margin: float = 0.04,
                             gram_loss: Optional[PerceptualLoss] = None) -> Tensor:
    """max(G(E, P) − G(E, Q) + margin, 0) with G = ``PerceptualLoss()``; scalar.

    E, P, Q are images (N,3,H,W), feature dicts or :class:`GramDict`; pass ``vgg(E)`` to compute E's
    features once.
    """
    g = gram_loss if gram_loss is not None else PerceptualLoss()
    gE = g.grams(E)  # once: the reference builds (and backpropagates through) E's Gram matrices twice
    return torch.clamp(g(gE, P) - g(gE, Q) + margin, min=0)


# -------------------------------------------------------------------------------------- segmentation
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

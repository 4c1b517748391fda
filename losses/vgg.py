"""SCL-LLE's VGG16 terms (SPEC §2): the frozen feature extractor, the content (perception) loss and the
Gram-matrix contrastive loss, with the reference names, call signatures and values.

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

from utils.pretrained import load_pretrained

Features = Dict[str, Tensor]
ImageOrFeatures = Union[Tensor, Features]


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

"""The training objectives, built from explicit keyword weights (no argparse below the stages).

* :class:`SCLLoss` — SCL-LLE's total loss (the reference terms of ``Myloss.py``), ``LOSS_WEIGHTS`` its terms;
* :class:`SupervisedLoss` — EMNet's supervised stage: SSIM (piq) + LPIPS (AlexNet) + L1 + L2.
"""
from __future__ import annotations

import torch
from torch import nn

import Myloss
from metrics import build_lpips, lpips_distance, ssim_loss

# name -> (default weight, what it is); the flag is --w_<name>, 0 turns the term off.
LOSS_WEIGHTS = {
    "tv": (200.0, "L_TV on the curve maps"),
    "color": (8.0, "L_color (mean over the batch)"),
    "con": (10.0, "contrastive: max(L_con(E,P) - L_con(E,Q) + 0.3, 0)"),
    "feat": (5.0, "Gram contrastive on VGG16 relu1_2/relu2_2: max(G(E,P) - G(E,Q) + 0.04, 0)"),
    "percep": (1.0, "perception_loss: MSE of VGG16 relu4_3 of input and output"),
    "segexp": (1.0, "L_segexp: semantic brightness consistency (needs labels)"),
    "seg": (1.0, "cross-entropy of the frozen DeepLab on the output (needs labels and --ckpt)"),
    "chroma": (0.0, "L_chroma: chromaticity of output vs input, 4x4 cells (this project's addition; 0 = reference)"),
    "balance": (0.0, "L_balance: image-level channel proportions of output vs input (this project's addition)"),
    "spa": (0.0, "Zero-DCE spatial consistency L_spa (not in SCL-LLE's total)"),
    "exp": (0.0, "exposure control L_exp(--exp_patch, --exp_level) (not in SCL-LLE's total)"),
}


class SCLLoss(nn.Module):
    """Weighted SCL-LLE terms. ``forward`` returns ``{name: weighted term}`` for the non-zero weights.

    VGG16 features of the enhanced image are computed once per step and shared by the Gram and
    perceptual terms (the reference computes them three times); the values are the same. Given
    ``contrast_ids`` (keys naming the positives and negatives, as ``ContrastSet.sample`` returns
    returns them), the Gram matrices of each contrast image are computed once and cached (the frozen VGG
    gives the same ones every time; 80 kB per image), so later steps skip the P/Q forward passes.
    """

    def __init__(self, weights: dict[str, float], seg_net: nn.Module | None = None, seg_detach: bool = False,
                 segexp_per_image: bool = False, device: torch.device | None = None,
                 seg_train_mode: bool = False, exp_patch: int = 16, exp_level: float = 0.6,
                 exp_variant: str = "scl", chroma_weighting: str = "uniform",
                 chroma_space: str = "srgb", chroma_linear_share: float = 1.0,
                 balance_colour_only: bool = False, chroma_linear_fade: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.w = {k: float(v) for k, v in weights.items() if v}
        self.tv, self.color = Myloss.L_TV(), Myloss.L_color()
        self.segexp = Myloss.L_segexp(per_image=segexp_per_image)
        self.chroma = Myloss.L_chroma(weighting=chroma_weighting, space=chroma_space,
                                      linear_share=chroma_linear_share, linear_fade=chroma_linear_fade)
        self.balance = Myloss.L_balance(colour_only=balance_colour_only)
        self.spa, self.exp = Myloss.L_spa(), Myloss.L_exp(exp_patch, exp_level, exp_variant)
        self.vgg = Myloss.get_vgg_features(device) if ("feat" in self.w or "percep" in self.w) else None
        if self.vgg is not None:
            self.gram, self.percep = Myloss.PerceptualLoss(vgg=self.vgg), Myloss.perception_loss(vgg=self.vgg)
        self.gram_cache: dict[object, dict[str, torch.Tensor]] = {}
        self.seg = None
        if "seg" in self.w:
            if seg_net is None:
                raise ValueError("the segmentation term needs seg_net")
            self.seg = Myloss.SegmentationLoss(seg_net, detach=seg_detach, train_mode=seg_train_mode)

    def contrast_grams(self, P: torch.Tensor, Q: torch.Tensor,
                       ids: list | None = None) -> tuple[Myloss.GramDict, Myloss.GramDict]:
        """Gram matrices of P and Q (N,3,H,W). With ``ids`` (2N hashable keys naming the images, P's then
        Q's) they come from the cache, the missing ones computed in one no-grad VGG pass and cached;
        without, all are computed (nothing cached)."""
        n = P.shape[0]
        keys = list(ids) if ids is not None else [None] * (2 * n)
        if len(keys) != 2 * n:
            raise ValueError(f"contrast_ids: {len(keys)} keys for {2 * n} contrast images")
        missing = [k for k, key in enumerate(keys) if key is None or key not in self.gram_cache]
        found: dict[int, dict[str, torch.Tensor]] = {}
        if missing:
            with torch.no_grad():
                g = self.gram.grams(self.vgg(torch.cat([P, Q])[missing], last="relu2_2"))
            for j, k in enumerate(missing):
                found[k] = {layer: g[layer][j] for layer in g}
                if keys[k] is not None:
                    self.gram_cache[keys[k]] = found[k]
        per_image = [found[k] if k in found else self.gram_cache[key] for k, key in enumerate(keys)]
        return tuple(Myloss.GramDict({layer: torch.stack([d[layer] for d in part]) for layer in self.gram.layers})
                     for part in (per_image[:n], per_image[n:]))

    def forward(self, I: torch.Tensor, E: torch.Tensor, A: torch.Tensor, y: torch.Tensor | None = None,
                P: torch.Tensor | None = None, Q: torch.Tensor | None = None,
                contrast_ids: list | None = None) -> dict[str, torch.Tensor]:
        """I input, E enhanced (N,3,H,W) in [0,1]; A curve maps (N,24,H,W); y labels (N,H,W);
        P positives, Q negatives (N,3,H,W); ``contrast_ids`` keys naming P's and Q's images (enables the
        Gram cache)."""
        w, t = self.w, {}
        if "tv" in w:
            t["tv"] = w["tv"] * self.tv(A)
        if "color" in w:
            t["color"] = w["color"] * self.color(E).mean()
        if "con" in w:
            t["con"] = w["con"] * Myloss.contrastive_loss(E, P, Q)
        if self.vgg is not None:
            fE = self.vgg(E, last="relu4_3" if "percep" in w else "relu2_2")
            if "feat" in w:
                gP, gQ = self.contrast_grams(P, Q, contrast_ids)
                t["feat"] = w["feat"] * Myloss.feature_contrastive_loss(fE, gP, gQ, gram_loss=self.gram)
            if "percep" in w:
                with torch.no_grad():
                    fI = self.vgg(I, last="relu4_3")
                t["percep"] = w["percep"] * self.percep(fI, fE)
        if "segexp" in w:
            t["segexp"] = w["segexp"] * self.segexp(E, y)
        if "seg" in w:
            t["seg"] = w["seg"] * self.seg(E, y)
        if "chroma" in w:
            t["chroma"] = w["chroma"] * self.chroma(I, E)
        if "balance" in w:
            t["balance"] = w["balance"] * self.balance(I, E)
        if "spa" in w:
            t["spa"] = w["spa"] * self.spa(I, E).mean()
        if "exp" in w:
            t["exp"] = w["exp"] * self.exp(E)
        return t


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

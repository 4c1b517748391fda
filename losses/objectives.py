"""SCL-LLE's weighted total loss (:class:`SCLLoss`) and its terms' names and default weights (``LOSS_WEIGHTS``),
built from explicit keyword weights (no argparse below the stages)."""
from __future__ import annotations

import torch
from torch import nn

from losses.colour import L_balance, L_chroma
from losses.scl import L_segexp, SegmentationLoss, contrastive_loss
from losses.vgg import GramDict, PerceptualLoss, feature_contrastive_loss, get_vgg_features, perception_loss
from losses.zero_dce import L_TV, L_color, L_exp, L_exp_ref, L_spa

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
    "expref": (0.0, "L_exp_ref: --exp_patch brightness of the output vs the aligned normally exposed frame, on "
                    "the images that have one (<data_root>/reference/; this project's addition)"),
}


class SCLLoss(nn.Module):
    """Weighted SCL-LLE terms. ``forward`` returns ``{name: weighted term}`` for the non-zero weights.

    VGG16 features of the enhanced image are computed once per step and shared by the Gram and
    perceptual terms (the reference computes them three times); the values are the same. Given
    ``contrast_ids`` (keys naming the positives and negatives, as ``ContrastSet.sample``
    returns them), the Gram matrices of each contrast image are computed once and cached (the frozen VGG
    gives the same ones every time; 80 kB per image), so later steps skip the P/Q forward passes.
    """

    def __init__(self, weights: dict[str, float], seg_net: nn.Module | None = None, seg_detach: bool = False,
                 segexp_per_image: bool = False, device: torch.device | None = None,
                 seg_train_mode: bool = False, exp_patch: int = 16, exp_level: float = 0.6,
                 exp_variant: str = "scl", chroma_weighting: str = "uniform",
                 chroma_space: str = "srgb", chroma_linear_share: float = 1.0,
                 balance_colour_only: bool = False, chroma_linear_fade: tuple[float, float] | None = None,
                 exp_skip_referenced: bool = False, expref_relative: bool = False) -> None:
        super().__init__()
        self.w = {k: float(v) for k, v in weights.items() if v}
        self.tv, self.color = L_TV(), L_color()
        self.segexp = L_segexp(per_image=segexp_per_image)
        self.chroma = L_chroma(weighting=chroma_weighting, space=chroma_space,
                               linear_share=chroma_linear_share, linear_fade=chroma_linear_fade)
        self.balance = L_balance(colour_only=balance_colour_only)
        self.spa, self.exp = L_spa(), L_exp(exp_patch, exp_level, exp_variant)
        self.expref, self.exp_skip_referenced = L_exp_ref(exp_patch, expref_relative), exp_skip_referenced
        self.vgg = get_vgg_features(device) if ("feat" in self.w or "percep" in self.w) else None
        if self.vgg is not None:
            self.gram, self.percep = PerceptualLoss(vgg=self.vgg), perception_loss(vgg=self.vgg)
        self.gram_cache: dict[object, dict[str, torch.Tensor]] = {}
        self.seg = None
        if "seg" in self.w:
            if seg_net is None:
                raise ValueError("the segmentation term needs seg_net")
            self.seg = SegmentationLoss(seg_net, detach=seg_detach, train_mode=seg_train_mode)

    def contrast_grams(self, P: torch.Tensor, Q: torch.Tensor,
                       ids: list | None = None) -> tuple[GramDict, GramDict]:
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
        return tuple(GramDict({layer: torch.stack([d[layer] for d in part]) for layer in self.gram.layers})
                     for part in (per_image[:n], per_image[n:]))

    def forward(self, I: torch.Tensor, E: torch.Tensor, A: torch.Tensor, y: torch.Tensor | None = None,
                P: torch.Tensor | None = None, Q: torch.Tensor | None = None,
                contrast_ids: list | None = None, R: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """I input, E enhanced (N,3,H,W) in [0,1]; A curve maps (N,24,H,W); y labels (N,H,W);
        P positives, Q negatives (N,3,H,W); ``contrast_ids`` keys naming P's and Q's images (enables the
        Gram cache); R exposure references (N,3,H,W), negative where an image has none."""
        w, t = self.w, {}
        if "tv" in w:
            t["tv"] = w["tv"] * self.tv(A)
        if "color" in w:
            t["color"] = w["color"] * self.color(E).mean()
        if "con" in w:
            t["con"] = w["con"] * contrastive_loss(E, P, Q)
        if self.vgg is not None:
            fE = self.vgg(E, last="relu4_3" if "percep" in w else "relu2_2")
            if "feat" in w:
                gP, gQ = self.contrast_grams(P, Q, contrast_ids)
                t["feat"] = w["feat"] * feature_contrastive_loss(fE, gP, gQ, gram_loss=self.gram)
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
            keep = ~L_exp_ref.has_reference(R) if self.exp_skip_referenced and R is not None else None
            t["exp"] = w["exp"] * self.exp(E, keep)
        if "expref" in w:
            if R is None:
                raise ValueError("the expref term needs the exposure references R")
            t["expref"] = w["expref"] * self.expref(E, R)
        return t

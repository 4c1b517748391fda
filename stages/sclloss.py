"""SCL-LLE's total loss (SPEC §2), built from the reference classes in ``Myloss.py``."""
from __future__ import annotations

import torch
from torch import nn

import Myloss

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
    "spa": (0.0, "Zero-DCE spatial consistency L_spa (not in SCL-LLE's total)"),
    "exp": (0.0, "exposure control L_exp(--exp_patch, --exp_level) (not in SCL-LLE's total)"),
}


class SCLLoss(nn.Module):
    """Weighted SCL-LLE terms. ``forward`` returns ``{name: weighted term}`` for the non-zero weights.

    VGG16 features of the enhanced image are computed once per step and shared by the Gram and
    perceptual terms (the reference computes them three times); the values are the same.
    """

    def __init__(self, weights: dict[str, float], seg_net: nn.Module | None = None, seg_detach: bool = False,
                 segexp_per_image: bool = False, device: torch.device | None = None,
                 seg_train_mode: bool = False, exp_patch: int = 16, exp_level: float = 0.6,
                 exp_variant: str = "scl") -> None:
        super().__init__()
        self.w = {k: float(v) for k, v in weights.items() if v}
        self.tv, self.color, self.con = Myloss.L_TV(), Myloss.L_color(), Myloss.L_con()
        self.segexp = Myloss.L_segexp(per_image=segexp_per_image)
        self.chroma = Myloss.L_chroma()
        self.spa, self.exp = Myloss.L_spa(), Myloss.L_exp(exp_patch, exp_level, exp_variant)
        self.vgg = Myloss.get_vgg_features(device) if ("feat" in self.w or "percep" in self.w) else None
        if self.vgg is not None:
            self.gram, self.percep = Myloss.PerceptualLoss(vgg=self.vgg), Myloss.perception_loss(vgg=self.vgg)
        self.seg = None
        if "seg" in self.w:
            if seg_net is None:
                raise ValueError("the segmentation term needs seg_net")
            self.seg = Myloss.SegmentationLoss(seg_net, detach=seg_detach)
            seg_net.train(seg_train_mode)  # reference quirk on request: BatchNorm in train mode

    def forward(self, I: torch.Tensor, E: torch.Tensor, A: torch.Tensor, y: torch.Tensor | None = None,
                P: torch.Tensor | None = None, Q: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """I input, E enhanced (N,3,H,W) in [0,1]; A curve maps (N,24,H,W); y labels (N,H,W);
        P positives, Q negatives (N,3,H,W)."""
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
                with torch.no_grad():
                    fP, fQ = self.vgg(P, last="relu2_2"), self.vgg(Q, last="relu2_2")
                t["feat"] = w["feat"] * Myloss.feature_contrastive_loss(fE, fP, fQ, gram_loss=self.gram)
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
        if "spa" in w:
            t["spa"] = w["spa"] * self.spa(I, E).mean()
        if "exp" in w:
            t["exp"] = w["exp"] * self.exp(E)
        return t

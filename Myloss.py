"""SCL-LLE's loss module under its reference name: ``import Myloss`` and ``Myloss.L_color``, ``Myloss.L_TV``,
``Myloss.perception_loss`` … work as with the official code (SPEC §2; the reference class names, call
signatures and values).

A thin re-export: each term is defined once, in the :mod:`losses` package (Zero-DCE's terms in
:mod:`losses.zero_dce`, SCL-LLE's in :mod:`losses.scl` and :mod:`losses.vgg`, this project's colour terms in
:mod:`losses.colour`), and ``srgb_to_linear`` in :mod:`utils.colour`. The weighted totals are
``losses.SCLLoss`` and ``losses.SupervisedLoss``.
"""
from losses.colour import L_balance, L_chroma
from losses.scl import L_con, L_segexp, SegmentationLoss, contrastive_loss
from losses.vgg import (Features, GramDict, ImageOrFeatures, PerceptualLoss, VGGFeatures, _VGGLoss,
                        feature_contrastive_loss, get_vgg_features, gram, perception_loss)
from losses.zero_dce import L_TV, L_color, L_exp, L_spa
from utils.colour import srgb_to_linear

__all__ = [
    "Features", "GramDict", "ImageOrFeatures", "L_TV", "L_balance", "L_chroma", "L_color", "L_con", "L_exp",
    "L_segexp", "L_spa", "PerceptualLoss", "SegmentationLoss", "VGGFeatures", "_VGGLoss", "contrastive_loss",
    "feature_contrastive_loss", "get_vgg_features", "gram", "perception_loss", "srgb_to_linear",
]

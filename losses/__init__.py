"""Losses, one module per family (BasicSR's ``basicsr/losses``); the public names are importable from here.

* :mod:`losses.zero_dce`: Zero-DCE's terms as SCL-LLE has them (``L_color``, ``L_spa``, ``L_exp``, ``L_TV``);
* :mod:`losses.scl`: SCL-LLE's terms without VGG (``L_con``, ``contrastive_loss``, ``L_segexp``,
  ``SegmentationLoss``);
* :mod:`losses.vgg`: the VGG16 terms (``VGGFeatures``, ``perception_loss``, ``PerceptualLoss``,
  ``feature_contrastive_loss``);
* :mod:`losses.colour`: this project's colour terms (``L_chroma``, ``L_balance``);
* :mod:`losses.objectives`: SCL-LLE's weighted total (``SCLLoss``, ``LOSS_WEIGHTS``);
* :mod:`losses.supervised`: EMNet's supervised objective (``ssim_loss``, ``SupervisedLoss``).

``Myloss`` re-exports the terms under the reference's module name.
"""
from losses.colour import L_balance, L_chroma
from losses.objectives import LOSS_WEIGHTS, SCLLoss
from losses.scl import L_con, L_segexp, SegmentationLoss, contrastive_loss
from losses.supervised import SupervisedLoss, ssim_loss
from losses.vgg import (Features, GramDict, ImageOrFeatures, PerceptualLoss, VGGFeatures, feature_contrastive_loss,
                        get_vgg_features, gram, perception_loss)
from losses.zero_dce import L_TV, L_color, L_exp, L_spa

__all__ = [
    "Features", "GramDict", "ImageOrFeatures", "LOSS_WEIGHTS", "L_TV", "L_balance", "L_chroma", "L_color", "L_con",
    "L_exp", "L_segexp", "L_spa", "PerceptualLoss", "SCLLoss", "SegmentationLoss", "SupervisedLoss", "VGGFeatures",
    "contrastive_loss", "feature_contrastive_loss", "get_vgg_features", "gram", "perception_loss", "ssim_loss",
]

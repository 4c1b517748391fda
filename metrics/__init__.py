"""Metrics, one module per family (BasicSR's ``basicsr/metrics``); the public names are importable from here.

* :mod:`metrics.image`: PSNR / SSIM on 8-bit images (the papers' protocol), :func:`quantise`, :func:`psnr_float`;
* :mod:`metrics.conventions`: the PSNR / SSIM conventions (reference, BasicSR's RGB and Y), :func:`scores_8bit`;
* :mod:`metrics.lpips`: the frozen LPIPS (AlexNet) network and its distance (also EMNet's training loss);
* :mod:`metrics.colour`: colour shifts of an output against its input (image level, per pixel, tone part);
* :mod:`metrics.exposure`: brightness, clipped fraction, Immerkær's noise σ;
* :mod:`metrics.niqe`: NIQE (no-reference naturalness, the MATLAB release's definition, offline);
* :mod:`metrics.segmentation`: streaming mIoU (Cityscapes protocol);
* :mod:`metrics.accumulator`: per-image rows and their means.

The differentiable SSIM loss is :func:`losses.supervised.ssim_loss`.

The names below are imported from their modules on first use (PEP 562): ``import metrics.conventions``
(which ``lowlight_test.py`` needs) then does not import torchvision (LPIPS) nor SciPy (NIQE, imported on its first call), about 4 s and
0.15 GB of resident memory that inference never uses.
"""
from __future__ import annotations

import importlib

_HOMES = {
    "accumulator": ["MetricAccumulator"],
    "colour": ["channel_proportions", "colour_shift", "pixel_colour_shift", "pixel_proportions", "proportion_shift",
               "proportions", "tone_shift"],
    "exposure": ["brightness", "clipped_fraction", "noise_sigma"],
    "conventions": ["CONVENTION_NAMES", "CONVENTIONS", "Convention", "scores_8bit"],
    "image": ["QUANTISE_MODES", "ArrayOrTensor", "psnr", "psnr_float", "quantise", "ssim"],
    "lpips": ["ALEXNET_WEIGHTS", "build_lpips", "lpips_available", "lpips_distance"],
    "segmentation": ["StreamSegMetrics"],
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted([*_HOME_OF, "niqe"])

# eager: the function shares its module's name, and the module, once imported, would shadow a lazy name
from metrics.niqe import niqe  # noqa: E402  (NumPy only; SciPy is imported on its first call)


def __getattr__(name: str):
    if name in _HOME_OF:
        return getattr(importlib.import_module(f"metrics.{_HOME_OF[name]}"), name)
    raise AttributeError(f"module 'metrics' has no attribute {name!r}")

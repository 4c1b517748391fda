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
"""
from metrics.accumulator import MetricAccumulator
from metrics.colour import (channel_proportions, colour_shift, pixel_colour_shift, pixel_proportions, proportion_shift,
                            proportions, tone_shift)
from metrics.exposure import brightness, clipped_fraction, noise_sigma
from metrics.conventions import CONVENTION_NAMES, CONVENTIONS, Convention, scores_8bit
from metrics.image import QUANTISE_MODES, ArrayOrTensor, psnr, psnr_float, quantise, ssim
from metrics.lpips import ALEXNET_WEIGHTS, build_lpips, lpips_available, lpips_distance
from metrics.niqe import niqe
from metrics.segmentation import StreamSegMetrics

__all__ = [
    "ALEXNET_WEIGHTS", "ArrayOrTensor", "CONVENTIONS", "CONVENTION_NAMES", "Convention", "QUANTISE_MODES", "MetricAccumulator", "StreamSegMetrics", "brightness", "build_lpips",
    "channel_proportions", "clipped_fraction", "colour_shift", "lpips_available", "lpips_distance", "niqe", "noise_sigma",
    "pixel_colour_shift", "pixel_proportions", "proportion_shift", "proportions", "psnr", "psnr_float", "quantise",
    "scores_8bit", "ssim", "tone_shift",
]

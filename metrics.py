"""Evaluation metrics (SPEC §7) and the differentiable SSIM/LPIPS losses (SPEC §5).

* PSNR / SSIM follow the papers' protocol: 8-bit RGB HxWx3 arrays (rounded like torchvision's
  ``save_image``), scikit-image, data range 255, SSIM with its default 7x7 uniform window.
* LPIPS: AlexNet v0.1 from the ``lpips`` package; the ImageNet trunk comes from the torch cache through
  :func:`utils.pretrained.load_pretrained` (never downloaded), the linear calibration layers from the
  package's own ``weights/v0.1/alex.pth``.
* :func:`ssim_loss`: 1 − piq's SSIM (11x11 Gaussian, σ 1.5, data range 1, average-pooled by
  round(min(H,W)/256) first when that is > 1), the reference's training loss.
* :func:`quantise`: the reference test script's 8-bit conversions ("trunc" for the enhancer alone,
  "round_half_even" for the memory output); :func:`psnr_float`: PSNR of float images (data range 1), the
  reference's validation criterion.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Iterable, Optional, Union

import numpy as np
import torch
import torchvision
from torch import nn

from utils.image_io import to_uint8
from utils.pretrained import load_pretrained, weights_path

ALEXNET_WEIGHTS = torchvision.models.AlexNet_Weights.IMAGENET1K_V1

ArrayOrTensor = Union[np.ndarray, torch.Tensor]


def _as_uint8(a: ArrayOrTensor) -> np.ndarray:
    """uint8 HxWx3 array as is; a float image tensor through :func:`utils.image_io.to_uint8`."""
    if torch.is_tensor(a):
        return a.detach().cpu().numpy() if a.dtype == torch.uint8 else to_uint8(a)
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 HxWx3 array (use utils.image_io.to_uint8), got dtype {a.dtype}")
    return a


def psnr(a: ArrayOrTensor, b: ArrayOrTensor) -> float:
    """PSNR in dB of two uint8 (H, W, 3) images (skimage, data_range 255); inf for identical images.

    ``a`` is the reference (GT) by convention; PSNR is symmetric. Float (3, H, W) tensors are quantised
    first with :func:`utils.image_io.to_uint8`.
    """
    from skimage.metrics import peak_signal_noise_ratio

    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(_as_uint8(a), _as_uint8(b), data_range=255))


def scores_8bit(y8: np.ndarray, gt8: np.ndarray) -> dict[str, float]:
    """``{"psnr", "ssim"}`` of an 8-bit image against the 8-bit ground truth (uint8 (H, W, 3) each), the
    papers' protocol; the one place evaluation and validation compute them."""
    return {"psnr": psnr(gt8, y8), "ssim": ssim(gt8, y8)}


def ssim(a: ArrayOrTensor, b: ArrayOrTensor) -> float:
    """SSIM of two uint8 (H, W, 3) images: skimage ``structural_similarity(channel_axis=-1,
    data_range=255)`` with its default 7x7 uniform window (the papers' protocol)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_as_uint8(a), _as_uint8(b), channel_axis=-1, data_range=255))


QUANTISE_MODES = ("round", "round_half_even", "trunc")


def quantise(y: torch.Tensor, mode: str = "round") -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) float tensor → uint8 (H, W, 3), clamped to [0, 1] first.

    ``"round"``: :func:`utils.image_io.to_uint8` (``x·255 + 0.5`` truncated, as ``save_image``);
    ``"round_half_even"``: ``np.round(x·255)`` in float32 (ties to even: 0.5 → 0, 1.5 → 2), as the
    reference's "mem" images and every image of its memory validation; ``"trunc"``: ``(x·255)`` truncated
    in float32, as the reference's "ori" images.
    """
    if mode == "round":
        return to_uint8(y.clamp(0, 1))
    if mode not in QUANTISE_MODES:
        raise ValueError(f"quantise mode must be one of {', '.join(QUANTISE_MODES)}; got {mode!r}")
    t = y.detach().cpu().float().reshape(-1, *y.shape[-2:]).clamp(0, 1)
    scaled = t.permute(1, 2, 0).numpy() * np.float32(255.0)
    return (np.round(scaled) if mode == "round_half_even" else scaled).astype(np.uint8)


def psnr_float(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two float images in [0, 1] (any equal shapes), data range 1, no quantisation
    (skimage's ``peak_signal_noise_ratio`` on the float arrays, as the reference's validation)."""
    mse = torch.mean((a.detach().double().cpu() - b.detach().double().cpu()) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 − SSIM(x, y) for (N, 3, H, W) in [0, 1] → scalar tensor, differentiable; piq's ``ssim`` as the
    reference uses it: 11x11 Gaussian window σ 1.5, no padding, data range 1, and for a shorter side
    ≥ 384 both images average-pooled by f = round(min(H, W) / 256) first; mean over channels and batch."""
    import piq

    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):  # piq asserts on NaN: let the NaN guard see it
        return (x.sum() + y.sum()) * float("nan")
    return 1.0 - piq.ssim(x, y, data_range=1.0, reduction="mean", downsample=True)


def lpips_available() -> bool:
    """Whether the AlexNet ImageNet file (``alexnet-owt-7be5be79.pth``) is in the torch cache."""
    return os.path.isfile(weights_path(ALEXNET_WEIGHTS))


def _frozen_lpips_class():
    import lpips

    class FrozenLPIPS(lpips.LPIPS):
        """lpips.LPIPS that stays in eval mode (no dropout in the linear layers) whatever its parent does."""

        def train(self, mode: bool = True) -> "FrozenLPIPS":
            return super().train(False)

    return FrozenLPIPS


def _copy_alexnet_features(model: nn.Module, features: nn.Sequential) -> None:
    """Copy torchvision AlexNet ``features`` into the lpips trunk's slices.

    The lpips trunk holds ``features[0:12]`` split into ``slice1..slice5`` under their original indices
    (``net.slice2.3`` is ``features.3``); every parameterised layer of ``features`` must be covered.
    """
    trunk = model.net
    covered = set()
    for s in range(1, trunk.N_slices + 1):
        for name, layer in getattr(trunk, f"slice{s}").named_children():
            src = features[int(name)]
            if type(src) is not type(layer):
                raise RuntimeError(f"lpips slice{s}.{name} is {type(layer).__name__}, AlexNet features.{name} "
                                   f"is {type(src).__name__}: unexpected lpips layout")
            layer.load_state_dict(src.state_dict(), strict=True)
            covered.add(int(name))
    needed = {i for i, m in enumerate(features) if any(True for _ in m.parameters())}
    if not needed <= covered:
        raise RuntimeError(f"lpips trunk does not cover AlexNet feature layers {sorted(needed - covered)}")
    if not torch.equal(trunk.slice1[0].weight, features[0].weight):
        raise RuntimeError("AlexNet weights were not copied into the lpips trunk")


def build_lpips(device: Union[str, torch.device] = "cpu", pretrained: bool = True) -> nn.Module:
    """LPIPS (AlexNet, v0.1), frozen, eval mode, on ``device``.

    ``pretrained=True`` loads the AlexNet ImageNet trunk from the torch cache (UserError naming
    ``alexnet-owt-7be5be79.pth`` and its folder when missing); ``pretrained=False`` keeps a random trunk
    (tests only). The calibrated linear layers always come from the lpips package's shipped file.
    """
    features = None
    if pretrained:  # check the file before building anything
        features = load_pretrained(torchvision.models.alexnet, ALEXNET_WEIGHTS).features
    with warnings.catch_warnings():
        # lpips builds its random trunk with torchvision's deprecated ``alexnet(pretrained=False)``:
        # nothing is downloaded, only deprecation warnings are raised; silence those.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.models")
        model = _frozen_lpips_class()(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if features is not None:
        _copy_alexnet_features(model, features)
    for prm in model.parameters():
        prm.requires_grad_(False)
    return model.eval().to(device)


def lpips_distance(model: nn.Module, a: torch.Tensor, b: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """LPIPS distance of images in [0, 1]: (N, 3, H, W) (or (3, H, W)) each → (N,) tensor.

    ``normalize=True``: inputs are mapped to [−1, 1] first, the range LPIPS expects (evaluation).
    ``normalize=False``: the [0, 1] images go in as they are — what EMNet's training loss does (SPEC §5).
    Gradients flow to the inputs (use it as a loss); wrap in ``torch.no_grad()`` for evaluation.
    """
    if a.dim() == 3:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    return model(a, b, normalize=normalize).reshape(a.shape[0])


class MetricAccumulator:
    """Per-image metric rows and their means, for ``result.txt`` / ``.csv``.

    >>> acc = MetricAccumulator(); acc.add("1.png", psnr=20.0, ssim=0.8); acc.mean()["psnr"]
    20.0
    """

    def __init__(self, names: Optional[Iterable[str]] = None) -> None:
        self.names: list[str] = list(names or [])
        self.images: list[str] = []
        self.values: dict[str, list[float]] = {n: [] for n in self.names}

    def add(self, image: str, **metrics: float) -> None:
        """Record one image's metrics; a metric not given for this image is stored as NaN."""
        for n in metrics:
            if n not in self.values:
                self.names.append(n)
                self.values[n] = [math.nan] * len(self.images)
        self.images.append(image)
        for n in self.names:
            self.values[n].append(float(metrics.get(n, math.nan)))

    def __len__(self) -> int:
        return len(self.images)

    def mean(self) -> dict[str, float]:
        """Mean of each metric over the images that have it (NaN if none); inf values propagate."""
        out = {}
        for n in self.names:
            vals = [v for v in self.values[n] if not math.isnan(v)]
            out[n] = sum(vals) / len(vals) if vals else math.nan
        return out

    def rows(self) -> list[dict[str, Union[str, float]]]:
        """One dict per image: ``{"image": name, metric: value, …}``."""
        return [{"image": img, **{n: self.values[n][i] for n in self.names}} for i, img in enumerate(self.images)]

    def format(self, digits: int = 4) -> str:
        """Text report: one line per image then a ``mean`` line (``name  psnr=… ssim=…``)."""
        def line(name: str, vals: dict[str, float]) -> str:
            return name + "  " + " ".join(f"{n}={vals[n]:.{digits}f}" for n in self.names)

        lines = [line(r["image"], r) for r in self.rows()]  # type: ignore[arg-type]
        lines.append(line("mean", self.mean()))
        return "\n".join(lines) + "\n"

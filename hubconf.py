"""torch.hub entry points: ``dce_net``, ``emnet``, ``deeplabv3plus_mobilenet``.

    model = torch.hub.load("<owner>/<repo>", "dce_net", weights="shipped")     # from GitHub
    model = torch.hub.load("path/to/repo", "dce_net", source="local")          # from a clone

Every entry point returns the model in eval mode on ``map_location`` (default CPU). ``weights`` is a
path to a checkpoint in any layout the project's loader accepts (raw state dict, or one under
``state_dict``/``model_state``/``params``/``model``, ``module.`` prefixes stripped), or None for
random initialisation; a bad value stops with one line (:class:`utils.errors.UserError`).
"""
from __future__ import annotations

import os as _os

import torch as _torch

dependencies = ["torch", "torchvision"]

_HERE = _os.path.dirname(_os.path.abspath(__file__))
_SHIPPED = {"dce_net": _os.path.join(_HERE, "checkpoints", "LLE_model.pth")}


def _device(map_location) -> _torch.device:
    """``map_location`` (None → CPU, "auto", "cpu", "cuda", "cuda:N" or a torch.device) as a device."""
    from utils.device import resolve_device
    from utils.errors import UserError

    if map_location is None:
        return _torch.device("cpu")
    if isinstance(map_location, _torch.device):
        return map_location
    name = str(map_location)
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"map_location={map_location!r} is not a device; use None, 'cpu', 'cuda', 'cuda:N' or 'auto'")
    if name.startswith("cuda") and not _torch.cuda.is_available():
        raise UserError(f"map_location={map_location!r} but no CUDA device is available; use 'cpu'")
    return resolve_device(name)


def _weights_path(entry: str, weights) -> str | None:
    """``None`` → None; ``"shipped"`` → the checkpoint shipped for ``entry``; else an existing file."""
    from utils.errors import UserError

    if weights is None:
        return None
    if not isinstance(weights, (str, _os.PathLike)):
        raise UserError(f"{entry}(weights={weights!r}): pass None, a checkpoint path"
                        + (" or 'shipped'" if entry in _SHIPPED else ""))
    weights = _os.fspath(weights)
    if weights == "shipped":
        if entry not in _SHIPPED:
            raise UserError(f"{entry}(weights='shipped'): no checkpoint ships for {entry}; pass a checkpoint path or None")
        return _SHIPPED[entry]
    if not _os.path.isfile(weights):
        hint = ", 'shipped'" if entry in _SHIPPED else ""
        raise UserError(f"{entry}(weights={weights!r}): no such file; pass a checkpoint path{hint} or None")
    return weights


def dce_net(weights: str | None = "shipped", map_location=None) -> _torch.nn.Module:
    """DCE-Net, SCL-LLE's curve-estimation enhancer (79,416 parameters), eval mode.

    Args:
        weights: ``"shipped"`` (``checkpoints/LLE_model.pth`` of this repository), a checkpoint path
            (e.g. the official SCL-LLE or Zero-DCE release file), or None (the reference's random
            initialisation: conv weights ~ N(0, 0.02)).
        map_location: device for the model and the checkpoint's tensors (default CPU).

    The model maps an (N,3,H,W) image in [0,1] (any H, W) to ``(image after 4 curve steps,
    enhanced image, curve maps (N,24,H,W))``; the enhanced image is element ``[1]``.
    """
    from lowlight_model import build_enhancer, weights_init

    device, path = _device(map_location), _weights_path("dce_net", weights)
    if path is None:
        model = build_enhancer("dce")
        model.apply(weights_init)
        model.arch = "dce"
        return model.to(device).eval()
    return _load_as("dce_net", "dce", path, device)


def _load_as(entry: str, arch: str, path: str, device) -> _torch.nn.Module:
    """The enhancer of ``path`` (arch recognised from the checkpoint), refused unless it is ``arch``."""
    from lowlight_model import load_enhancer
    from utils.errors import UserError

    model = load_enhancer("auto", path, device)
    if model.arch != arch:
        other = {"dce": "emnet", "emnet": "dce_net"}[arch]
        name = {"dce": "DCE-Net", "emnet": "EMNet"}[arch]
        raise UserError(f"{entry}(weights={path!r}) holds an enhancer of arch {model.arch!r}, not {name}; "
                        f"use the matching entry point ({other} for {model.arch!r})")
    return model


def emnet(weights: str | None = None, embed_dim: int = 32, map_location=None) -> _torch.nn.Module:
    """EMNet's enhancer (Restormer-style encoder-decoder; 12.5 M parameters at embed dim 32), eval mode.

    Args:
        weights: a checkpoint path (this project's ``model_best.pth``/``model_latest.pth`` or the
            reference code's, weights under ``state_dict``), or None (random initialisation).
        embed_dim: channels of the first level; must match the checkpoint's.
        map_location: device for the model and the checkpoint's tensors (default CPU).

    The model maps (N,3,H,W) in [0,1] with H, W multiples of 8 to the enhanced image (N,3,H,W); for
    other sizes pad with ``F.pad(x, (0, -w % 8, 0, -h % 8), mode="reflect")`` and crop the output back.
    """
    from lowlight_model import build_enhancer
    from utils.errors import UserError

    device, path = _device(map_location), _weights_path("emnet", weights)
    if path is None:
        model = build_enhancer("emnet", embed_dim)
        model.arch = "emnet"
        return model.to(device).eval()
    model = _load_as("emnet", "emnet", path, device)
    found = model.patch_embed.proj.out_channels
    if found != embed_dim:
        raise UserError(f"emnet(weights={path!r}) holds an EMNet of embed dim {found}; pass embed_dim={found}")
    return model


def deeplabv3plus_mobilenet(weights: str | None = None, num_classes: int = 19, output_stride: int = 16,
                            map_location=None) -> _torch.nn.Module:
    """DeepLabV3+ with a MobileNetV2 backbone (layout of the public DeepLabV3Plus-Pytorch port), eval mode.

    Args:
        weights: that port's checkpoint (e.g. ``best_deeplabv3plus_mobilenet_cityscapes_os16.pth``,
            weights under ``model_state``), loaded strictly, or None (random initialisation; the
            ImageNet backbone is not loaded).
        num_classes: output classes (19 for Cityscapes train ids).
        output_stride: 8 or 16.
        map_location: device for the model and the checkpoint's tensors (default CPU).

    Input: (N,3,H,W) normalised with ImageNet mean/std; output: logits (N,num_classes,H,W).
    """
    from network.modeling import deeplabv3plus_mobilenet as _build
    from utils.checkpoint import load_weights

    device, path = _device(map_location), _weights_path("deeplabv3plus_mobilenet", weights)
    model = _build(num_classes=num_classes, output_stride=output_stride, pretrained_backbone=False)
    if path is not None:
        load_weights(model, path, map_location=device)
    return model.to(device).eval()

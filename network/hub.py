"""The torch.hub builders (``hubconf.py`` re-exports them, as torchvision's does): ``dce_net``, ``emnet``,
``deeplabv3plus_mobilenet``.

    model = torch.hub.load("<owner>/<repo>", "dce_net", weights="shipped")     # from GitHub
    model = torch.hub.load("path/to/repo", "dce_net", source="local")          # from a clone

Every builder returns its model in eval mode on ``map_location`` (default CPU). ``weights`` is a path to a
checkpoint in any layout the project's loader accepts (raw state dict, or one under
``state_dict``/``model_state``/``params``/``model``, ``module.`` prefixes stripped), ``"shipped"`` for the
weights this repository ships (see :mod:`network.registry`), or None for random initialisation; a bad value
stops with one line (:class:`utils.errors.UserError`) naming the argument.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from network.enhancer import Enhancer, load_enhancer
from network.registry import ArchSpec, get_spec
from utils.checkpoint import load_weights
from utils.device import resolve_device
from utils.errors import UserError


def _device(map_location) -> torch.device:
    """``map_location`` (None → CPU, "auto", "cpu", "cuda", "cuda:N" or a torch.device) as a device."""
    if map_location is None:
        return torch.device("cpu")
    if isinstance(map_location, torch.device):
        return map_location
    try:
        return resolve_device(str(map_location))
    except UserError as e:
        raise UserError(f"map_location={map_location!r}: {e}") from None


def _weights_path(entry: str, weights, shipped: str | None = None) -> str | None:
    """``None`` → None; ``"shipped"`` → ``shipped`` (the builder's shipped file); else an existing file."""
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise UserError(f"{entry}(weights={weights!r}): pass None, a checkpoint path"
                        + (" or 'shipped'" if shipped else ""))
    weights = os.fspath(weights)
    if weights == "shipped":
        if shipped is None:
            raise UserError(f"{entry}(weights='shipped'): no checkpoint ships for {entry}; pass a checkpoint path "
                            f"or None")
        return shipped
    if not os.path.isfile(weights):
        raise UserError(f"{entry}(weights={weights!r}): no such file; pass a checkpoint path"
                        + (", 'shipped'" if shipped else "") + " or None")
    return weights


def _enhancer(spec: ArchSpec, weights, embed_dim: int | None, map_location) -> Enhancer:
    """The :class:`Enhancer` of ``spec`` for the builder arguments; refuses another architecture's weights."""
    shipped = spec.shipped_path() if spec.shipped else None
    device, path = _device(map_location), _weights_path(spec.hub, weights, shipped)
    if path is None:
        net = spec.build(embed_dim)
        if spec.name == "dce":
            from network.dce import weights_init

            net.apply(weights_init)  # the reference's random initialisation
        return Enhancer(net, spec).to(device).eval()
    model = load_enhancer("auto", path, device)
    if model.spec is not spec:
        raise UserError(f"{spec.hub}(weights={path!r}) holds an enhancer of arch {model.arch!r}, not {spec.title}; "
                        f"use the matching entry point ({model.spec.hub} for {model.arch!r})")
    found = spec.width_of(model.state_dict())
    if embed_dim is not None and found != embed_dim:
        raise UserError(f"{spec.hub}(weights={path!r}) holds an {spec.title} of embed dim {found}; "
                        f"pass embed_dim={found}")
    return model


def dce_net(weights: str | None = "shipped", map_location=None, strength: float = 1.0,
            exposure: float | str | None = None, curve_scale: float = 1.0,
            highlight_guard: float | None = None) -> Enhancer:
    """DCE-Net, SCL-LLE's curve-estimation enhancer (79,416 parameters), eval mode.

    Args:
        weights: ``"shipped"`` (``checkpoints/LLE_model.pth`` of this repository), a checkpoint path
            (e.g. the official SCL-LLE or Zero-DCE release file), or None (the reference's random
            initialisation: conv weights ~ N(0, 0.02)).
        map_location: device for the model and the checkpoint's tensors (default CPU).
        strength, exposure, highlight_guard: the curve maps scaled by ``strength``, or per image to reach the
            mean brightness ``exposure``, brightening no further than clipping ``highlight_guard`` percentage
            points more pixels than the model's own output (``lowlight_test.py --strength/--exposure/
            --highlight_guard``; :mod:`network.curves`). With neither ``strength`` nor ``exposure`` given, a
            checkpoint's card (``<weights>.json``, :mod:`utils.model_card`; the shipped one has one) sets
            them, as in ``lowlight_test.py``; ``exposure="off"``: the network's own output.
        curve_scale: estimate the curve maps on the image downscaled by this factor (``--curve_scale``;
            :mod:`network.curve_scale`). Without a card, the defaults give the model's own output, bit for bit.

    Returns an :class:`network.enhancer.Enhancer`: ``model(x)`` maps an (N,3,H,W) image in [0,1] (or
    uint8), any H, W, to the enhanced image (N,3,H,W) (not clamped); ``model.enhance(x, tile=512)`` in
    tiles; ``model.net(x)`` is the reference network's ``(image after 4 curve steps, enhanced image,
    curve maps (N,24,H,W))``.
    """
    from utils.model_card import brightness_control

    spec = get_spec("dce")
    model = _enhancer(spec, weights, None, map_location)
    path = _weights_path(spec.hub, weights, spec.shipped_path() if spec.shipped else None)
    try:
        control, _ = brightness_control(path, exposure, strength, highlight_guard)
        return model.set_curve_control(strength, curve_scale=curve_scale, **control)
    except UserError as e:  # name the builder's arguments, not the command-line flags
        raise UserError(f"dce_net: {str(e).replace('--', '')}") from None


def emnet(weights: str | None = None, embed_dim: int | None = None, map_location=None) -> Enhancer:
    """EMNet's enhancer (Restormer-style encoder-decoder; 12.5 M parameters at embed dim 32), eval mode.

    Args:
        weights: a checkpoint path (this project's ``model_best.pth``/``model_latest.pth`` or the
            reference code's, weights under ``state_dict``), or None (random initialisation).
        embed_dim: channels of the first level (default: the checkpoint's, or 32 without weights); checked
            against the checkpoint when given.
        map_location: device for the model and the checkpoint's tensors (default CPU).

    Returns an :class:`network.enhancer.Enhancer`: ``model(x)`` maps (N,3,H,W) in [0,1], any H, W, to the
    enhanced image (padded to multiples of 8 and cropped back inside); ``model.net`` is the network itself.
    """
    return _enhancer(get_spec("emnet"), weights, embed_dim, map_location)


def deeplabv3plus_mobilenet(weights: str | None = None, num_classes: int = 19, output_stride: int = 16,
                            map_location=None) -> nn.Module:
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

    device, path = _device(map_location), _weights_path("deeplabv3plus_mobilenet", weights)
    model = _build(num_classes=num_classes, output_stride=output_stride, pretrained_backbone=False)
    if path is not None:
        load_weights(model, path, map_location=device)
    return model.to(device).eval()

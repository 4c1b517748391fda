"""The enhancer registry: one record per architecture holding every fact callers need about it.

As timm's pretrained configs and torchvision's weight enums own such facts, an :class:`ArchSpec` owns its
builder, default width, the size multiple inputs are padded to, how a checkpoint's keys reveal it and its
width, whether tiles reproduce the whole-image result, whether training defaults to channels-last, whether
it produces curve maps, its working memory per pixel and its shipped weights. Every caller asks
:func:`get_spec` (or :func:`spec_from_state` for a checkpoint); adding an entry to :data:`ARCHS` plugs another
enhancer in everywhere (``--arch`` choices follow).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from torch import nn

from utils.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class ArchSpec:
    """The facts of one enhancer architecture.

    * ``name`` (the ``--arch`` value), ``title`` (for messages), ``class_name`` (the network's class),
      ``hub`` (its torch.hub entry point);
    * ``builder(width)`` returns the network; ``default_width`` is the reference's width;
      ``width_rule(width)`` returns None for a valid width, else what a valid one is;
    * ``signature``: a state-dict key only this architecture has, and ``width_of(state)`` its width;
    * ``size_multiple``: inputs are padded to multiples of it (1: any size);
    * ``receptive_radius``: how far (pixels) an output pixel sees, or None when it sees the whole image;
      tiles with that much context reproduce the whole-image result (:attr:`tileable`);
    * ``channels_last``: the training default of ``--channels_last auto`` (only convolutions: faster);
    * ``curve_maps``: the network returns DCE-Net's (4-step image, final image, curve maps) triple;
    * ``bytes_per_pixel``: measured peak working memory of one inference pass per input pixel by dtype;
    * ``shipped``: weights shipped in this repository (name -> path relative to its root);
    * ``query_layers``: the modules whose features form an enhancer query of EMNet's memory
      (:mod:`network.query`).
    """

    name: str
    title: str
    class_name: str
    hub: str
    builder: Callable[[int], nn.Module]
    default_width: int
    width_rule: Callable[[int], str | None]
    signature: str
    width_of: Callable[[Mapping[str, torch.Tensor]], int]
    size_multiple: int = 1
    receptive_radius: int | None = None
    channels_last: bool = False
    curve_maps: bool = False
    bytes_per_pixel: Mapping[torch.dtype, int] = field(default_factory=dict)
    shipped: Mapping[str, str] = field(default_factory=dict)
    query_layers: tuple[str, ...] = ()

    @property
    def tileable(self) -> bool:
        return self.receptive_radius is not None

    def check_width(self, width: int) -> None:
        """A :class:`UserError` naming ``width`` when the architecture cannot have it."""
        problem = self.width_rule(width)
        if problem:
            raise UserError(f"width {width}: {self.title} needs {problem} (default {self.default_width})")

    def build(self, width: int | None = None) -> nn.Module:
        """The network of ``width`` (default: the reference's), randomly initialised as torch does."""
        width = self.default_width if width is None else width
        self.check_width(width)
        return self.builder(width)

    def shipped_path(self, name: str = "default") -> str:
        """The absolute path of the shipped weights ``name``."""
        if name not in self.shipped:
            raise UserError(f"no weights named {name!r} ship for {self.title}; "
                            f"shipped: {', '.join(self.shipped) or 'none'}")
        return os.path.join(REPO, self.shipped[name])

    def check_crop(self, size: int, name: str = "crop") -> None:
        """A training crop must be a multiple of :attr:`size_multiple` (nothing is padded while training);
        ``name`` names the value in the message (a parameter, or the caller's flag)."""
        m = self.size_multiple
        if size % m:
            raise UserError(f"{name} {size} is not a multiple of {m}, which the {self.title} enhancer needs; "
                            f"use {size - size % m or m}")


def _build_dce(width: int) -> nn.Module:
    from network.dce import enhance_net_nopool

    return enhance_net_nopool(number_f=width)


def _build_emnet(width: int) -> nn.Module:
    from network.emnet import EMNet

    return EMNet(dim=width)


def _positive(width: int) -> str | None:
    return None if width >= 1 else "a positive width"


def _even(width: int) -> str | None:
    return None if width >= 2 and width % 2 == 0 else "an even width >= 2"


ARCHS: dict[str, ArchSpec] = {
    "dce": ArchSpec(
        name="dce", title="DCE-Net", class_name="enhance_net_nopool", hub="dce_net", builder=_build_dce,
        default_width=32, width_rule=_positive,
        signature="e_conv1.weight", width_of=lambda s: int(s["e_conv1.weight"].shape[0]),
        size_multiple=1, receptive_radius=7, channels_last=True, curve_maps=True,  # seven 3x3 convolutions
        bytes_per_pixel={torch.float32: 1200, torch.bfloat16: 600, torch.float16: 600},
        shipped={"default": "checkpoints/LLE_model.pth", "supervised": "checkpoints/LLE_model_supervised.pth"},
        query_layers=("e_conv1", "e_conv2", "e_conv3", "e_conv4")),
    "emnet": ArchSpec(
        name="emnet", title="EMNet", class_name="EMNet", hub="emnet", builder=_build_emnet,
        default_width=32, width_rule=_even,
        signature="patch_embed.proj.weight", width_of=lambda s: int(s["patch_embed.proj.weight"].shape[0]),
        size_multiple=8, receptive_radius=None, channels_last=False, curve_maps=False,  # attention: whole image
        query_layers=("encoder_level1", "encoder_level2", "encoder_level3", "decoder_latent")),
}

#: The ``--arch`` choices; ``auto`` (where a checkpoint is read) recognises the architecture from its keys.
ARCH_NAMES = tuple(sorted(ARCHS))
#: Memory per pixel assumed for an architecture that has not measured it.
UNMEASURED_BYTES_PER_PIXEL = 8000


def get_spec(name: str) -> ArchSpec:
    """The record of the architecture ``name``; a :class:`UserError` listing the known ones otherwise."""
    if name not in ARCHS:
        raise UserError(f"unknown enhancer {name!r}; choose one of {', '.join(ARCH_NAMES)}")
    return ARCHS[name]


def spec_from_state(state: Mapping[str, torch.Tensor]) -> tuple[ArchSpec, int] | None:
    """``(spec, width)`` of the architecture whose signature key the state dict holds; failing that, of the one
    most of whose keys it holds (a damaged checkpoint missing its signature key, at the default width, so that
    loading it names the missing keys); None when no architecture owns most of its keys."""
    for spec in ARCHS.values():
        if spec.signature in state:
            return spec, spec.width_of(state)
    keys = set(state)
    share = {name: len(keys & _keys_of(name)) / max(1, len(keys)) for name in ARCHS}
    best = max(share, key=share.get)
    return (ARCHS[best], ARCHS[best].default_width) if share[best] > 0.5 else None


@functools.lru_cache(maxsize=None)
def _keys_of(name: str) -> frozenset[str]:
    """The state-dict keys of architecture ``name`` (built once, at its default width)."""
    return frozenset(ARCHS[name].build().state_dict())


#: The facts assumed for a network that is not in the registry (a researcher's own module): any input size,
#: not tileable, memory per pixel unmeasured.
CUSTOM = ArchSpec(name="custom", title="custom enhancer", class_name="", hub="", builder=lambda w: nn.Identity(),
                  default_width=0, width_rule=lambda w: None, signature="", width_of=lambda s: 0)


def spec_of(model: nn.Module, default: ArchSpec | None = None) -> ArchSpec:
    """The record of a network built from the registry (matched by class name), looking inside
    DistributedDataParallel's ``module`` and the :class:`network.enhancer.Enhancer`'s ``net``; ``default``
    (e.g. :data:`CUSTOM`) for a network the registry does not know, else a :class:`UserError`."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    if isinstance(getattr(model, "spec", None), ArchSpec):  # the Enhancer wrapper
        return model.spec
    for spec in ARCHS.values():
        if spec.class_name == type(model).__name__:
            return spec
    if default is not None:
        return default
    raise UserError(f"{type(model).__name__} is not an enhancer of the registry ({', '.join(ARCH_NAMES)})")

"""Memory queries: which network describes a low-light image for EMNet's memory, and how a memory names it.

* ``"resnet18"`` (the reference, SPEC §6): ImageNet ResNet-18's pooled features (512), from
  ``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth`` (:func:`network.memory.build_query_net`).
* ``"enhancer"`` (this project's addition): the frozen enhancer's own features — the mean and standard
  deviation over the image of each feature map of the layers its registry record lists
  (:attr:`network.registry.ArchSpec.query_layers`): EMNet's three encoder levels and its latent
  (``2·15·dim`` numbers, 240 at width 8), DCE-Net's first four convolutions (256). Nothing to download:
  the enhancer checkpoint is all a memory built with it needs, so a shipped memory works on a machine
  without ImageNet weights.

A memory checkpoint records its query under the extra key ``"query"`` only when it is not the reference's
(the reference layout, :data:`utils.training_checkpoint.MEMORY_KEYS`, is unchanged; the reference's own
loader ignores the extra key); a checkpoint without it is a ResNet-18 memory.
"""
from __future__ import annotations

import torch
from torch import nn

from utils.errors import UserError

QUERY_KINDS = ("resnet18", "enhancer")
REFERENCE_QUERY = "resnet18"


class EnhancerQuery(nn.Module):
    """(N, 3, H, W) low images in [0, 1] → (N, K) features of the frozen ``enhancer`` (an
    :class:`network.enhancer.Enhancer`): per layer of ``spec.query_layers``, each channel's mean and
    standard deviation over the image, concatenated. The input is padded as the enhancer pads it."""

    imagenet_input = False

    def __init__(self, enhancer: nn.Module) -> None:
        super().__init__()
        from network.enhancer import as_enhancer

        self.enhancer = as_enhancer(enhancer)
        spec = self.enhancer.spec
        if not spec.query_layers:
            raise UserError(f"the {spec.title} enhancer names no feature layers for an enhancer query; "
                            f"use --query resnet18")
        self.layers = [getattr(self.enhancer.net, name) for name in spec.query_layers]
        # The features of the enhancer's last plain forward pass (hooks kept on the network): a query of the
        # image the enhancer has just enhanced reuses them instead of running the network again.
        self._seen: dict[str, object] = {}
        self.enhancer.net.register_forward_pre_hook(lambda _m, args: self._seen.update(input=args[0], feats=[]))
        for m in self.layers:
            m.register_forward_hook(lambda _m, _i, out: self._seen.setdefault("feats", []).append(_stats(out)))

    @property
    def dim(self) -> int:
        """K: two numbers per channel of every query layer."""
        return 2 * sum(_out_channels(m) for m in self.layers)

    def train(self, mode: bool = True) -> "EnhancerQuery":
        return super().train(False)  # frozen, like the enhancer it reads

    @torch.no_grad()
    def forward(self, low: torch.Tensor) -> torch.Tensor:
        from network.enhancer import pad_to_multiple

        x = pad_to_multiple(low, self.enhancer.spec.size_multiple)[0]
        seen = self._seen.get("input")
        if not (torch.is_tensor(seen) and seen.shape == x.shape and seen.device == x.device and torch.equal(seen, x)
                and len(self._seen.get("feats", [])) == len(self.layers)):
            stop = self.layers[-1].register_forward_hook(_stop)  # the layers after the last one are not needed
            try:
                self.enhancer.net(x)  # the hooks record its features
            except _Enough:
                pass
            finally:
                stop.remove()
        stats = self._seen["feats"]
        self._seen = {}
        return torch.cat(stats, 1)


def _stats(f: torch.Tensor) -> torch.Tensor:
    """Each channel's mean and standard deviation over the image: (N, C, H, W) → (N, 2C). Kept instead of the
    feature map, which is freed as the network goes on."""
    f = f.detach().float()
    return torch.cat([f.mean((2, 3)), f.std((2, 3))], 1)


class _Enough(Exception):
    """Raised by :func:`_stop` once the last query layer has run."""


def _stop(_module: nn.Module, _inputs, _output) -> None:
    raise _Enough


def _out_channels(module: nn.Module) -> int:
    """Channels a layer writes: a convolution's ``out_channels``, else its last convolution's or norm's width."""
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    widths = [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not widths:
        raise ValueError(f"{type(module).__name__}: no convolution to read a width from")
    return widths[-1]


def check_kind(kind: str, where: str) -> str:
    if kind not in QUERY_KINDS:
        raise UserError(f"{where}: unknown memory query {kind!r} (known: {', '.join(QUERY_KINDS)})")
    return kind


def build_query(kind: str, enhancer: nn.Module | None = None) -> nn.Module:
    """The frozen query network of ``kind``: ImageNet ResNet-18 (``"resnet18"``) or the features of
    ``enhancer`` (``"enhancer"``)."""
    check_kind(kind, "build_query")
    if kind == "enhancer":
        if enhancer is None:
            raise ValueError("build_query('enhancer') needs the enhancer")
        return EnhancerQuery(enhancer)
    from network.memory import build_query_net

    return build_query_net(pretrained=True)

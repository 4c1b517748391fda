"""SCL-LLE's curve-estimation network (DCE-Net), as the reference defines it (SPEC §1).

``enhance_net_nopool`` keeps the reference class name, state-dict keys (``e_conv{1..7}``) and forward
triple, so the official SCL-LLE and Zero-DCE checkpoints load unchanged. ``lowlight_model`` re-exports it
under the reference's module name.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from network.curves import apply_curves_in_place

# oneDNN's convolution with a fused activation (what torch.compile emits on CPU); absent without mkldnn
_HAS_FUSED_CONV = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
# oneDNN's bfloat16 convolutions need AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT; elsewhere bf16 runs the plain layers
_FUSED_DTYPES = (torch.float32,) + ((torch.bfloat16,) if getattr(torch.cpu, "_is_avx512_supported", bool)() else ())


class enhance_net_nopool(nn.Module):  # noqa: N801 (reference name)
    """DCE-Net: seven 3x3 convolutions predicting eight 3-channel curve maps (79,416 parameters).

    Input (N,3,H,W) in [0,1], any H, W. Returns ``(image after 4 curve steps, image after 8 steps,
    r)`` where ``r`` (N,24,H,W) concatenates the curve maps r1..r8 in [-1,1].

    What callers need to know about it (any input size, receptive radius, memory per pixel) is in its
    record in :mod:`network.registry`.
    """

    def __init__(self, number_f: int = 32) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.e_conv1 = nn.Conv2d(3, number_f, 3, 1, 1, bias=True)
        self.e_conv2 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv3 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv4 = nn.Conv2d(number_f, number_f, 3, 1, 1, bias=True)
        self.e_conv5 = nn.Conv2d(number_f * 2, number_f, 3, 1, 1, bias=True)
        self.e_conv6 = nn.Conv2d(number_f * 2, number_f, 3, 1, 1, bias=True)
        self.e_conv7 = nn.Conv2d(number_f * 2, 24, 3, 1, 1, bias=True)

    def curve_maps(self, x: torch.Tensor, conv: Callable[..., torch.Tensor] | None = None,
                   join: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        """The curve maps r (N,24,H,W) in [-1,1] of an input x (N,3,H,W) in [0,1].

        ``conv(layer, t, act)`` runs one convolution followed by ``act`` ("relu" or "tanh"); the default is
        the reference's ``relu(layer(t))`` / ``tanh(layer(t))``. ``join(layer, a, b, act)`` is the same on
        the channel concatenation of a and b (default: ``conv`` on ``torch.cat([a, b], 1)``).
        """
        conv = conv or self._conv
        join = join or (lambda layer, a, b, act="relu": conv(layer, torch.cat([a, b], 1), act))
        x1 = conv(self.e_conv1, x)
        x2 = conv(self.e_conv2, x1)
        x3 = conv(self.e_conv3, x2)
        x4 = conv(self.e_conv4, x3)
        x5 = join(self.e_conv5, x3, x4)
        del x3, x4  # without gradients each feature map is freed as soon as it is last read
        x6 = join(self.e_conv6, x2, x5)
        del x2, x5
        return join(self.e_conv7, x1, x6, "tanh")

    def _conv(self, layer: nn.Conv2d, t: torch.Tensor, act: str = "relu") -> torch.Tensor:
        return self.relu(layer(t)) if act == "relu" else torch.tanh(layer(t))

    def _fused_curve_maps(self, x: torch.Tensor, split: bool = True) -> torch.Tensor | None:
        """:meth:`curve_maps` with each ReLU/tanh fused into its convolution (oneDNN post-ops, the kernels
        ``torch.compile`` uses on CPU). With ``split``, ``e_conv5``/``e_conv6`` run as two convolutions on
        the halves of their concatenated input, the second adding into the first's output in place (oneDNN's
        sum post-op), so those 64-channel inputs are never written; ``e_conv7`` keeps its concatenation,
        because oneDNN fuses no tanh after a sum, and runs with its 24 outputs padded by zero filters to 32,
        which its kernels handle faster (``benchmarks/bench_enhancer.py``).
        The same sums in another order (within 1e-6; ``split=False`` keeps every concatenation and the 24
        outputs, for comparison). None where the fused kernels do not apply (not a CPU tensor, or a dtype
        other than float32/bfloat16, or bfloat16 on a CPU without AVX-512)."""
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if x.device.type != "cpu" or dtype not in _FUSED_DTYPES or not _HAS_FUSED_CONV:
            return None
        geometry = ([1, 1], [1, 1], [1, 1], 1)

        def fused(c: nn.Conv2d, t: torch.Tensor, act: str = "relu", pad: int = 0) -> torch.Tensor:
            w, b = c.weight, c.bias
            if pad:  # zero filters: extra output channels, cut off below
                w, b = nn.functional.pad(w, (0, 0, 0, 0, 0, 0, 0, pad)), nn.functional.pad(b, (0, pad))
            y = torch.ops.mkldnn._convolution_pointwise(t.to(dtype), w.to(dtype), b.to(dtype), *geometry, act, [], "")
            return y[:, :c.out_channels] if pad else y

        def join(c: nn.Conv2d, a: torch.Tensor, b: torch.Tensor, act: str = "relu") -> torch.Tensor:
            if act != "relu":
                return fused(c, torch.cat([a, b], 1), act, pad=-c.out_channels % 32)
            k = a.shape[1]
            wa, wb = (c.weight[:, s].to(dtype).contiguous() for s in (slice(0, k), slice(k, None)))
            y = torch.ops.mkldnn._convolution_pointwise(a, wa, None, *geometry, "none", [], "")
            y = torch.ops.mkldnn._convolution_pointwise_.binary(y, b, wb, c.bias.to(dtype), *geometry, "add",
                                                                1.0, None, [], "")
            return y.relu_()  # not fused: the sum post-op's ReLU fails on bfloat16 NCHW tensors

        return self.curve_maps(x, fused, join if split else None)

    def final_image(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)[1]`` (N,3,H,W) with the same float operations, for inference.

        On the CPU the convolutions run with their activations fused (:meth:`_fused_curve_maps`). The
        eight curve steps run in place on an (N,H,W,3) copy of x, reading r in its channels-last layout
        without copies; the curves are applied in float32 whatever the convolutions' dtype.
        With gradients enabled this is plain ``forward(x)[1]``.
        """
        if torch.is_grad_enabled():
            return self(x)[1]
        r = self._fused_curve_maps(x)
        return apply_curves_in_place(x, self.curve_maps(x) if r is None else r)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = self.curve_maps(x)
        curves = torch.split(r, 3, dim=1)
        for i, r_i in enumerate(curves):
            x = x + r_i * (x * x - x)  # LE(x) = x + r·(x² − x)
            if i == 3:
                enhance_image_1 = x
        return enhance_image_1, x, r


def weights_init(m: nn.Module) -> None:
    """The reference initialisation: conv weights ~ N(0, 0.02), BatchNorm weight ~ N(1, 0.02), bias 0."""
    name = type(m).__name__
    if name.find("Conv") != -1:
        m.weight.data.normal_(0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)

"""The enhance path: :class:`Enhancer` turns images into enhanced images for any architecture of the registry.

An :class:`Enhancer` holds a network of :mod:`network.registry` (DCE-Net, EMNet, or a DDP wrapper of one) and
owns what every caller used to redo: the 8-bit input (``v / 255``), padding to the architecture's size
multiple and cropping back, picking the enhanced image out of the network's output (DCE-Net's
``(4-step image, final image, curve maps)`` triple), tiling with enough context to reproduce the whole-image
result, and the 8-bit output. Its checkpoint is its network's (same state-dict keys as the reference), so
``Enhancer.state_dict()`` loads into the reference code and back. :func:`load_enhancer` reads any accepted
checkpoint layout into one; ``tools/export.py`` traces it; the torch.hub builders return one.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from network.registry import ARCH_NAMES, CUSTOM, ArchSpec, get_spec, spec_from_state, spec_of
from utils.checkpoint import extract_state_dict, load_state, read_checkpoint
from utils.errors import UserError
from utils.image_io import to_uint8, unpack_8bit

#: Context (pixels) around each tile; at least the receptive radius of every tileable architecture.
TILE_OVERLAP = 8


class UnknownEnhancer(UserError):
    """The architecture of a checkpoint could not be recognised (the caller names its flag)."""


def pad_to_multiple(x: torch.Tensor, m: int = 8) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N,C,h,w) at the bottom/right up to multiples of ``m``; returns (padded, (h, w)).

    Reflect padding as in Restormer's test script; an axis shorter than or equal to its pad
    (where reflect is impossible) is padded with replicate instead.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % m, (-w) % m
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), mode="reflect" if pad_h < h else "replicate")
    if pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), mode="reflect" if pad_w < w else "replicate")
    return x, (h, w)


def reflect_pad(x: torch.Tensor, m: int) -> torch.Tensor:
    """:func:`pad_to_multiple` without branches on the size (TorchScript- and export-friendly): always
    reflect, so H and W must be >= ``m``; the same values wherever reflect padding is possible."""
    h, w = x.shape[-2], x.shape[-1]
    return F.pad(x, [0, (m - w % m) % m, 0, (m - h % m) % m], mode="reflect")


def _even_tile(side: int, tile: int) -> int:
    """The size of the fewest equal tiles of at most ``tile`` pixels that cover ``side``."""
    parts = math.ceil(side / tile)
    return math.ceil(side / parts)


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


class Enhancer(nn.Module):
    """An enhancer network of the registry with its whole enhance path (see the module docstring).

    ``forward(x)``: x (N,3,H,W), float in [0, 1] or uint8 (8-bit values, taken as ``x / 255``), any H, W →
    the enhanced image (N,3,H,W) float, *not* clamped (EMNet's memory pools the raw output; clamp before
    converting to 8 bits, or use :meth:`enhance_8bit`). ``net`` is the network itself (the reference's
    forward, e.g. DCE-Net's triple); ``spec`` its registry record.
    """

    def __init__(self, net: nn.Module, spec: ArchSpec | None = None) -> None:
        super().__init__()
        self.net = net
        self.spec = spec or spec_of(net, CUSTOM)
        self.strength, self.exposure, self.curve_scale, self.highlight_guard = 1.0, None, 1.0, None

    def set_curve_control(self, strength: float = 1.0, exposure: float | None = None,
                          curve_scale: float = 1.0, highlight_guard: float | None = None) -> "Enhancer":
        """Scale the curve maps of every later forward pass (:mod:`network.curves`): by ``strength``, or per
        image to reach the mean brightness ``exposure`` (which wins when both are given), clipping at most
        ``highlight_guard`` percentage points of the pixels more than the model's own output where given; ``curve_scale`` S > 1
        estimates them on the image downscaled by S (:mod:`network.curve_scale`). ``strength`` 1, no
        ``exposure`` and ``curve_scale`` 1: the model's own output, bit for bit. Curve-estimation networks only."""
        from network.curve_scale import MAX_SCALE

        if not 1.0 <= curve_scale <= MAX_SCALE:
            raise UserError(f"--curve_scale {curve_scale}: must be >= 1 and <= {MAX_SCALE:g} (1: full resolution)")
        if not strength >= 0:
            raise UserError(f"--strength {strength}: must be >= 0 (1: the model's own output)")
        if exposure is not None and not 0.0 < exposure < 1.0:
            raise UserError(f"--exposure {exposure}: must be a mean brightness between 0 and 1 (e.g. 0.45)")
        if highlight_guard is not None and (exposure is None or not 0.0 <= highlight_guard <= 100.0):
            raise UserError(f"--highlight_guard {highlight_guard:g}: " + (
                "applies to --exposure; add it or drop the guard" if exposure is None
                else "must be between 0 and 100 percentage points"))
        used = [f for f, on in (("strength", strength != 1.0), ("exposure", exposure is not None),
                                ("curve_scale", curve_scale != 1.0)) if on]
        if used and not self.spec.curve_maps:
            raise UserError(f"--{used[0]} acts on curve maps, and {self.spec.title} has none: use it with a "
                            f"DCE-Net checkpoint")
        self.strength, self.exposure, self.curve_scale = float(strength), exposure, float(curve_scale)
        self.highlight_guard = highlight_guard
        return self

    @property
    def guard(self) -> float | None:
        """``highlight_guard`` as the share of pixels :func:`network.curves.solve_strength` takes (None: off)."""
        return None if self.highlight_guard is None else self.highlight_guard / 100.0

    @property
    def controlled(self) -> bool:
        """Whether :meth:`set_curve_control` changes the output."""
        return self.strength != 1.0 or self.exposure is not None

    def _controlled_final(self, x: torch.Tensor) -> torch.Tensor:
        from network.curves import apply_curves, apply_curves_in_place, solve_strength

        r = self._curve_maps(x)
        if self.exposure is not None:
            s = solve_strength(x, r, self.exposure, guard=self.guard)
        else:
            s = self.strength  # one number for every image (a constant in traced and exported graphs)
        if torch.is_grad_enabled() or _tracing():
            return apply_curves(x, r, s)
        return apply_curves_in_place(x, r, s)

    def _curve_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The network's curve maps of ``x``: oneDNN's fused kernels at inference, the layers otherwise."""
        r = None if torch.is_grad_enabled() or _tracing() else self.net._fused_curve_maps(x)
        return self.net.curve_maps(x) if r is None else r

    def _tiled_exposure(self, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
        """``--exposure`` on an image too large for one piece: the per-image scales (N,) from the curve maps of
        each tile, keeping only the pixels :func:`network.curves.solve_strength` samples from the whole image
        (every ``stride``-th row and column), then the whole image in tiles at those scales. The samples equal
        the whole image's up to float rounding, so the scale does too; the price is a second network pass."""
        from network.curves import SOLVE_PIXELS, apply_curves_in_place, solve_strength

        n, _, h, w = x.shape  # x may be uint8: each piece is unpacked on its own
        stride = max(1, math.ceil(math.sqrt(h * w / SOLVE_PIXELS)))
        xs = unpack_8bit(x[..., ::stride, ::stride]).float()
        rs, kept = None, [] if n * h * w * 24 * 4 <= KEEP_MAPS_BYTES else None
        for top, left, th, tw, t0, l0, wh, ww in _tiles(h, w, tile, overlap):
            r = self._curve_maps(unpack_8bit(x[..., t0:t0 + wh, l0:l0 + ww]))
            r0, c0 = -(-top // stride) * stride, -(-left // stride) * stride  # first sampled row, column
            part = r[..., r0 - t0:top - t0 + th:stride, c0 - l0:left - l0 + tw:stride].float()
            if rs is None:
                rs = part.new_empty(n, part.shape[1], *xs.shape[-2:])
            rs[..., r0 // stride:r0 // stride + part.shape[-2], c0 // stride:c0 // stride + part.shape[-1]] = part
            if kept is not None:  # the tile's own maps, for the curves once the scale is known
                kept.append((top, left, th, tw, r[..., top - t0:top - t0 + th, left - l0:left - l0 + tw]))
        scales = solve_strength(xs, rs, self.exposure, pixels=xs.shape[-2] * xs.shape[-1], guard=self.guard)
        if kept is not None:  # no second network pass: the curves are per pixel, so a tile at a time is exact
            out = x.new_empty(n, 3, h, w, dtype=torch.float32)
            for top, left, th, tw, r in kept:
                out[..., top:top + th, left:left + tw] = apply_curves_in_place(
                    unpack_8bit(x[..., top:top + th, left:left + tw]), r, scales)
            return out
        out = []
        for k, scale in enumerate(scales.tolist()):
            fixed = Enhancer(self.net, self.spec)
            fixed.strength = scale  # may be negative (darkening curves), which --strength does not take
            out.append(fixed.enhance(x[k:k + 1], tile, overlap))
        return out[0] if n == 1 else torch.cat(out)

    @property
    def arch(self) -> str:
        return self.spec.name

    # --- checkpoints are the network's (reference keys, no "net." prefix)
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)

    # --- the enhance path
    def final(self, x: torch.Tensor) -> torch.Tensor:
        """The network's enhanced image of an input already of a valid size (DCE-Net: its fused
        inference path without gradients, else element [1] of its triple; traced or exported: the plain
        forward, whose operators every exporter knows)."""
        if self.controlled:
            return self._controlled_final(x)
        final_image = None if _tracing() else getattr(self.net, "final_image", None)  # DDP has none: it runs forward
        out = final_image(x) if final_image is not None else self.net(x)
        return out[1] if isinstance(out, (tuple, list)) else out

    def _scaled(self, x: torch.Tensor, tile: int = 0, overlap: int = TILE_OVERLAP) -> torch.Tensor:
        """The enhanced image with the curve maps estimated at 1/``curve_scale`` (:mod:`network.curve_scale`):
        in bands of rows at inference, with whole-image operators when tracing or with gradients."""
        from network.curve_scale import enhance_scaled, reference_scaled

        if torch.is_grad_enabled() or _tracing():
            return reference_scaled(self.net, x, self.curve_scale, self.strength, self.exposure, self.guard)
        return enhance_scaled(self.net, x, self.curve_scale, self.strength, self.exposure, tile, overlap, self.guard)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.curve_scale != 1.0:
            return self._scaled(x)
        x = unpack_8bit(x)
        m = self.spec.size_multiple
        if m == 1:
            return self.final(x)
        h, w = x.shape[-2], x.shape[-1]
        x = reflect_pad(x, m) if _tracing() else pad_to_multiple(x, m)[0]
        return self.final(x)[..., :h, :w]

    def enhance(self, x: torch.Tensor, tile: int = 0, overlap: int = TILE_OVERLAP) -> torch.Tensor:
        """:meth:`forward` in equal pieces of at most ``tile`` x ``tile`` with ``overlap`` pixels of context on
        each side (``tile`` 0, or an image that fits: in one piece). Bounds memory on large images; for an
        architecture whose receptive radius is at most ``overlap`` (DCE-Net: 7) the stitched result equals the
        whole-image result up to float rounding (a few 1e-6; at most one 8-bit level)."""
        if self.curve_scale != 1.0:  # the network runs on the downscaled image: tiles of that one
            return self._scaled(x, tile, overlap)
        h, w = x.shape[-2:]
        if tile <= 0 or (h <= tile and w <= tile):
            return self(x)
        if not self.spec.tileable:
            raise UserError(f"tile {tile}: {self.spec.title} attends to the whole image, so tiles would change "
                            f"its output; enhance it in one piece (tile 0)")
        if self.exposure is not None:  # one scale per image, from the maps of every tile
            return self._tiled_exposure(x, tile, overlap)
        out = None
        for top, left, th, tw, t0, l0, wh, ww in _tiles(h, w, tile, overlap):
            y = self(x[..., t0:t0 + wh, l0:l0 + ww])
            if out is None:
                out = y.new_empty(*y.shape[:-2], h, w)
            out[..., top:top + th, left:left + tw] = y[..., top - t0:top - t0 + th, left - l0:left - l0 + tw]
        return out

    @torch.inference_mode()
    def enhance_8bit(self, x: torch.Tensor, tile: int = 0) -> torch.Tensor:
        """uint8 in, uint8 out: the enhanced image (N,3,H,W) of ``x`` (uint8 or float in [0, 1]) clamped and
        rounded as ``torchvision.utils.save_image`` does (``y·255 + 0.5``, truncated)."""
        y = self.enhance(x, tile)
        return torch.stack([torch.from_numpy(to_uint8(y[k].clamp(0, 1))).permute(2, 0, 1) for k in range(len(y))])


KEEP_MAPS_BYTES = 256 * 2**20  # --exposure in tiles: below this the tiles' float32 maps are kept, not recomputed


def _tiles(h: int, w: int, tile: int, overlap: int):
    """``(top, left, th, tw, t0, l0, wh, ww)`` of each tile of an h x w image: the tile ``[top, top + th) x
    [left, left + tw)`` and its window ``[t0, t0 + wh) x [l0, l0 + ww)``. Each side is split into equal tiles of
    at most ``tile`` pixels, and every window has the same shape (the tile plus ``overlap`` on both sides, or the
    image side): an edge window is moved inwards rather than cut. The allocator then reuses one set of buffers
    instead of fragmenting the heap with windows of several shapes, and hardly any pixel is computed twice."""
    th, tw = _even_tile(h, tile), _even_tile(w, tile)
    wh, ww = min(h, th + 2 * overlap), min(w, tw + 2 * overlap)
    for top in range(0, h, th):
        for left in range(0, w, tw):
            t0, l0 = min(max(0, top - overlap), h - wh), min(max(0, left - overlap), w - ww)
            yield top, left, min(th, h - top), min(tw, w - left), t0, l0, wh, ww


def as_enhancer(model: nn.Module) -> Enhancer:
    """``model`` itself if it is an :class:`Enhancer`, else an Enhancer around it (no copy)."""
    return model if isinstance(model, Enhancer) else Enhancer(model)


def build_enhancer(arch: str = "dce", embed_dim: int | None = None) -> nn.Module:
    """The network ``arch`` of the registry of width ``embed_dim`` (default: the architecture's own), torch's
    initialisation; wrap it in :class:`Enhancer` to enhance images."""
    return get_spec(arch).build(embed_dim)


def load_enhancer(arch: str, weights: str, device: torch.device | str = "cpu",
                  embed_dim: int | None = None) -> Enhancer:
    """The :class:`Enhancer` of checkpoint ``weights`` (any accepted layout) on ``device``, eval mode.

    ``arch`` ``"auto"`` recognises the architecture and width from the checkpoint's keys; a named one is
    built with width ``embed_dim`` (default: the checkpoint's) and must match the checkpoint.
    """
    state = extract_state_dict(read_checkpoint(weights, map_location=device), weights)
    found = spec_from_state(state)
    if arch == "auto":
        if found is None:
            raise UnknownEnhancer(f"{weights}: not a checkpoint of a known enhancer ({', '.join(ARCH_NAMES)})"
                                  f"; name its architecture")
        spec, embed_dim = found
    else:
        spec = get_spec(arch)
        if embed_dim is None and found is not None and found[0] is spec:
            embed_dim = found[1]  # the checkpoint's own width
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UserError(f"{weights}: {len(bad)} tensor(s) hold NaN/Inf (first: {bad[0]}); the run that wrote it "
                        f"diverged: use an earlier checkpoint")
    net = load_state(spec.build(embed_dim), state, weights)
    return Enhancer(net, spec).to(device).eval()

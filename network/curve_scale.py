"""Downscaled curve estimation (``--curve_scale S``): Zero-DCE++'s speed-up for any DCE-Net checkpoint.

DCE-Net's curve maps are smooth, so they can be estimated on a smaller image. With a scale ``S > 1``:

1. the input (N,3,H,W) is downscaled as Zero-DCE++ does it: bilinear, ``scale_factor = 1/S``,
   ``align_corners=False``, no antialiasing (``F.interpolate``), to (N,3,⌊H/S⌋,⌊W/S⌋);
2. the network estimates the 24 curve maps there (in tiles of that image when ``tile`` asks for them;
   DCE-Net's receptive radius is 7, so tiles give the same maps up to float rounding);
3. the maps are upsampled bilinearly back to H x W as Zero-DCE++ does it (``align_corners=True``, its
   ``UpsamplingBilinear2d``) and the eight curve steps run at full size, in bands of rows
   (:func:`apply_upsampled`), so the full-size maps (24 floats per pixel, 2.3 GB for 6000x4000) never
   exist whole: the memory beyond the input and the output is a few tens of MB.

The network then runs on 1/S² of the pixels; what is left at full size is the upsampling and the curve
steps. ``S`` is capped at the image's shorter side (a downscaled side of at least one pixel). ``S = 1`` is
not handled here: :class:`network.enhancer.Enhancer` keeps its own path, bit for bit.

:func:`reference_scaled` is the same computation written with whole-image operators (the full-size
maps materialised); it runs when tracing/exporting or with gradients, and is what the banded path is
checked against (within float rounding: a few 1e-7 with the shipped weights).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from network.curves import apply_curves, solve_strength
from utils.device import release_freed_memory
from utils.image_io import unpack_8bit

#: Largest accepted ``--curve_scale`` (the network would see fewer than 1/4096 of the pixels).
MAX_SCALE = 64.0
#: Full-width pixels of the source rows upsampled along the width at a time (24 maps: 25 MB in float32),
#: and input pixels of the rows :func:`downscale` reads at a time.
CHUNK_PIXELS = 1 << 18
#: Memory per full-size pixel beyond the input: the float32 output (the bands add a few MB).
OUTPUT_BYTES_PER_PIXEL = 12


def effective_scale(h: int, w: int, scale: float) -> float:
    """``scale``, capped so that the downscaled image keeps at least one pixel a side."""
    return float(min(scale, h, w))


def downscaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """(⌊h/S⌋, ⌊w/S⌋) of :func:`downscale` (as ``F.interpolate`` sizes its output), S effective."""
    s = effective_scale(h, w, scale)
    return max(1, math.floor(h / s)), max(1, math.floor(w / s))


def _taps(n_in: int, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two source indices and the weight of the second of bilinear sampling at positions ``src``."""
    src = src.clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, src - i0


def _down_taps(n_in: int, n_out: int, scale: float):
    """Taps of ``F.interpolate(scale_factor=1/scale, align_corners=False)``: source ``(d + 0.5)·S − 0.5``."""
    s = 1.0 / (1.0 / scale)  # the scale torch derives from the scale factor it is given
    return _taps(n_in, (torch.arange(n_out, dtype=torch.float32) + 0.5) * s - 0.5)


def _up_taps(n_in: int, n_out: int):
    """Taps of ``F.interpolate(size=n_out, align_corners=True)``: source ``d·(n_in − 1)/(n_out − 1)``."""
    ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return _taps(n_in, torch.arange(n_out, dtype=torch.float32) * ratio)


def downscale(x: torch.Tensor, scale: float, chunk_pixels: int = CHUNK_PIXELS) -> torch.Tensor:
    """Zero-DCE++'s downscaled input (N,3,⌊H/S⌋,⌊W/S⌋) float32 of x (N,3,H,W), uint8 (``v/255``) or float
    in [0, 1]: ``F.interpolate(x, scale_factor=1/S, mode="bilinear")``, computed from the two rows and
    columns each output pixel reads, a chunk of output rows at a time (about ``chunk_pixels`` input
    pixels), so a uint8 image is never converted whole."""
    n, c, h, w = x.shape
    s = effective_scale(h, w, scale)
    hs, ws = downscaled_size(h, w, scale)
    r0, r1, ry = _down_taps(h, hs, s)
    c0, c1, cx = _down_taps(w, ws, s)
    taps, ry = torch.stack([r0, r1], 1).to(x.device), ry.to(x.device).view(hs, 1)
    cols, cx = torch.stack([c0, c1], 1).flatten().to(x.device), cx.to(x.device)
    out = torch.empty(n, hs, ws, c, device=x.device).permute(0, 3, 1, 2)  # channels-last, as the network runs
    step = max(1, chunk_pixels // (2 * w))
    for top in range(0, hs, step):
        bottom = min(hs, top + step)
        rows = unpack_8bit(x.index_select(-2, taps[top:bottom].flatten())).unflatten(-2, (bottom - top, 2))
        y = rows[..., 0, :] * (1 - ry[top:bottom]) + rows[..., 1, :] * ry[top:bottom]  # (N,3,rows,W)
        pairs = y.index_select(-1, cols).unflatten(-1, (ws, 2))
        out[:, :, top:bottom] = pairs[..., 0] * (1 - cx) + pairs[..., 1] * cx
    return out


def small_maps(net: torch.nn.Module, xs: torch.Tensor, tile: int = 0, overlap: int = 8) -> torch.Tensor:
    """DCE-Net's curve maps (N,24,h,w) float32 of the downscaled input ``xs``, in tiles of at most ``tile``
    pixels with ``overlap`` pixels of context (the same maps up to float rounding) when it is larger."""
    h, w = xs.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return _maps(net, xs)
    out = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            t0, l0 = max(0, top - overlap), max(0, left - overlap)
            r = _maps(net, xs[..., t0:min(h, top + tile + overlap), l0:min(w, left + tile + overlap)])
            if out is None:
                out = r.new_empty(*r.shape[:-2], h, w)
            out[..., top:top + tile, left:left + tile] = r[..., top - t0:top - t0 + tile, left - l0:left - l0 + tile]
    return out


def _maps(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    r = net._fused_curve_maps(x) if hasattr(net, "_fused_curve_maps") else None
    return (net.curve_maps(x) if r is None else r).float()


def apply_upsampled(x: torch.Tensor, r: torch.Tensor, s: torch.Tensor | float | None = None,
                    chunk_pixels: int = CHUNK_PIXELS) -> torch.Tensor:
    """The eight curve steps on x (N,3,H,W) (uint8 or float in [0, 1]) with the maps ``r`` (N,24,h,w)
    upsampled bilinearly (``align_corners=True``) to H x W, each image's maps scaled by ``s`` ((N,) or a
    number; None: unscaled) and clamped to [−1, 1] after upsampling (:func:`network.curves.apply_curves`).
    Returns (N,3,H,W) float32 (a channels-last view), not clamped.

    The maps are upsampled along the width on chunks of source rows (about ``chunk_pixels`` full-width
    pixels each; a row maps to itself, so the chunking changes no value), then each band of output rows
    that lies between the same two source rows runs the eight steps, one step's map at a time
    (``p + λ·(q − p)``, then ``lerp(y, y², r)``): everything stays in the cache, and no full-size map exists."""
    n, _, h, w = x.shape
    hs = r.shape[-2]
    out = torch.empty(n, h, w, 3, dtype=torch.float32, device=x.device)
    r0, _, ry = _up_taps(hs, h)
    starts = [0] + torch.bincount(r0, minlength=hs).cumsum(0).tolist()  # output rows of source row i
    ry = ry.to(x.device)
    rows = max(2, chunk_pixels // w)
    if s is not None:
        s = torch.as_tensor(s, dtype=torch.float32).reshape(-1).expand(n).tolist()
    with one_thread():
        for k in range(n):
            xk, ok = x[k].permute(1, 2, 0), out[k].view(h, w * 3)
            for a in range(0, max(hs - 1, 1), rows - 1):  # source rows a..b, overlapping the next chunk by one
                b = min(hs - 1, a + rows - 1)
                src = F.interpolate(r[k:k + 1, :, a:b + 1].float(), size=(b - a + 1, w), mode="bilinear",
                                    align_corners=True)
                src = src[0].unflatten(0, (8, 3)).permute(2, 0, 3, 1).reshape(b - a + 1, 8, w * 3)  # (row, step, W·3)
                diff = src[1:] - src[:-1]
                for i in range(a, b if b < hs - 1 else b + 1):
                    if starts[i + 1] > starts[i]:
                        _band(xk, ok, starts[i], starts[i + 1], src[i - a], diff[i - a] if i < b else None, ry,
                              None if s is None else s[k])
    return out.permute(0, 3, 1, 2)


@contextlib.contextmanager
def one_thread():
    """torch's intra-op threads set to one for the while. The operations of :func:`downscale` and
    :func:`apply_upsampled` are small (a band of rows, a few hundred kB); with several threads torch meets
    at a barrier after each one, and a thread the OS has descheduled (other processes on the cores) stalls
    the others there. Measured on this 2-core machine at load 8 on one 1500x1000 image: the banded curve
    steps took 0.3 s on one thread and 1.5–20 s on two (as bad with two Python threads taking bands in
    turn, which meet at the GIL instead); the downscaling 0.02 s against 0.2 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _band(x: torch.Tensor, out: torch.Tensor, top: int, bottom: int, p: torch.Tensor, d: torch.Tensor | None,
          ry: torch.Tensor, s: float | None) -> None:
    """Output rows top..bottom of one image (between source rows with maps ``p`` and ``p + d``, (8, W·3)):
    ``x`` (H,W,3) uint8 or float, into ``out`` (H,W·3)."""
    y = out[top:bottom]
    y.view(bottom - top, -1, 3).copy_(x[top:bottom])
    if x.dtype == torch.uint8:
        y.div_(255.0)
    lam = ry[top:bottom].view(-1, 1)
    r, t = torch.empty_like(y), torch.empty_like(y)
    for i in range(8):  # y + r_i·(y² − y) = lerp(y, y², r_i)
        if d is None:
            r.copy_(p[i].expand_as(r))
        else:
            torch.addcmul(p[i], lam, d[i], out=r)
        if s is not None:
            r.mul_(s).clamp_(-1.0, 1.0)
        torch.mul(y, y, out=t)
        y.lerp_(t, r)


def reference_scaled(net: torch.nn.Module, x: torch.Tensor, scale: float, strength: float = 1.0,
                     exposure: float | None = None, guard: float | None = None) -> torch.Tensor:
    """The scaled enhancement with whole-image operators (traceable; the full-size maps materialised):
    ``F.interpolate`` down (Zero-DCE++'s), the network's maps, ``F.interpolate`` up to H x W
    (``align_corners=True``), :func:`network.curves.apply_curves`. Not capped at small sizes."""
    x = unpack_8bit(x)
    xs = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
    r = net.curve_maps(xs)
    s = solve_strength(xs, r, exposure, guard=guard) if exposure is not None else (
        None if strength == 1.0 else strength)
    r = F.interpolate(r, size=(x.shape[-2], x.shape[-1]), mode="bilinear", align_corners=True)
    return apply_curves(x, r, s)


def enhance_scaled(net: torch.nn.Module, x: torch.Tensor, scale: float, strength: float = 1.0,
                   exposure: float | None = None, tile: int = 0, overlap: int = 8,
                   guard: float | None = None) -> torch.Tensor:
    """The enhanced image (N,3,H,W) float32 (not clamped) of x (N,3,H,W) uint8 or float in [0, 1], its
    curve maps estimated at 1/``scale`` (see the module); ``strength``/``exposure`` as
    :meth:`network.enhancer.Enhancer.set_curve_control` (the exposure, and its highlight ``guard``, solved on
    the downscaled image and its maps). ``tile``: the network's tiles on the downscaled image (0: whole)."""
    with one_thread():
        xs = downscale(x, scale)
    r = small_maps(net, xs, tile, overlap)
    s = solve_strength(xs, r, exposure, guard=guard) if exposure is not None else (
        None if strength == 1.0 else strength)
    del xs
    release_freed_memory()
    return apply_upsampled(x, r, s)


"""Video mode of ``lowlight_test.py``: every frame of a video enhanced into a video of the same size, frame rate
and frame count (the video stream; audio is not copied).

* :class:`FrameEnhancer` enhances one frame after another through the folder mode's own path
  (:func:`inference.enhance_batch`), so a frame equals that frame enhanced as an image, bit for bit. Its
  ``temporal`` α > 0 (DCE-Net only; for ``benchmarks/flicker.py``, not a command-line flag) makes the curve
  maps an exponential moving average over the frames, ``R_t = α·R_{t−1} + (1 − α)·r_t`` (``R_0 = r_0``),
  applied to the frame itself. It is not offered because it hardly lowers flicker: on real-looking clips
  the static scene's output noise fell by under 1 % and the pan's brightness flicker rose on half of them,
  while moving content left trails (``docs/video.md``).
* :class:`VideoJob` checks the input, flags and output before the model is loaded, then runs the frames
  through a :class:`utils.video_io.VideoReader` and an atomic :func:`utils.video_io.video_writer`.

"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from inference import DTYPES, ImageFailed, _plan, enhance_batch
from network.curves import apply_curves, solve_strength
from network.enhancer import Enhancer, as_enhancer
from utils.denoise import denoise_8bit
from utils.errors import UserError
from utils.image_io import to_uint8, unpack_8bit
from utils.video_io import (OutputPlan, VideoReader, check_target, is_video_file, output_plan, probe_writer,
                            video_writer)

#: Folder-mode flags that mean nothing for a video (its frames are written by the video encoder).
IMAGE_ONLY_FLAGS = ("format", "quality", "bit_depth", "strip_metadata", "batch_size", "workers")


class _CurveMaps(Enhancer):
    """An :class:`Enhancer` whose output is DCE-Net's curve maps (N,24,H,W) instead of the image, so that
    :meth:`Enhancer.enhance` tiles them as it tiles the image."""

    def final(self, x: torch.Tensor) -> torch.Tensor:
        r = self.net._fused_curve_maps(x)
        return self.net.curve_maps(x) if r is None else r


class FrameEnhancer:
    """Enhances frames (uint8 HxWx3 RGB arrays) in order; see the module docstring. ``budget`` in bytes,
    ``tile`` as ``--tile``, ``denoise`` as ``--denoise`` (on each 8-bit frame)."""

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str = "fp32", tile: int = 0,
                 budget: float = 0.4e9, temporal: float = 0.0, denoise: float = 0.0) -> None:
        self.model = as_enhancer(model).to(memory_format=torch.channels_last)
        self.device, self.dtype, self.tile, self.budget = device, DTYPES[precision], tile, budget
        self.temporal, self.denoise = float(temporal), denoise
        if self.temporal and not self.model.spec.curve_maps:
            raise UserError(f"temporal averaging smooths curve maps, and {self.model.spec.title} has none: use a "
                            f"DCE-Net checkpoint")
        self._maps = _CurveMaps(self.model.net, self.model.spec) if self.temporal else None
        self._state: torch.Tensor | None = None  # the moving average of the curve maps

    def reset(self) -> None:
        """Forget the previous frames (a new clip)."""
        self._state = None

    def enhance_tensor(self, frame: np.ndarray) -> torch.Tensor:
        """The enhanced frame (1,3,H,W) float32 in [0, 1] on the CPU, before its 8-bit conversion."""
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None]
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        if not self.temporal:
            return enhance_batch(self.model, x, self.dtype, self.budget, self.tile).cpu()
        return self._smoothed(x).cpu()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The enhanced frame, uint8 HxWx3 RGB (rounded as images are, :func:`utils.image_io.to_uint8`)."""
        y = self.enhance_tensor(frame)
        if y.isnan().any():
            raise ImageFailed("the enhancer produced NaN/Inf pixels")
        out = to_uint8(y[0])
        return denoise_8bit(out, self.denoise) if self.denoise else out

    @torch.inference_mode()
    def _smoothed(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        _, tile = _plan(self.model, 1, h, w, self.dtype, self.budget, self.tile)
        with torch.autocast(x.device.type, self.dtype, enabled=self.dtype != torch.float32):
            r = self._maps.enhance(x, tile).float()
        if self._state is None or self._state.shape != r.shape:
            self._state = r
        else:
            self._state.mul_(self.temporal).add_(r, alpha=1.0 - self.temporal)
        xf = unpack_8bit(x)
        e = self.model
        s = solve_strength(xf, self._state, e.exposure, guard=e.guard) if e.exposure is not None else (
            e.strength if e.strength != 1.0 else None)
        return apply_curves(xf, self._state, s).clamp_(0, 1)


def check_flags(args: argparse.Namespace, video: bool) -> None:
    """For a video, the folder-mode flags it would ignore are refused (one line)."""
    if not video:
        return
    given = [f for f in IMAGE_ONLY_FLAGS if hasattr(args, f)]
    if given:
        raise UserError(f"--{given[0]} applies to images; a video's frames are written by the video encoder "
                        f"(docs/video.md): remove it")
    if int(os.environ.get("WORLD_SIZE", 1) or 1) > 1:
        raise UserError("a video is enhanced by one process: run it without torchrun")


@dataclass
class VideoJob:
    """One video to enhance: the opened input and the checked output (:meth:`prepare`), then :meth:`run`
    (the progress bar counts frames; exit status 0, every failure being a :class:`UserError` that leaves nothing
    written)."""

    reader: VideoReader
    target: OutputPlan

    @classmethod
    def prepare(cls, input_path: str, out_dir: str) -> "VideoJob":
        """Open the input (one line naming it when it cannot be read), check the output location and open an
        encoder for it."""
        plan = output_plan(input_path, out_dir)
        reader = VideoReader(input_path)
        try:
            check_target(plan, input_path)
            probe_writer(plan, reader.info.fps, (reader.info.width, reader.info.height))
        except BaseException:
            reader.close()
            raise
        return cls(reader, plan)

    def run(self, model: torch.nn.Module, device: torch.device, *, precision: str = "fp32", tile: int = 0,
            budget: float = 0.4, denoise: float = 0.0, progress: bool = True) -> int:
        """Enhance every frame into the output (``budget`` in GB); prints one summary line; returns 0."""
        info = self.reader.info
        frames = FrameEnhancer(model, device, precision, tile, budget * 1e9, denoise=denoise)
        if not info.fps_known:
            print(f"note: {self.reader.path} declares no frame rate; written at {info.fps:g} frames/s",
                  file=sys.stderr)
        start, n = time.time(), 0
        bar = tqdm(total=info.frames or None, desc="enhance", unit="frame", dynamic_ncols=True, disable=not progress)
        try:
            with self.reader, video_writer(self.target, info.fps, (info.width, info.height)) as out:
                for frame in self.reader:
                    if frame.shape[:2] != (info.height, info.width):
                        raise UserError(f"{self.reader.path}: frame {n} is {frame.shape[1]}x{frame.shape[0]}, the "
                                        f"first {info.width}x{info.height}; a video of one frame size is needed")
                    try:
                        out.write(frames(frame))
                    except ImageFailed as e:
                        raise UserError(f"{self.reader.path}: frame {n}: {e}; nothing written") from e
                    n += 1
                    bar.update()
        finally:
            bar.close()
        elapsed = time.time() - start
        if info.frames and n != info.frames:
            print(f"note: {self.reader.path} declares {info.frames} frames and {n} were decoded; the output holds "
                  f"{n}", file=sys.stderr)
        print(f"enhanced {n} frame(s) of {self.reader.path} into {self.target.path} ({info.width}x{info.height}, "
              f"{info.fps:g} frames/s, {out.codec}; video only, audio is not copied) in {elapsed:.1f}s, "
              f"{1000 * elapsed / max(n, 1):.0f} ms/frame")
        return 0


__all__ = ["FrameEnhancer", "VideoJob", "check_flags", "is_video_file"]

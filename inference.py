"""Folder inference engine of ``lowlight_test.py``: output checks, batched/tiled forward, overlapped I/O.

* :class:`OutputPlan` checks every output location before anything is computed (one line naming the path);
  :class:`OutputFormat` / :func:`output_names` choose each output's format and name (``--format``).
* :func:`enhance_batch` runs an enhancer on (N,3,H,W) within a memory budget: batches are split and
  DCE-Net images tiled when the estimate (the model's ``bytes_per_pixel``) exceeds it; out of memory
  retries with smaller tiles, then fails that image only.
* :func:`enhance_folder` decodes on worker threads ahead of the network and encodes behind it.
"""
from __future__ import annotations

import errno
import math
import os
import sys
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from datasets.folder import ImageFolder, ordered_map, same_size_batches
from lowlight_model import enhance, enhance_tiled
from network.registry import UNMEASURED_BYTES_PER_PIXEL, spec_of
from utils.errors import UserError
from utils.fs import check_writable_dir, find_blocker, temp_key, temp_target
from utils.denoise import denoise_8bit
from utils.image_io import read_image, read_metadata, save_image, to_uint8, to_uint16

DTYPES = {"fp32": torch.float32, "channels_last": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TILE_OVERLAP = 8
_FATAL_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}


class ImageFailed(Exception):
    """One image could not be enhanced (reported, the run continues)."""


#: ``--format`` → the extensions that already are that format (the first is given to renamed outputs)
FORMAT_EXTENSIONS = {"png": (".png",), "jpg": (".jpg", ".jpeg", ".jfif"), "webp": (".webp",)}
_DEEP_EXTENSIONS = (".png", ".tif", ".tiff")  # the outputs that can hold 16 bits per channel


@dataclass(frozen=True)
class OutputFormat:
    """How results are written: ``format`` "same" (each input's own) or one of :data:`FORMAT_EXTENSIONS`;
    ``quality`` for JPEG/WebP; ``bit_depth`` 8 or 16 (PNG/TIFF); ``metadata``: the input's ICC profile and
    EXIF (orientation reset to 1) embedded."""

    format: str = "same"
    quality: int = 95
    bit_depth: int = 8
    metadata: bool = True


def output_names(data: ImageFolder, fmt: str = "same", bit_depth: int = 8) -> list[str]:
    """The output path of every file of ``data``, relative to the output folder: its own relative path with
    ``fmt`` "same"; else with the extension of ``fmt`` (kept when it already is that format: ``x.jpeg`` stays
    ``x.jpeg`` with jpg). Two inputs that would get one name (``a.png`` and ``a.jpg`` with png) are resolved
    deterministically: the input already in the format keeps ``a.png``, the others keep their extension in
    front of the new one (``a.jpg.png``). A name still shared (an input named ``a.jpg.png`` too) is refused,
    and so is, with ``bit_depth`` 16, an output in an 8-bit format: one line naming the files."""
    rels = [data.relpath(i) for i in range(len(data))]
    names = list(rels)
    if fmt != "same":
        exts = FORMAT_EXTENSIONS[fmt]
        names = [r if os.path.splitext(r)[1].lower() in exts else os.path.splitext(r)[0] + exts[0] for r in rels]
        shared = {n for n, c in Counter(names).items() if c > 1}
        names = [r + exts[0] if n in shared and n != r else n for r, n in zip(rels, names)]
    first: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in first:
            raise UserError(f"{data.files[first[n]]} and {data.files[i]} would both be written to {n}; rename one "
                            f"of them")
        first[n] = i
    if bit_depth == 16:
        for i, n in enumerate(names):
            if not n.lower().endswith(_DEEP_EXTENSIONS):
                raise UserError(f"--bit_depth 16: {data.files[i]} would be written as {os.path.splitext(n)[1]}, "
                                f"which holds 8 bits; pass --format png (or remove --bit_depth)")
    return names


class OutputPlan:
    """Where each input of ``indices`` goes under ``out_dir``: same relative path, the format and name of
    :func:`output_names`."""

    def __init__(self, data: ImageFolder, indices: list[int], out_dir: str,
                 output: OutputFormat = OutputFormat()) -> None:
        names = output_names(data, output.format, output.bit_depth)
        self.targets = {i: os.path.join(out_dir, names[i]) for i in indices}
        self.inputs = {os.path.realpath(f) for f in data.files}

    def prepare(self) -> None:
        """Refuse targets that are inputs or folders, create the sub-folders, remove stale temporary files."""
        for path in self.targets.values():
            if os.path.realpath(path) in self.inputs:
                raise UserError(f"{path} is also an input image and would be overwritten; choose another --output_dir")
            if os.path.isdir(path):
                raise UserError(f"{path} is a folder where the result must go; move it or choose another --output_dir")
        names: dict[str, set[str]] = {}
        for path in self.targets.values():
            names.setdefault(os.path.dirname(path), set()).add(os.path.basename(path))
        for folder in names:  # everything checked before any folder is created
            blocker = find_blocker(folder)
            if blocker:
                raise UserError(f"{blocker} is a file where the folder {folder} must go; move it or choose another "
                                f"--output_dir")
        for folder, base in names.items():
            check_writable_dir(folder, "--output_dir", create=True)
            keys = {temp_key(b) for b in base}
            for f in os.listdir(folder):  # only leftovers of this run's own targets (safe under torchrun)
                if temp_target(f) in keys:
                    os.remove(os.path.join(folder, f))


def _plan(model: torch.nn.Module, n: int, h: int, w: int, dtype: torch.dtype, budget: float,
          tile: int) -> tuple[int, int]:
    """(images per forward pass, tile size or 0) keeping the estimated working memory under ``budget`` bytes.
    With a curve scale (:mod:`network.curve_scale`) the network sees the downscaled image, and the tiles are
    of that image; the full-size float output comes out of the budget first (at least 1/8 of it is left)."""
    spec = spec_of(model)
    if getattr(model, "curve_scale", 1.0) != 1.0:
        from network.curve_scale import OUTPUT_BYTES_PER_PIXEL, downscaled_size

        budget = max(budget - n * h * w * OUTPUT_BYTES_PER_PIXEL, budget / 8)
        h, w = downscaled_size(h, w, model.curve_scale)
    bpp = spec.bytes_per_pixel.get(dtype, UNMEASURED_BYTES_PER_PIXEL)
    tileable = spec.tileable
    if tile and tileable and max(h, w) > tile:
        return max(1, int(budget // ((tile + 2 * TILE_OVERLAP) ** 2 * bpp))), tile
    if n * h * w * bpp <= budget:
        return n, 0
    if h * w * bpp <= budget or not tileable:
        return max(1, int(budget // (h * w * bpp))), 0
    return 1, max(64, int(math.sqrt(budget / bpp)) - 2 * TILE_OVERLAP)


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e))


def _forward(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype, tile: int) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast(x.device.type, dtype, enabled=dtype != torch.float32):
        y = enhance_tiled(model, x, tile, TILE_OVERLAP) if tile else enhance(model, x)
        return y.float().clamp_(0, 1)


def enhance_batch(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype = torch.float32,
                  budget: float = 0.4e9, tile: int = 0) -> torch.Tensor:
    """The enhanced batch (N,3,H,W) float32 in [0,1] of x (N,3,H,W), within ``budget`` bytes (estimated).

    Out of memory splits the batch, then retries an image with tiles of half the size (down to 128);
    an image that still does not fit raises :class:`ImageFailed`.
    """
    n, _, h, w = x.shape
    per_pass, tile = _plan(model, n, h, w, dtype, budget, tile)
    try:
        if per_pass >= n:
            return _forward(model, x, dtype, tile)
        return torch.cat([_forward(model, x[k:k + per_pass], dtype, tile) for k in range(0, n, per_pass)])
    except Exception as e:
        if not _is_oom(e):
            raise
        if x.device.type == "cuda":
            torch.cuda.empty_cache()
    if n > 1:
        return torch.cat([enhance_batch(model, x[k:k + 1], dtype, budget, tile) for k in range(n)])
    side = (tile or max(h, w)) // 2
    spec = spec_of(model)
    if not spec.tileable or side < 128:
        gb = h * w * spec.bytes_per_pixel.get(dtype, UNMEASURED_BYTES_PER_PIXEL) / 1e9
        raise ImageFailed(f"out of memory ({h}x{w} needs about {gb:.1f} GB); free memory or pass a smaller "
                          f"--memory_budget/--tile")
    return enhance_batch(model, x, dtype, budget, side)


def _read(path: str) -> torch.Tensor:
    """(3,H,W), a view of the decoded HxWx3 array (channels-last layout, no copy): uint8 for an image of
    8-bit values (:func:`lowlight_model.enhance` divides by 255, a window at a time when tiled), else
    float32 in [0,1]."""
    return torch.from_numpy(read_image(path, keep_8bit=True)).permute(2, 0, 1)


def _write(y: np.ndarray | torch.Tensor, path: str, denoise: float = 0.0, output: OutputFormat = OutputFormat(),
           source: str | None = None) -> None:
    """Write ``y`` to ``path`` (``output``'s quality and bit depth), with the ICC profile and EXIF of the
    input ``source`` when ``output.metadata``."""
    try:
        metadata = read_metadata(source) if source and output.metadata else None
    except UserError as e:
        raise ImageFailed(str(e)) from e
    try:
        save_image(denoise_8bit(y, denoise) if denoise else y, path, output.quality, metadata=metadata,
                   bit_depth=output.bit_depth)
    except OSError as e:
        if e.errno in _FATAL_ERRNOS:
            raise UserError(f"cannot write {path} ({e.strerror}); free space or choose another --output_dir") from e
        raise ImageFailed(f"cannot write {path} ({e.strerror or e})") from e
    except ValueError as e:  # the encoder refused: EXIF over JPEG's 64 KB, a WebP over 16383 pixels a side, ...
        hint = "pass --strip_metadata" if metadata else "choose another --format"
        raise ImageFailed(f"cannot write {path} ({str(e)[:200]}); {hint}") from e


def _finish(fut: Future, name: str, failures: list[str]) -> int:
    """1 if the write of ``name`` succeeded; a failed one is reported (a fatal one re-raised)."""
    try:
        fut.result()
        return 1
    except ImageFailed as e:
        tqdm.write(f"error: {e}", file=sys.stderr)
        failures.append(name)
        return 0


def enhance_folder(model: torch.nn.Module, data: ImageFolder, output_dir: str, device: torch.device, *,
                   precision: str = "fp32", tile: int = 0, batch_size: int = 1, workers: int = 2,
                   budget: float = 0.4, indices: list[int] | None = None,
                   progress: bool = True, denoise: float = 0.0,
                   output: OutputFormat = OutputFormat()) -> tuple[int, list[str]]:
    """Enhance every image of ``data`` (or its share ``indices``) into the same relative path under
    ``output_dir`` (format, name, quality, bit depth, metadata: ``output``, see :func:`output_names`);
    ``budget`` in GB. An image that cannot be read, enhanced or written is reported and
    skipped; returns ``(written, failures)``. ``denoise`` > 0: :func:`utils.denoise.denoise_8bit` on each 8-bit
    output, in the writer threads (overlapping the next forward pass).
    """
    indices = list(range(len(data))) if indices is None else indices
    names = output_names(data, output.format, output.bit_depth)
    dtype, budget_bytes = DTYPES[precision], budget * 1e9
    model = model.to(memory_format=torch.channels_last)
    batches = same_size_batches(data, indices, batch_size)
    flat = [i for b in batches for i in b]
    failures: list[str] = []
    written, pending = 0, []
    reader = ThreadPoolExecutor(workers, thread_name_prefix="decode") if workers else None
    writer = ThreadPoolExecutor(workers, thread_name_prefix="encode") if workers else None
    decoded = ordered_map(reader, lambda i: _read(data.files[i]), flat, max(1, batch_size))
    bar = tqdm(total=len(flat), desc="enhance", unit="img", dynamic_ncols=True, disable=not progress)
    try:
        for batch in batches:
            good = _decoded(decoded, len(batch), data, failures)
            while good:  # one forward pass per image size (EXIF may differ from the header) and type (uint8/float)
                kind = (good[0][1].shape, good[0][1].dtype)
                group = [(i, img) for i, img in good if (img.shape, img.dtype) == kind]
                good = [(i, img) for i, img in good if (img.shape, img.dtype) != kind]
                x = group[0][1][None] if len(group) == 1 else torch.stack([img for _, img in group])
                ids = [i for i, _ in group]
                del group  # from here x alone holds the input
                x = x.to(device).contiguous(memory_format=torch.channels_last)  # no copy for one CPU image
                try:
                    y = enhance_batch(model, x, dtype, budget_bytes, tile).cpu()
                except ImageFailed as e:
                    tqdm.write(f"error: {data.files[ids[0]]}: {e}", file=sys.stderr)
                    failures += [data.files[i] for i in ids]
                    continue
                finally:
                    del x  # the input is freed before the results are checked and written
                pending += _submit(y, ids, data, output_dir, writer, failures, denoise, output, names)
                del y
                while len(pending) > max(1, workers):
                    written += _finish(*pending.pop(0), failures)
            bar.update(len(batch))
        for fut, name in pending:
            written += _finish(fut, name, failures)
    finally:
        bar.close()
        for pool in (reader, writer):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    return written, failures


def _submit(y: torch.Tensor, ids: list[int], data: ImageFolder, output_dir: str, writer: ThreadPoolExecutor | None,
            failures: list[str], denoise: float = 0.0, output: OutputFormat = OutputFormat(),
            names: list[str] | None = None) -> list[tuple[Future, str]]:
    """Hand each enhanced image ``y[k]`` (of input ``ids[k]``) to the writer; one with NaN is reported instead.
    Returns the pending writes as (future, input file)."""
    pending = []
    for k, i in enumerate(ids):
        # y is clamped to [0, 1] (Inf became 0 or 1): NaN is the only non-finite value left, and
        # isnan needs no float temporary of the image's size (isfinite does)
        if y[k].isnan().any():
            tqdm.write(f"error: {data.files[i]}: the enhancer produced NaN/Inf pixels; not written", file=sys.stderr)
            failures.append(data.files[i])
            continue
        target = os.path.join(output_dir, names[i] if names is not None else data.relpath(i))
        # converted here, so that the float result is freed before it is encoded
        out = to_uint16(y[k]) if output.bit_depth == 16 else to_uint8(y[k])
        job = (_write, out, target, denoise, output, data.files[i])
        pending.append((writer.submit(*job) if writer else _done(*job), data.files[i]))
    return pending


def _decoded(decoded, n: int, data: ImageFolder, failures: list[str]) -> list[tuple[int, torch.Tensor]]:
    """The next ``n`` images of ``decoded`` as (index, image); those that failed are reported and left out.
    (A function, so that no loop variable of the caller keeps an image alive after it is enhanced.)"""
    good = []
    for _ in range(n):
        i, img = next(decoded)
        if isinstance(img, Exception):
            tqdm.write(f"error: {img}", file=sys.stderr)
            failures.append(data.files[i])
        else:
            good.append((i, img))
    return good


def _done(fn, *args) -> Future:
    """Run ``fn(*args)`` now (no worker threads) and wrap its outcome in a finished Future."""
    fut: Future = Future()
    try:
        fut.set_result(fn(*args))
    except ImageFailed as e:
        fut.set_exception(e)
    return fut

"""Per-term losses of a run: a JSON-lines file, TensorBoard, optional visdom, and a loss-curve PNG."""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import sys

from utils.device import is_primary
from utils.errors import UserError
from utils.fs import atomic_write

log = logging.getLogger("train")


def cannot_write(path: str, error: OSError, needed: int = 0) -> UserError:
    """The one line for a failed write of ``path``: for a full disk, the space needed (``needed`` bytes, if
    known) and what to do."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        size = f" (about {max(1, math.ceil(needed / 1e6))} MB needed)" if needed else ""
        return UserError(f"cannot write {path}: no space left on device{size}; free space or choose another folder")
    return UserError(f"cannot write {path} ({error.strerror or error}); free space or choose another folder")


class ConsoleHandler(logging.StreamHandler):
    """Console lines (stderr) written above the progress bars with ``tqdm.write``, never onto them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)


class LogFile(logging.FileHandler):
    """``train.log``: a write that fails (a full disk) stops the run with :func:`cannot_write`'s one line
    instead of logging's traceback on stderr."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            raise cannot_write(self.baseFilename, error) from None
        super().handleError(record)


def _parse(line: str) -> dict | None:
    """One record of ``losses.jsonl``, or None for a partial or garbled line (a killed write)."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("step"), int) else None


class RunLogger:
    """Per-term losses to a JSON-lines file, TensorBoard (lazy import) and optionally visdom; rank 0 only.

    ``start_step``: the step the run starts from (0, or where it resumes). Records after it, written by an
    earlier run in the same folder (or by a killed run after its last checkpoint), are dropped, and so are
    lines that do not parse (a write cut by a kill or a full disk).
    """

    def __init__(self, run_dir: str, start_step: int = 0, tensorboard: bool = True, vis=None) -> None:
        self.enabled = is_primary()
        self.path = os.path.join(run_dir, "losses.jsonl")
        self.vis = vis
        self.writer = None
        self._truncate_after(start_step)
        if self.enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(os.path.join(run_dir, "tb"))
            except ImportError:  # pragma: no cover - tensorboard is in requirements.txt
                log.warning("tensorboard is not installed: no TensorBoard logs")

    def log(self, step: int, values: dict[str, float], prefix: str = "loss") -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, "prefix": prefix, **values}) + "\n")
        except OSError as e:
            raise cannot_write(self.path, e) from None
        for k, v in values.items():
            if self.writer is not None:
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
            if self.vis is not None:
                self.vis.line(f"{prefix}/{k}", step, v)

    def images(self, step: int, images: dict, prefix: str = "val") -> None:
        """Enhanced images ``{name: (3,H,W) tensor in [0, 1]}`` to TensorBoard (``prefix/name``) and visdom."""
        if not self.enabled:
            return
        for name, img in images.items():
            if self.writer is not None:
                self.writer.add_image(f"{prefix}/{name}", img.detach().float().clamp(0, 1).cpu(), step)
            if self.vis is not None:
                self.vis.images(f"{prefix}/{name}", img[None])

    def _truncate_after(self, step: int) -> None:
        if not (self.enabled and os.path.exists(self.path)):
            return
        with open(self.path, errors="replace") as f:
            lines = f.read().splitlines()
        records = [(line, _parse(line)) for line in lines]
        keep = [line + "\n" for line, rec in records if rec is not None and rec["step"] <= step]
        bad = sum(rec is None for _, rec in records)
        if bad:
            log.warning("%s: dropped %d unreadable line(s)", self.path, bad)
        try:
            with atomic_write(self.path, "w") as f:
                f.writelines(keep)
        except OSError as e:
            raise cannot_write(self.path, e) from None

    def close(self, plot_path: str | None = None, prefix: str = "loss") -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.close()
        if plot_path:
            try:
                plot_losses(self.path, plot_path, prefix)
            except OSError as e:
                raise cannot_write(plot_path, e) from None


def read_losses(path: str, prefix: str = "loss") -> list[dict[str, float]]:
    """The records of ``prefix`` in a ``losses.jsonl`` file, unreadable lines skipped."""
    with open(path, errors="replace") as f:
        return [r for r in map(_parse, f) if r is not None and r.get("prefix") == prefix]


def plot_losses(jsonl_path: str, png_path: str, prefix: str = "loss") -> None:
    """One panel per loss term against the step, written to ``png_path``."""
    if not os.path.exists(jsonl_path):
        return
    rows = read_losses(jsonl_path, prefix)
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[0] if k not in ("step", "prefix")]
    cols = min(4, len(keys))
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, k in zip(axes.flat, keys):
        ax.plot(steps, [r.get(k, float("nan")) for r in rows], lw=0.8)
        ax.set_title(k, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    try:
        with atomic_write(png_path, "wb") as f:
            fig.savefig(f, dpi=100, format="png")
    finally:
        plt.close(fig)

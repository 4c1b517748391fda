"""What every training stage shares: run set-up, RNG state, resumable batch order, logging and plots."""
from __future__ import annotations

import json
import logging
import os
import random
from typing import Any, Iterator

import numpy as np
import torch

from utils.device import init_distributed, is_primary, resolve_device
from utils.errors import UserError

log = logging.getLogger("train")


def setup_run(args, run_dir: str) -> tuple[torch.device, int, int]:
    """Resolve the device, join the process group under torchrun, seed ``base + rank``, set up logging.

    Returns ``(device, rank, world_size)``. Only rank 0 logs to the console and to ``run_dir/train.log``
    and writes the resolved arguments to ``run_dir/args.json``.
    """
    device = resolve_device(args.device)
    rank, world = init_distributed(device)
    seed_everything(args.random_seed + rank)
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.INFO if is_primary() else logging.WARNING)
    if is_primary():
        os.makedirs(run_dir, exist_ok=True)
        fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
        for handler in (logging.StreamHandler(), logging.FileHandler(os.path.join(run_dir, "train.log"))):
            handler.setFormatter(fmt)
            log.addHandler(handler)
        with open(os.path.join(run_dir, "args.json"), "w") as f:
            json.dump(vars(args), f, indent=2, sort_keys=True, default=str)
    log.info("device %s, world size %d", device, world)
    return device, rank, world


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(**generators: torch.Generator) -> dict[str, Any]:
    """Every RNG a resumed run needs: python, numpy, torch (CPU and CUDA) and named generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)  # loadable weights_only
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state(),
             "generators": {k: g.get_state() for k, g in generators.items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], **generators: torch.Generator) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for k, g in generators.items():
        if k in state["generators"]:
            g.set_state(state["generators"][k].cpu())


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                  min_batch: int = 1) -> list[list[int]]:
    """The batches of one epoch: a permutation drawn from ``seed + epoch``, sharded by rank.

    The order depends only on (seed, epoch), so a resumed run can skip to any batch without
    replaying the data. Batches smaller than ``min_batch`` are dropped.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()[rank::world]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [b for b in batches if len(b) >= min_batch]


class SeededItems(torch.utils.data.Dataset):
    """Wrap a dataset so the random crop/flip of item ``i`` in epoch ``e`` depends only on (seed, e, i).

    Items are requested as ``(epoch, index)`` pairs; the global torch RNG is forked, so the caller's
    RNG stream is untouched, and results do not depend on the number of DataLoader workers.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch * 100_003 + index) % 2**63)
            return self.dataset[index]


def iterate_batches(loader_factory, n: int, batch_size: int, seed: int, start_iter: int, total_iters: int,
                    rank: int = 0, world: int = 1, min_batch: int = 1) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(iteration, epoch, batch)`` from ``start_iter`` to ``total_iters`` over repeated epochs.

    ``loader_factory(batches)`` builds a DataLoader over a list of ``[(epoch, index), ...]`` batches.
    """
    per_epoch = len(epoch_batches(n, batch_size, seed, 0, rank, world, min_batch))
    if per_epoch == 0:
        raise UserError(f"the training set has {n} image(s): not enough for one batch of {min_batch} or more "
                        f"per process; add images or lower --batch_size")
    it = start_iter
    epoch, skip = divmod(start_iter, per_epoch)
    while it < total_iters:
        plan = epoch_batches(n, batch_size, seed, epoch, rank, world, min_batch)[skip:]
        plan = plan[:total_iters - it]
        for batch in loader_factory([[(epoch, i) for i in b] for b in plan]):
            yield it, epoch, batch
            it += 1
        epoch, skip = epoch + 1, 0


class RunLogger:
    """Per-term losses to a JSON-lines file, TensorBoard (lazy import) and optionally visdom; rank 0 only.

    ``start_step``: the step the run starts from (0, or where it resumes). Records after it, written by an
    earlier run in the same folder (or by a killed run after its last checkpoint), are dropped.
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
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "prefix": prefix, **values}) + "\n")
        for k, v in values.items():
            if self.writer is not None:
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
            if self.vis is not None:
                self.vis.line(f"{prefix}/{k}", step, v)

    def _truncate_after(self, step: int) -> None:
        if not (self.enabled and os.path.exists(self.path)):
            return
        with open(self.path) as f:
            keep = [line for line in f if json.loads(line)["step"] <= step]
        with open(self.path, "w") as f:
            f.writelines(keep)

    def close(self, plot_path: str | None = None, prefix: str = "loss") -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.close()
        if plot_path:
            plot_losses(self.path, plot_path, prefix)


def read_losses(path: str, prefix: str = "loss") -> list[dict[str, float]]:
    with open(path) as f:
        return [r for r in map(json.loads, f) if r.get("prefix") == prefix]


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
    fig.savefig(png_path, dpi=100)
    plt.close(fig)

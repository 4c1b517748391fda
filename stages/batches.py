"""Resumable batch order: which samples each process draws in each epoch, independent of workers; workers
that leave the stop signals to the main process."""
from __future__ import annotations

import signal
from typing import Any, Iterable, Iterator

import torch

from utils.device import is_primary
from utils.errors import UserError

# What a scheduler, a terminal or a container runtime sends to stop a run, often to the whole process group
# (Slurm, `timeout`, Kubernetes; SIGUSR1 is Slurm's `--signal=USR1@90` advance warning).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                  min_batch: int = 1) -> list[list[int]]:
    """The batches of one epoch for process ``rank``: a permutation drawn from ``seed + epoch``.

    Global batches of ``batch_size·world`` consecutive indices are split into ``world`` equal shares, so
    the shares of all ranks, concatenated in rank order, are the batch a single process with
    ``batch_size·world`` would see. The permutation is cut to a multiple of ``world`` (every rank gets as
    many batches of the same sizes). Batches smaller than ``min_batch`` are dropped. The order depends
    only on (seed, epoch), so a resumed run can skip to any batch without replaying the data.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    order = order[:n - n % world]
    step = batch_size * world
    batches = []
    for i in range(0, len(order), step):
        glob_batch = order[i:i + step]
        k = len(glob_batch) // world
        batches.append(glob_batch[rank * k:(rank + 1) * k])
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


def ignore_stop_signals(worker_id: int) -> None:  # noqa: ARG001 (DataLoader's worker_init_fn signature)
    """A DataLoader ``worker_init_fn``: the worker ignores :data:`STOP_SIGNALS` (torch's own SIGTERM handler
    would end it, and the main process with it), so a signal sent to the process group reaches the main
    process alone, which finishes its step and saves. The signals :func:`start_workers` blocked are let in."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def start_workers(loader: Iterable) -> Iterator:
    """``iter(loader)`` with :data:`STOP_SIGNALS` blocked while its workers start, so that none arrives in a
    worker before :func:`ignore_stop_signals` runs there; the main process gets any held signal afterwards."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def iterate_batches(loader_factory, n: int, batch_size: int, seed: int, start_iter: int, total_iters: int,
                    rank: int = 0, world: int = 1, min_batch: int = 1) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(iteration, epoch, batch)`` from ``start_iter`` to ``total_iters`` over repeated epochs.

    ``loader_factory(batches)`` builds a DataLoader over a list of ``[(epoch, index), ...]`` batches.
    """
    per_epoch = batches_per_epoch(n, batch_size, seed, rank, world, min_batch)
    it = start_iter
    epoch, skip = divmod(start_iter, per_epoch)
    while it < total_iters:
        plan = epoch_batches(n, batch_size, seed, epoch, rank, world, min_batch)[skip:]
        plan = plan[:total_iters - it]
        for batch in start_workers(loader_factory([[(epoch, i) for i in b] for b in plan])):
            yield it, epoch, batch
            it += 1
        epoch, skip = epoch + 1, 0


def batches_per_epoch(n: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1,
                      min_batch: int = 1) -> int:
    """Batches per epoch and process; a :class:`UserError` when the data cannot fill one."""
    per_epoch = len(epoch_batches(n, batch_size, seed, 0, rank, world, min_batch))
    if per_epoch == 0:
        raise UserError(f"the training set has {n} image(s): not enough for one batch of {min_batch} or more "
                        f"per process ({world} process(es)); add images or lower --batch_size")
    return per_epoch


def cache_dataset(dataset, what: str) -> None:
    """Decode every item of a data set that has ``stored(i)`` (the item as cached, uint8 for 8-bit files)
    once, up front: a corrupt file stops the run here, naming it, instead of hours in; the decoded images
    stay cached for every epoch and worker."""
    from tqdm import tqdm

    for i in tqdm(range(len(dataset)), desc=f"checking {what}", disable=not is_primary() or len(dataset) < 50,
                  leave=False, dynamic_ncols=True):
        dataset.stored(i)

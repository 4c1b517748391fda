"""What the two EMNet stages share: paired-data flags and their checks, loading the pairs and checking that
crops and pooling fit them, run folders. Their validation is :func:`evaluation.evaluate`'s."""
from __future__ import annotations

import argparse
import os

from network.registry import get_spec
from utils.errors import UserError
from utils.options import add_arch_arguments, add_seed_argument, add_workers_argument, at_least, resolve_arch_arguments


def add_common_arguments(p: argparse.ArgumentParser, batch_size: int, nepoch: int, arch: str = "emnet") -> None:
    g = p.add_argument_group("data (paired: LOL-v1 low/high, LOL-v2 Low/Normal)")
    g.add_argument("--train_dir", default="datasets/data/LOL-demo/our485", help="paired training split")
    g.add_argument("--val_dir", default="datasets/data/LOL-demo/eval15", help="paired validation split")
    g.add_argument("--train_ps", type=at_least(8), default=128, help="training patch size")
    g.add_argument("--batch_size", type=at_least(1), default=batch_size)
    add_workers_argument(g, default=2)
    g = p.add_argument_group("run")
    g.add_argument("--env", default="demo", help="run name: files go to <save_dir>/<env>/")
    g.add_argument("--save_dir", default="log", help="parent folder of the runs")
    add_arch_arguments(g, default=arch, auto=arch == "auto")
    g.add_argument("--nepoch", type=at_least(1), default=nepoch)
    add_seed_argument(g, default=1234)


def check_paired_arguments(args, from_checkpoint: bool = False) -> None:
    """The shared flags in range (one line naming the flag); the crop fits the architecture."""
    from stages.common import check_flags

    check_flags(args)  # the run flags; the paired flags' ranges are their validators
    resolve_arch_arguments(args, from_checkpoint)
    if args.arch != "auto":
        get_spec(args.arch).check_crop(args.train_ps, "--train_ps")


def load_pairs(args) -> tuple:
    """``(train_set, val_set)``: every pair decoded (and cached) before training starts, so a corrupt file
    stops the run at once, naming it."""
    from datasets.lol import PairedDataset
    from stages.batches import cache_dataset

    train_set = PairedDataset(args.train_dir, patch_size=args.train_ps, augment=True, cache=True)
    val_set = PairedDataset(args.val_dir, cache=True)
    cache_dataset(train_set, args.train_dir)
    cache_dataset(val_set, args.val_dir)
    return train_set, val_set


def smallest_side(dataset) -> int:
    """The shortest side (pixels) of the low-light images of a cached paired data set."""
    return min(min(dataset.stored(i)[0].shape[-2:]) for i in range(len(dataset)))


def run_dirs(args) -> tuple[str, str]:
    """``(<save_dir>/<env>, <save_dir>/<env>/models)``."""
    run_dir = os.path.join(args.save_dir, args.env)
    return run_dir, os.path.join(run_dir, "models")


def check_fits(dataset, size: int, flag: str, what: str, folder: str, multiple: int = 1) -> None:
    """``size`` (a crop or a pooling size) must fit the smallest image side of ``dataset``; else one line
    naming ``flag``, the ``what`` images (e.g. "training") and their ``folder``."""
    smallest = smallest_side(dataset)
    if size > smallest:
        raise UserError(f"{flag} {size}: larger than the smallest {what} image side ({smallest} pixels in "
                        f"{folder}); use at most {smallest - smallest % multiple}")

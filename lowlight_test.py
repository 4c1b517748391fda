"""Enhance low-light images, or evaluate an enhancer (+ memory) on paired data.

Folder mode (SCL-LLE's test script; the default with no arguments):
    python lowlight_test.py
enhances every image under ``datasets/test_data/`` into the same relative path under
``datasets/result/`` with ``checkpoints/LLE_model.pth``. Decoding and encoding run on worker threads
while the network computes; same-size images are batched (``--batch_size``); images too large for
``--memory_budget`` are processed in tiles automatically (DCE-Net). Under
``torchrun --nproc_per_node=K`` each process enhances a disjoint share of the folder.

Paired mode (EMNet's test script), chosen when ``--input_dir`` holds a low/high (or Low/Normal) layout
or with ``--mode paired``:
    python lowlight_test.py --input_dir LOL/eval15 --arch emnet --weights model_best.pth \
        --mem_weights memory_best.pth --result_dir results/lol_v1 --save_images
writes ``ori/`` and ``mem/`` images, ``result.txt``, ``results.csv`` and a comparison grid.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import torch

from inference import OutputPlan, enhance_folder
from lowlight_model import ENHANCERS, UnknownEnhancer, load_enhancer
from network.registry import spec_of
from utils.device import close_distributed, init_distributed, keep_freed_memory, resolve_device
from utils.errors import UserError, run_cli
from utils.fs import check_writable_dir
from utils.image_io import load_codecs
from utils.memory import memory_text, peak_memory

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WEIGHTS = os.path.join(REPO, "checkpoints", "LLE_model.pth")
DEFAULT_INPUT = os.path.join(REPO, "datasets", "test_data")
DEFAULT_OUTPUT = os.path.join(REPO, "datasets", "result")
PRECISIONS = ("fp32", "bf16", "fp16", "channels_last")
# Paired-evaluation flags (default None = not given) and the value used when they are not given.
PAIRED_DEFAULTS = {"mem_weights": None, "mem_size": None, "pooling_size": None, "pooling_mean": None,
                   "V_feat_dim": None, "testing_top_k": 1, "save_images": False, "grid": 4, "no_lpips": False}
FOLDER_DEFAULTS = {"tile": 0, "batch_size": 1, "workers": 2}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_dir", default=DEFAULT_INPUT, help="folder of images (default <repo>/datasets/test_data), one image, or a low/high pair folder")
    p.add_argument("--output_dir", "--result_dir", dest="output_dir", default=None,
                   help="where results go (default: <repo>/datasets/result in folder mode, results/ in paired "
                        "mode); must not be inside the input folder")
    p.add_argument("--mode", choices=["auto", "folder", "paired"], default="auto",
                   help="auto: paired if --input_dir holds low/high or Low/Normal")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="enhancer checkpoint (raw state dict or wrapped)")
    p.add_argument("--arch", default="auto", choices=["auto", *sorted(ENHANCERS)],
                   help="enhancer architecture (auto: recognised from the checkpoint)")
    p.add_argument("--embed_dim", type=int, default=None, help="enhancer width, > 0, checked against the checkpoint (only with a named --arch; default: the checkpoint's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default): reference numerics in channels-last layout (within one 8-bit level of "
                        "the plain forward); bf16: autocast, ~2x faster on CPUs with bf16, within three levels; "
                        "fp16: CUDA only; channels_last: old name of fp32")
    f = p.add_argument_group("folder mode")
    f.add_argument("--tile", type=int, default=None,
                   help="DCE-Net: process images in tiles of this size, >= 0 (default 0: automatic, only for "
                        "images that would exceed --memory_budget); equal to the whole-image result up to float "
                        "rounding")
    f.add_argument("--memory_budget", type=float, default=0.4,
                   help="GB the network may use per batch (default 0.4: a 600x400 photo in one piece, a "
                        "12-megapixel one under 2 GB in all); larger images are tiled, larger batches split")
    f.add_argument("--batch_size", type=int, default=None, help="same-size images per forward pass, >= 1 (default 1)")
    f.add_argument("--workers", type=int, default=None,
                   help="threads decoding and encoding images while the network runs, >= 0 (default 2)")
    g = p.add_argument_group("paired evaluation and external memory (EMNet)")
    g.add_argument("--mem_weights", default=None, help="memory checkpoint (mem_key/mem_vale/...); none: enhancer only")
    g.add_argument("--mem_size", type=int, default=None, help="slots the memory checkpoint must hold (checked)")
    g.add_argument("--pooling_size", type=int, default=None, help="memory pooling size, >= 1 (default: read from the memory checkpoint; given: checked)")
    g.add_argument("--pooling_mean", action="store_true", default=None, help="memory values are channel means")
    g.add_argument("--V_feat_dim", type=int, default=None, help="memory value size (default 3·p², p² with --pooling_mean)")
    g.add_argument("--testing_top_k", type=int, default=None, help="memory slots averaged, 1..slots (default 1)")
    g.add_argument("--save_images", action="store_true", default=None, help="write ori/ and mem/ images")
    g.add_argument("--grid", type=int, default=None, help="images in the comparison grid, >= 0 (default 4; 0: none)")
    g.add_argument("--no_lpips", action="store_true", default=None, help="skip LPIPS even if its weights are available")
    return p


def _check_range(args: argparse.Namespace) -> None:
    """Every numeric flag in its range: one line naming the flag and the allowed values."""
    rules = [("embed_dim", 1, "a positive integer"), ("tile", 0, ">= 0 (0: automatic)"),
             ("batch_size", 1, ">= 1"), ("workers", 0, ">= 0"), ("mem_size", 1, ">= 1"),
             ("pooling_size", 1, ">= 1"), ("V_feat_dim", 1, ">= 1"), ("testing_top_k", 1, ">= 1"), ("grid", 0, ">= 0")]
    for name, low, allowed in rules:
        value = getattr(args, name)
        if value is not None and value < low:
            raise UserError(f"--{name} {value} is out of range: use {allowed}")
    if args.tile and 0 < args.tile < 8:
        raise UserError(f"--tile {args.tile} is too small to be useful: use 0 (automatic) or >= 8, e.g. 512")
    if not args.memory_budget > 0 or args.memory_budget != args.memory_budget or args.memory_budget > 1e6:
        raise UserError(f"--memory_budget {args.memory_budget} is out of range: use a number of GB > 0, e.g. 0.4")
    if args.embed_dim is not None and args.arch == "auto":
        raise UserError("--embed_dim applies only with a named --arch, e.g. --arch emnet (--arch auto reads the width from "
                        "the checkpoint)")


def _check_mode_flags(args: argparse.Namespace, mode: str, device: torch.device) -> None:
    """Refuse flags the chosen mode would ignore; fill in the defaults of the others."""
    if args.precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 needs a CUDA device; on the CPU use --precision bf16 (or fp32)")
    own, other = (FOLDER_DEFAULTS, PAIRED_DEFAULTS) if mode == "folder" else (PAIRED_DEFAULTS, FOLDER_DEFAULTS)
    given = [k for k in other if getattr(args, k) is not None]
    if given:
        where = "paired evaluation (a low/high folder)" if mode == "folder" else "folder mode"
        raise UserError(f"--{given[0]} applies only to {where}; {args.input_dir} is run in {mode} mode, where it "
                        f"would be ignored: remove it (or pass --mode)")
    if mode == "paired" and args.precision in ("bf16", "fp16"):
        raise UserError(f"--precision {args.precision} applies to folder mode; paired evaluation runs in fp32 "
                        f"so its figures stay comparable: remove it")
    args.given = {k for k in {**own, **other} if getattr(args, k) is not None}
    for k, v in {**own, **other}.items():
        if getattr(args, k) is None:
            setattr(args, k, v)


def _detect_mode(args: argparse.Namespace) -> str:
    from datasets.lol import LAYOUTS, is_paired_dir

    if args.mode != "auto":
        return args.mode
    if is_paired_dir(args.input_dir):
        return "paired"
    if os.path.isdir(args.input_dir):
        subdirs = {d.lower(): d for d in os.listdir(args.input_dir) if os.path.isdir(os.path.join(args.input_dir, d))}
        for low, high in LAYOUTS:
            if low.lower() in subdirs and high.lower() in subdirs:
                raise UserError(f"{args.input_dir} holds {subdirs[low.lower()]}/ and {subdirs[high.lower()]}/: paired "
                                f"folders must be spelled {' or '.join('/'.join(lh) for lh in LAYOUTS)}; rename them, "
                                f"or pass --mode folder to enhance every image")
    return "folder"


def _load_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    if not os.path.exists(args.weights):
        hint = (" (the shipped checkpoint is missing: `git checkout checkpoints/LLE_model.pth`)"
                if args.weights == DEFAULT_WEIGHTS else "")
        raise UserError(f"--weights {args.weights} not found; pass --weights{hint}")
    if not os.path.isfile(args.weights):
        raise UserError(f"--weights {args.weights} is a folder; pass the checkpoint file")
    try:
        return load_enhancer(args.arch, args.weights, device, args.embed_dim)
    except UnknownEnhancer as e:
        raise UserError(f"{e} with --arch ({', '.join(sorted(ENHANCERS))})") from e


def _load_memory(args: argparse.Namespace, device: torch.device):
    """Paired mode: the memory of --mem_weights, read once (None without it); the memory flags given are
    checked against it, and without --mem_weights refused."""
    if not args.mem_weights:
        unused = [k for k in ("mem_size", "pooling_size", "pooling_mean", "V_feat_dim", "testing_top_k")
                  if k in args.given]
        if unused:
            raise UserError(f"--{unused[0]} applies only with --mem_weights (the memory checkpoint); pass "
                            f"--mem_weights or remove it")
        return None
    from network.memory import ExternalMemory

    mem = ExternalMemory.from_checkpoint(  # sizes and pooling come from the file; the flags given are checked
        args.mem_weights, map_location=device, pooling=args.pooling_size, pooling_mean=args.pooling_mean,
        value_dim=args.V_feat_dim, mem_size=args.mem_size)
    if args.testing_top_k > mem.mem_size:
        raise UserError(f"--testing_top_k {args.testing_top_k} is larger than the {mem.mem_size} slots of "
                        f"{args.mem_weights}: use 1..{mem.mem_size}")
    return mem


def _output_dir(args: argparse.Namespace, mode: str) -> str:
    out = args.output_dir or (DEFAULT_OUTPUT if mode == "folder" else "results")
    if mode == "folder":
        in_dir = args.input_dir if os.path.isdir(args.input_dir) else os.path.dirname(args.input_dir) or "."
        real_in, real_out = os.path.realpath(in_dir), os.path.realpath(out)
        if real_out == real_in:
            raise UserError(f"--output_dir {out} is the input folder: the inputs would be overwritten; "
                            f"choose another folder")
        if os.path.isdir(args.input_dir) and os.path.commonpath([real_in, real_out]) == real_in:
            raise UserError(f"--output_dir {out} is inside the input folder {in_dir}: its images would be enhanced "
                            f"again on the next run; choose a folder outside it")
    check_writable_dir(out, "--output_dir")
    return out


def _on_sigterm(signum, frame):  # noqa: ARG001 (signal handler signature)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_range(args)
    device = resolve_device(args.device)
    if not os.path.exists(args.input_dir):
        raise UserError(f"--input_dir {args.input_dir}: folder not found; check the path")
    mode = _detect_mode(args)
    _check_mode_flags(args, mode, device)
    out_dir = _output_dir(args, mode)
    if mode == "paired":
        mem = _load_memory(args, device)
        model = _load_model(args, device).to(memory_format=torch.channels_last)
        from evaluation import evaluate_paired

        evaluate_paired(model, args.input_dir, device, mem=mem, top_k=args.testing_top_k, output_dir=out_dir,
                        save_images=args.save_images, grid=args.grid, use_lpips=not args.no_lpips,
                        weights=args.weights, mem_weights=args.mem_weights)
        return 0
    return _run_folder(args, device, out_dir)


def _run_folder(args: argparse.Namespace, device: torch.device, out_dir: str) -> int:
    from datasets.folder import ImageFolder

    data = ImageFolder(args.input_dir)
    rank, world = init_distributed(device)
    indices = data.shard(rank, world)
    plan = OutputPlan(data, indices, out_dir)
    model = _load_model(args, device)
    if args.tile and not spec_of(model).tileable:
        raise UserError(f"--tile works only for enhancers with a bounded receptive field (dce); --arch {model.arch} "
                        f"attends to the whole image: run it without --tile")
    plan.prepare()  # every output folder created, nothing in the way, stale temporary files removed
    keep_freed_memory()
    load_codecs()  # library imports, like the model, before the clock starts
    if world > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    start = time.time()
    try:
        written, failures = enhance_folder(model, data, out_dir, device, precision=args.precision, tile=args.tile,
                                           batch_size=args.batch_size, workers=args.workers,
                                           budget=args.memory_budget, indices=indices, progress=rank == 0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return _summary(written, failures, data, out_dir, time.time() - start, world, device)


def _summary(written: int, failures: list[str], data, out_dir: str, elapsed: float, world: int,
             device: torch.device) -> int:
    """One summary for all processes (rank 0 prints); exit status 1 if any image failed."""
    rss, cuda = peak_memory(device)
    peak = memory_text(rss, cuda)
    if world > 1:
        import torch.distributed as dist

        parts: list = [None] * world
        dist.all_gather_object(parts, (written, failures, rss, cuda))
        written = sum(p[0] for p in parts)
        failures = [f for p in parts for f in p[1]]
        peak = memory_text(max(p[2] for p in parts), max(p[3] for p in parts)) + f" (largest of {world} processes)"
        close_distributed(barrier=False)  # the gather above already waited for every process
        if int(os.environ.get("RANK", 0)) != 0:
            return 1 if failures else 0
    per = f", {1000 * elapsed / written:.0f} ms/image" if written else ""
    print(f"enhanced {written} image(s) into {out_dir}/ in {elapsed:.1f}s{per}; peak memory {peak}")
    if data.skipped:
        print(f"note: {len(data.skipped)} file(s) in formats that are not read were skipped (e.g. "
              f"{data.skipped[0]}); convert them to PNG", file=sys.stderr)
    if failures:
        print(f"error: {len(failures)} image(s) failed and were skipped: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main(sys.argv[1:])))

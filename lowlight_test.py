r"""Enhance low-light images, or evaluate an enhancer (+ memory) on paired data.

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
writes ``ori/`` and ``mem/`` images, ``result.txt``, ``results.csv`` and a comparison grid; ``--enhanced_dir D``
puts another method's outputs in the enhancer's place. A video file (``--input clip.mp4``) is enhanced frame by
frame into a video of the same size, rate and frame count (:mod:`video`, docs/video.md).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass, fields

import torch

from inference import FORMAT_EXTENSIONS, OutputFormat, OutputPlan, enhance_folder
from lowlight_model import UnknownEnhancer, load_enhancer
from metrics.conventions import CONVENTION_NAMES, CropTooLarge
from network.curve_scale import MAX_SCALE
from network.registry import ARCH_NAMES, spec_of
from utils.device import close_distributed, cpu_has_bf16, init_distributed, keep_freed_memory
from utils.errors import UserError, run_cli
from utils.fs import check_writable_dir
from utils.image_io import load_codecs
from utils.memory import memory_text, peak_memory
from utils.model_card import brightness_control, card_path, describe
from utils.options import (OutOfRange, add_arch_arguments, add_device_argument, add_dist_timeout_argument, at_least,
                           between, parse, parser, positive, resolve_device_flag)
from utils.video_io import is_video_file
from video import VideoJob, check_flags as check_video_flags

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WEIGHTS = os.path.join(REPO, "checkpoints", "LLE_model.pth")
DEFAULT_INPUT = os.path.join(REPO, "datasets", "test_data")
DEFAULT_OUTPUT = os.path.join(REPO, "datasets", "result")
PRECISIONS = ("fp32", "bf16", "fp16", "channels_last")


@dataclass(frozen=True)
class FolderOptions:
    """The folder mode's own flags (given or their defaults)."""

    tile: int = 0
    batch_size: int = 1
    workers: int = 2
    format: str = "same"
    quality: int | None = None
    bit_depth: int = 8
    strip_metadata: bool = False

    def output(self) -> OutputFormat:
        """How the results are written (:class:`inference.OutputFormat`)."""
        return OutputFormat(self.format, 95 if self.quality is None else self.quality, self.bit_depth,
                            not self.strip_metadata)


@dataclass(frozen=True)
class PairedOptions:
    """The paired mode's own flags (given or their defaults); a memory flag left None is read from the memory
    checkpoint, one given is checked against it."""

    mem_weights: str | None = None
    mem_size: int | None = None
    pooling_size: int | None = None
    pooling_mean: bool | None = None
    V_feat_dim: int | None = None  # noqa: N815 (the reference's flag name)
    testing_top_k: int = 1
    save_images: bool = False
    grid: int = 4
    no_lpips: bool = False
    metrics: str = "reference"
    crop_border: int = 0
    enhanced_dir: str | None = None


MODE_OPTIONS = {"folder": FolderOptions, "paired": PairedOptions}
MEMORY_FLAGS = ("mem_size", "pooling_size", "pooling_mean", "V_feat_dim", "testing_top_k")


def _tile(text: str) -> int:
    """``--tile``: 0 (automatic) or a tile side of at least 8 pixels."""
    value = at_least(0)(text)
    if 0 < value < 8:
        raise OutOfRange(f"{value}: too small to be useful: use 0 (automatic) or >= 8, e.g. 512")
    return value


def _mode_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of one mode: not set unless given (``SUPPRESS``), so :func:`_mode_options` can refuse those
    the mode would ignore; their defaults are the :data:`MODE_OPTIONS` dataclasses'."""
    none = argparse.SUPPRESS
    f = p.add_argument_group("folder mode")
    f.add_argument("--tile", type=_tile, default=none,
                   help="DCE-Net: process images in tiles of this size (default 0: automatic, only for images that "
                        "would exceed --memory_budget); equal to the whole-image result up to float rounding")
    f.add_argument("--memory_budget", type=positive(), default=0.4,
                   help="GB the network may use per batch (default 0.4: a 600x400 photo in one piece, a "
                        "12-megapixel one under 2 GB in all); larger images are tiled, larger batches split")
    f.add_argument("--batch_size", type=at_least(1), default=none, help="same-size images per forward pass (default 1)")
    f.add_argument("--workers", type=at_least(0), default=none,
                   help="threads decoding and encoding images while the network runs (default 2)")
    f.add_argument("--format", choices=("same", *FORMAT_EXTENSIONS), default=none,
                   help="output format (default same: each input's own format and name; an input without ICC/EXIF gives the "
                        "same file as before, bit for bit). "
                        "png/jpg/webp change the extension; when two inputs would get one name (a.png and a.jpg "
                        "with png), the one already in the format keeps it and the other keeps its extension in "
                        "front: a.jpg.png")
    f.add_argument("--quality", type=between(1, 100, int), default=none, metavar="Q",
                   help="JPEG and WebP quality 1..100 (default 95)")
    f.add_argument("--bit_depth", type=int, choices=(8, 16), default=none,
                   help="bits per channel of the outputs (default 8); 16: the network's float output rounded to "
                        "16 bits, for PNG/TIFF outputs only (with --format same every input must be PNG/TIFF)")
    f.add_argument("--strip_metadata", action="store_true", default=none,
                   help="write no metadata (default: each input's ICC profile and EXIF are kept, the EXIF "
                        "orientation reset to 1 since the pixels are written upright)")
    g = p.add_argument_group("paired evaluation and external memory (EMNet)")
    g.add_argument("--mem_weights", default=none,
                   help="memory checkpoint (mem_key/mem_vale/...) (default: none, the enhancer alone)")
    g.add_argument("--mem_size", type=at_least(1), default=none,
                   help="slots the memory checkpoint must hold (default: not checked)")
    g.add_argument("--pooling_size", type=at_least(1), default=none,
                   help="memory pooling size (default: read from the memory checkpoint; given: checked)")
    g.add_argument("--pooling_mean", action="store_true", default=none, help="memory values are channel means")
    g.add_argument("--V_feat_dim", type=at_least(1), default=none,
                   help="memory value size (default 3·p², p² with --pooling_mean)")
    g.add_argument("--testing_top_k", type=at_least(1), default=none,
                   help="memory slots averaged, 1..slots (default 1)")
    g.add_argument("--save_images", action="store_true", default=none, help="write ori/ and mem/ images")
    g.add_argument("--grid", type=at_least(0), default=none, help="images in the comparison grid (default 4; 0: none)")
    g.add_argument("--no_lpips", action="store_true", default=none, help="skip LPIPS even if its weights are available")
    g.add_argument("--metrics", choices=CONVENTION_NAMES, default=none,
                   help="PSNR/SSIM convention (default reference: scikit-image on 8-bit RGB, 7x7 SSIM window; "
                        "basicsr_rgb: 11x11 Gaussian SSIM as BasicSR; basicsr_y: both on the BT.601 Y channel)")
    g.add_argument("--crop_border", type=at_least(0), default=none,
                   help="pixels left out at each edge before PSNR/SSIM (default 0)")
    g.add_argument("--enhanced_dir", default=none, metavar="D",
                   help="another method's outputs for the low images (same names): scored as ori, refined by "
                        "--mem_weights as mem, instead of --weights' outputs (default: none; docs/inference.md)")


def build_parser() -> argparse.ArgumentParser:
    p = parser(description=__doc__)  # utils.options.HelpFormatter: every default shown
    g = p.add_argument_group("input and output")
    g.add_argument("--input_dir", "--input", dest="input_dir", default=DEFAULT_INPUT,
                   help="folder of images (default <repo>/datasets/test_data), one image, a video file "
                        "(docs/video.md), or a low/high pair folder")
    g.add_argument("--output_dir", "--result_dir", dest="output_dir", default=None,
                   help="where results go (default: <repo>/datasets/result in folder mode, results/ in paired "
                        "mode); must not be inside the input folder")
    g.add_argument("--mode", choices=["auto", "folder", "paired"], default="auto",
                   help="auto: paired if --input_dir holds low/high or Low/Normal")
    g = p.add_argument_group("enhancer, device and precision")
    g.add_argument("--weights", default=DEFAULT_WEIGHTS, help="enhancer checkpoint (raw state dict or wrapped)")
    add_arch_arguments(g, default="auto", auto=True)
    add_device_argument(g)
    g.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default): reference numerics in channels-last layout (within one 8-bit level of "
                        "the plain forward); bf16: autocast, ~2x faster on CPUs with bf16, within three levels; "
                        "fp16: CUDA only; channels_last: old name of fp32")
    g.add_argument("--curve_scale", type=between(1.0, MAX_SCALE), default=1.0, metavar="S",
                   help="DCE-Net: estimate the curve maps on the image downscaled by S (Zero-DCE++'s bilinear "
                        "resampling), upsample them and apply the curves at full size: about S² less network work "
                        "(8: a 6000x4000 photo several times faster, docs/performance.md); default 1: full "
                        "resolution, bit for bit")
    c = p.add_argument_group("brightness (DCE-Net: the curve maps scaled at test time, no retraining)")
    c.add_argument("--exposure", type=_exposure_value, default=None, metavar="E",
                   help="bring each image's mean output brightness to E (e.g. 0.45) by scaling its curve maps with "
                        "one number found per image; off: the model's own brightness (default: the checkpoint's "
                        "card, <weights>.json, if it has one, else off)")
    c.add_argument("--highlight_guard", type=between(0.0, 100.0), default=None, metavar="PTS",
                   help="with --exposure: brighten no further than clipping PTS percentage points more pixels "
                        "than the model's own output (e.g. 0.5; default: the card's, else no guard)")
    c.add_argument("--strength", type=at_least(0.0, float), default=1.0, metavar="S",
                   help="scale every curve map by S: below 1 gentler, above 1 stronger, 0 the input (default 1: the "
                        "model's own output, bit for bit); ignored with --exposure")
    g = p.add_argument_group("denoising (after the enhancer)")
    g.add_argument("--denoise", type=at_least(0.0, float), default=0.0, metavar="S",
                   help="remove the noise the curves amplify: non-local means on the 8-bit output, chroma strongly, "
                        "luminance lightly, set from each image's own noise level times S (1: as measured in "
                        "docs/quality.md; default 0: off, the enhancer's output bit for bit)")
    add_dist_timeout_argument(p.add_argument_group("several processes (torchrun)"))
    _mode_arguments(p)
    return p


def _check_flags(args: argparse.Namespace, device: torch.device) -> None:
    """The relations between flags that their validators cannot see."""
    if args.embed_dim is not None and args.arch == "auto":
        raise UserError("--embed_dim applies only with a named --arch, e.g. --arch emnet (--arch auto reads the width "
                        "from the checkpoint)")
    if args.precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 needs a CUDA device; on the CPU use --precision bf16 (or fp32)")
    if args.precision == "bf16" and device.type == "cpu" and cpu_has_bf16() is False:
        print("note: this CPU has no bf16 instructions (AVX-512 BF16 or AMX), so --precision bf16 is emulated "
              "and about 10x slower than fp32 here; drop it", file=sys.stderr)


def _mode_options(args: argparse.Namespace, mode: str) -> FolderOptions | PairedOptions:
    """The chosen mode's options; a flag of the other mode (which it would ignore) is refused."""
    own = MODE_OPTIONS[mode]
    other = MODE_OPTIONS["paired" if mode == "folder" else "folder"]
    given = [f.name for f in fields(other) if hasattr(args, f.name)]
    if given:
        where = "paired evaluation (a low/high folder)" if mode == "folder" else "folder mode"
        raise UserError(f"--{given[0]} applies only to {where}; {args.input_dir} is run in {mode} mode, where it "
                        f"would be ignored: remove it (or pass --mode)")
    if mode == "paired" and args.precision in ("bf16", "fp16"):
        raise UserError(f"--precision {args.precision} applies to folder mode; paired evaluation runs in fp32 "
                        f"so its figures stay comparable: remove it")
    opts = own(**{f.name: getattr(args, f.name) for f in fields(own) if hasattr(args, f.name)})
    if mode == "paired" and not opts.mem_weights:
        unused = [k for k in MEMORY_FLAGS if hasattr(args, k)]
        if unused:
            raise UserError(f"--{unused[0]} applies only with --mem_weights (the memory checkpoint); pass "
                            f"--mem_weights or remove it")
    return opts


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


def _exposure_value(v: str) -> float | str:
    """``--exposure``: a mean brightness in [0, 1], or ``off`` (the model's own brightness, whatever its card says)."""
    return "off" if v.strip().lower() == "off" else between(0.0, 1.0)(v)


def _load_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    if not os.path.exists(args.weights):
        hint = (" (the shipped checkpoint is missing: `git checkout checkpoints/LLE_model.pth`)"
                if args.weights == DEFAULT_WEIGHTS else "")
        raise UserError(f"--weights {args.weights} not found; pass --weights{hint}")
    if not os.path.isfile(args.weights):
        raise UserError(f"--weights {args.weights} is a folder; pass the checkpoint file")
    try:
        model = load_enhancer(args.arch, args.weights, device, args.embed_dim)
    except UnknownEnhancer as e:
        raise UserError(f"{e} with --arch ({', '.join(ARCH_NAMES)})") from e
    control, card = brightness_control(args.weights, args.exposure, args.strength, args.highlight_guard)
    if card:
        print(f"{args.weights}: {describe(card)} from its card {card_path(args.weights)} (--exposure off: the "
              f"network's own output)", file=sys.stderr)
    model.set_curve_control(args.strength, curve_scale=args.curve_scale, **control)
    if args.curve_scale != 1.0:
        print(f"curve maps estimated at 1/{args.curve_scale:g} of each image's size (--curve_scale)", file=sys.stderr)
    return model


def _load_memory(opts: PairedOptions, device: torch.device):
    """Paired mode: the memory of --mem_weights, read once (None without it); the memory flags given are
    checked against it."""
    if not opts.mem_weights:
        return None
    from network.memory import ExternalMemory

    mem = ExternalMemory.from_checkpoint(  # sizes and pooling come from the file; the flags given are checked
        opts.mem_weights, map_location=device, pooling=opts.pooling_size, pooling_mean=opts.pooling_mean,
        value_dim=opts.V_feat_dim, mem_size=opts.mem_size)
    if opts.testing_top_k > mem.mem_size:
        raise UserError(f"--testing_top_k {opts.testing_top_k} is larger than the {mem.mem_size} slots of "
                        f"{opts.mem_weights}: use 1..{mem.mem_size}")
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


class Terminated(KeyboardInterrupt):
    """SIGTERM stopped the run (the pending images are dropped like on Ctrl-C); the command exits 143."""


def _on_sigterm(signum, frame):  # noqa: ARG001 (signal handler signature)
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    device = resolve_device_flag(args.device)
    _check_flags(args, device)
    if not os.path.exists(args.input_dir):
        raise UserError(f"--input_dir {args.input_dir}: no such folder or file; check the path")
    mode = _detect_mode(args)
    opts = _mode_options(args, mode)
    video = mode == "folder" and os.path.isfile(args.input_dir) and is_video_file(args.input_dir)
    check_video_flags(args, video)
    out_dir = _output_dir(args, mode)
    if video:
        return _run_video(args, device, out_dir)
    if mode == "folder":
        return _run_folder(args, opts, device, out_dir)
    mem = _load_memory(opts, device)
    if opts.enhanced_dir:
        _check_enhanced(args)
    model = (None if opts.enhanced_dir and (mem is None or mem.query_kind != "enhancer")  # not run: D replaces it
             else _load_model(args, device).to(memory_format=torch.channels_last))
    from evaluation import evaluate_paired

    try:
        evaluate_paired(model, args.input_dir, device, mem=mem, top_k=opts.testing_top_k, output_dir=out_dir,
                        save_images=opts.save_images, grid=opts.grid, use_lpips=not opts.no_lpips,
                        weights=args.weights, mem_weights=opts.mem_weights, convention=opts.metrics,
                        crop_border=opts.crop_border, denoise=args.denoise, enhanced_dir=opts.enhanced_dir)
    except CropTooLarge as e:
        raise UserError(f"--{e} (in {args.input_dir}): use a smaller --crop_border") from e
    return 0


def _check_enhanced(args: argparse.Namespace) -> None:
    """--enhanced_dir scores another method's images as they are: the flags that change an enhancer's output
    would be ignored."""
    changed = [f for f, on in (("denoise", args.denoise), ("strength", args.strength != 1.0),
                               ("exposure", args.exposure not in (None, "off")),
                               ("highlight_guard", args.highlight_guard is not None),
                               ("curve_scale", args.curve_scale != 1.0)) if on]
    if changed:
        raise UserError(f"--{changed[0]} changes the enhancer's output, and --enhanced_dir's images are scored as "
                        f"given: remove it")


def _run_video(args: argparse.Namespace, device: torch.device, out_dir: str) -> int:
    """A video file: its frames enhanced into a video of the same size, rate and count (:mod:`video`)."""
    job = VideoJob.prepare(args.input_dir, out_dir)  # the input opened, the output and encoder checked
    try:
        model = _load_model(args, device)
    except BaseException:
        job.reader.close()
        raise
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return job.run(model, device, precision=args.precision, tile=getattr(args, "tile", 0),
                       budget=args.memory_budget, denoise=args.denoise)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_folder(args: argparse.Namespace, opts: FolderOptions, device: torch.device, out_dir: str) -> int:
    from datasets.folder import ImageFolder

    if opts.bit_depth == 16 and opts.format in ("jpg", "webp"):
        raise UserError(f"--bit_depth 16 needs a PNG/TIFF output, and --format {opts.format} holds 8 bits: use "
                        f"--format png (or remove --bit_depth)")
    if opts.bit_depth == 16 and args.denoise:
        raise UserError("--denoise works on 8-bit outputs: remove it or --bit_depth 16")
    if opts.quality is not None and opts.format == "png":
        raise UserError("--quality applies to jpg/webp outputs; --format png is lossless: remove --quality")
    data = ImageFolder(args.input_dir)
    rank, world = init_distributed(device, args.dist_timeout)
    indices = data.shard(rank, world)
    output = opts.output()
    plan = OutputPlan(data, indices, out_dir, output)
    model = _load_model(args, device)
    if opts.tile and not spec_of(model).tileable:
        raise UserError(f"--tile works only for enhancers with a bounded receptive field (dce); --arch {model.arch} "
                        f"attends to the whole image: run it without --tile")
    plan.prepare()  # every output folder created, nothing in the way, stale temporary files removed
    keep_freed_memory()
    load_codecs()  # library imports, like the model, before the clock starts
    if world > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    elif device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        from utils.threads import auto_threads

        torch.set_num_threads(auto_threads() or torch.get_num_threads())  # the cores other processes leave free
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    start = time.time()
    try:
        written, failures = enhance_folder(model, data, out_dir, device, precision=args.precision, tile=opts.tile,
                                           batch_size=opts.batch_size, workers=opts.workers,
                                           budget=args.memory_budget, indices=indices, progress=rank == 0,
                                           denoise=args.denoise, output=output)
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


def _cli() -> None:
    try:
        sys.exit(main(sys.argv[1:]))
    except Terminated:  # the conventional status of SIGTERM (run_cli gives Ctrl-C 130)
        print("stopped: SIGTERM; the files written so far are complete (a video: none, it is written whole)",
              file=sys.stderr)
        sys.exit(143)


if __name__ == "__main__":
    run_cli(_cli)

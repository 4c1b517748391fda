"""Enhance low-light images, or evaluate an enhancer (+ memory) on paired data.

Folder mode (SCL-LLE's test script; the default with no arguments):
    python lowlight_test.py
enhances every image under ``datasets/test_data/`` into the same relative path under
``datasets/result/`` with ``checkpoints/LLE_model.pth``.

Paired mode (EMNet's test script), chosen when ``--input_dir`` holds a low/high (or Low/Normal) layout
or with ``--mode paired``:
    python lowlight_test.py --input_dir LOL/eval15 --arch emnet --weights model_best.pth \
        --mem_weights memory_best.pth --result_dir results/lol_v1 --save_images
writes ``ori/`` and ``mem/`` images, ``result.txt``, ``results.csv`` and a comparison grid.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from tqdm import tqdm

from lowlight_model import ENHANCERS, RECEPTIVE_RADIUS, SIZE_MULTIPLE, enhance, enhance_tiled, load_enhancer
from utils.device import resolve_device
from utils.errors import UserError, run_cli
from utils.image_io import save_image

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WEIGHTS = os.path.join(REPO, "checkpoints", "LLE_model.pth")
DEFAULT_INPUT = os.path.join(REPO, "datasets", "test_data")
DEFAULT_OUTPUT = os.path.join(REPO, "datasets", "result")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_dir", default=DEFAULT_INPUT, help="folder of images (default <repo>/datasets/test_data), one image, or a low/high pair folder")
    p.add_argument("--output_dir", "--result_dir", dest="output_dir", default=None,
                   help="where results go (default: <repo>/datasets/result in folder mode, results/ in paired mode)")
    p.add_argument("--mode", choices=["auto", "folder", "paired"], default="auto",
                   help="auto: paired if --input_dir holds low/high or Low/Normal")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="enhancer checkpoint (raw state dict or wrapped)")
    p.add_argument("--arch", default="auto", choices=["auto", *sorted(ENHANCERS)],
                   help="enhancer architecture (auto: recognised from the checkpoint)")
    p.add_argument("--embed_dim", type=int, default=32, help="EMNet width (with an explicit --arch emnet)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["fp32", "channels_last", "bf16"], default="fp32",
                   help="fp32 = reference numerics; channels_last and bf16 autocast are faster and may change "
                        "a few pixels by one 8-bit level (see README, benchmarks/bench_enhancer.py)")
    p.add_argument("--tile", type=int, default=0,
                   help="process images in tiles of this size to bound memory (0: whole image); --arch dce only, "
                        "equal to the whole-image result up to float rounding")
    g = p.add_argument_group("paired evaluation and external memory (EMNet)")
    g.add_argument("--mem_weights", default=None, help="memory checkpoint (mem_key/mem_vale/...); none: enhancer only")
    g.add_argument("--mem_size", type=int, default=9000)
    g.add_argument("--pooling_size", type=int, default=1)
    g.add_argument("--pooling_mean", action="store_true", help="memory values are channel means")
    g.add_argument("--V_feat_dim", type=int, default=None, help="memory value size (default 3·p², p² with --pooling_mean)")
    g.add_argument("--testing_top_k", type=int, default=1)
    g.add_argument("--save_images", action="store_true", help="write ori/ and mem/ images")
    g.add_argument("--grid", type=int, default=4, help="images in the comparison grid (0: none)")
    g.add_argument("--no_lpips", action="store_true", help="skip LPIPS even if its weights are available")
    return p


def enhance_folder(model: torch.nn.Module, input_dir: str, output_dir: str, device: torch.device,
                   multiple: int = 1, precision: str = "fp32", tile: int = 0) -> tuple[int, list[str]]:
    """Enhance every image under ``input_dir`` (recursively; or one image file) into the same relative
    path under ``output_dir``. A file that cannot be read is reported and skipped; returns ``(written, failures)``.
    """
    from datasets.folder import ImageFolder

    data = ImageFolder(input_dir)
    failures: list[str] = []
    written = 0
    for i in tqdm(range(len(data)), desc="enhance", unit="img", dynamic_ncols=True):
        try:
            x, rel = data[i]
        except UserError as e:
            tqdm.write(f"error: {e}", file=sys.stderr)
            failures.append(data.files[i])
            continue
        x = x.unsqueeze(0).to(device)
        if precision != "fp32":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            y = (enhance_tiled(model, x, tile) if tile else enhance(model, x, multiple)).float().clamp(0, 1)
        save_image(y[0], os.path.join(output_dir, rel))
        written += 1
    return written, failures


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    if not os.path.exists(args.input_dir):
        raise UserError(f"{args.input_dir}: folder not found; pass --input_dir")
    mode = args.mode
    if mode == "auto":
        from datasets.lol import is_paired_dir

        mode = "paired" if is_paired_dir(args.input_dir) else "folder"
    if not os.path.isfile(args.weights):
        hint = (" (the shipped checkpoint is missing: `git checkout checkpoints/LLE_model.pth`)"
                if args.weights == DEFAULT_WEIGHTS else "")
        raise UserError(f"weights {args.weights} not found; pass --weights{hint}")
    model = load_enhancer(args.arch, args.weights, device, args.embed_dim)
    if args.precision != "fp32":
        model = model.to(memory_format=torch.channels_last)
    if mode == "paired":
        from evaluation import evaluate_paired

        evaluate_paired(args, model, device)
        return 0
    output_dir = args.output_dir or DEFAULT_OUTPUT
    if args.tile and model.arch not in RECEPTIVE_RADIUS:
        raise UserError(f"--tile works only for {', '.join(RECEPTIVE_RADIUS)}; --arch {model.arch} attends to the "
                        f"whole image, run it without --tile")
    in_dir = args.input_dir if os.path.isdir(args.input_dir) else os.path.dirname(args.input_dir) or "."
    if os.path.realpath(output_dir) == os.path.realpath(in_dir):
        raise UserError(f"--output_dir {output_dir} is the input folder: the inputs would be overwritten; "
                        f"choose another folder")
    start = time.time()
    written, failures = enhance_folder(model, args.input_dir, output_dir, device, SIZE_MULTIPLE[model.arch],
                                      args.precision, args.tile)
    print(f"enhanced {written} image(s) into {output_dir}/ in {time.time() - start:.1f}s")
    if failures:
        print(f"error: {len(failures)} image(s) could not be read and were skipped: {', '.join(failures)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main(sys.argv[1:])))

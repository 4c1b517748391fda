"""Quality benchmark: enhancers and classic baselines on held-out synthetic pairs and real low-light photos.

    python benchmarks/quality.py [--weights A.pth B.pth ...] [--pairs datasets/data/LOL-demo/eval15]
        [--real_dir ../shared/data/LIME] [--out_md docs/quality.md] [--out_grid docs/quality_grid.jpg]
        [--denoise 1] [--memory EMNet+mem=checkpoints/EMNet_real.pth,checkpoints/memory_real.pth]

Methods: ``identity`` (the input), ``gamma 0.45`` (``x^0.45``), ``CLAHE`` (OpenCV, clip limit 2, 8x8 tiles,
on the L channel of Lab), then every ``--weights`` checkpoint (DCE-Net or EMNet, recognised from the file;
default: ``checkpoints/*.pth`` plus the official ``SCL-LLE.pth`` and ``Zero-DCE-Epoch99.pth`` from
``../shared/compat/`` when present), each again with ``lowlight_test.py``'s noise option with ``--denoise S``,
and every ``--memory`` (an EMNet enhancer refined by its memory, read with the memory's own query).

(a) **Held-out synthetic pairs** (a paired folder, by default the ``eval15`` split built by
``python -m datasets.prepare_demo``, made from held-out photos with :mod:`datasets.synthesis`): PSNR and SSIM
of the 8-bit output against the ground truth (scikit-image, data range 255, as the papers; ``--metrics
basicsr_rgb`` / ``basicsr_y`` and ``--crop_border`` for BasicSR's conventions, :mod:`metrics.conventions`), LPIPS
(AlexNet) when its ImageNet file exists, the *colour error*: the colour shift of (b) measured from the
ground truth instead of the input (``Σ_c |p_c(gt) − p_c(out)|``), and NIQE of the output (as in (b); on real
pairs such as ``sice-pairs`` the naturalness of each method's output of a real low frame). Means over the pairs. The note under
the table gives the ground truth's own colour shift from its low input: what a perfect enhancer scores on
(b)'s measure for this kind of data (dark sRGB pixels are more saturated than the same scene well exposed).

(b) **Real unpaired low-light photos** (``--real_dir``), means over the photos of (the functions of
:mod:`metrics.exposure` and :mod:`metrics.colour`):

* *brightness*: mean of the output in [0, 1] over pixels and channels;
* *clipped %*: share of pixels with any channel ≥ 254 (8 bit);
* *colour shift*: ``Σ_c |p_c(in) − p_c(out)|`` with ``p_c = mean_c / (mean_R + mean_G + mean_B)`` the
  channel proportions (0 = the input's colour balance kept; a grey image against a pure red one gives 4/3);
* *colour shift per pixel*: the mean over pixels of ``Σ_c |q_c(in) − q_c(out)|`` with ``q_c = x_c / Σ x``
  each pixel's own proportions ((1/3, 1/3, 1/3) for black). The image-level shift above weights each
  region's colour by its brightness, in the input by the input's and in the output by the output's: an
  enhancer that brightens dark regions more than bright ones (every tone curve does) moves the image's
  proportions towards the colour of its dark regions while keeping every pixel's colour. The per-pixel
  shift compares each pixel with itself and so measures only the change of colour. It counts removed
  noise as a change of colour too (a dark noisy pixel's proportions are mostly noise): it suits
  pixel-wise curves such as DCE-Net's on photos with little noise, like LIME's;
* *tone part*: the image-level colour shift of an output with the method's per-pixel brightness
  ``Σ_c out_c`` and the input's per-pixel proportions: what the image-level shift would be if the method
  changed no pixel's colour;
* *noise σ*: Immerkær's estimator (1996) on the 8-bit luminance Y (BT.601), in 8-bit levels:
  ``σ = sqrt(π/2) · Σ|Y ∗ M| / (6 (W−2)(H−2))`` with ``M = [[1,−2,1],[−2,4,−2],[1,−2,1]]`` — how much
  noise an enhancer makes visible (higher = noisier output);
* *NIQE*: :func:`metrics.niqe` (Mittal et al. 2013, the MATLAB release's definition: no-reference
  naturalness, lower = more natural), over the photos of at least two 96x96 blocks ("–" when none).

Writes a Markdown table (``--out_md``) and a grid (``--out_grid``): one row per real photo (or pair
when no real folder), input | each method, rows scaled to ``--height`` pixels.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from metrics import (brightness, build_lpips, clipped_fraction, colour_shift, lpips_available, lpips_distance,  # noqa: E402
                     niqe, noise_sigma, pixel_colour_shift, pixel_proportions, scores_8bit, tone_shift)
from metrics.conventions import CONVENTION_NAMES, describe  # noqa: E402
from utils.fs import atomic_write  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.options import at_least  # noqa: E402
from utils.image_io import list_images, read_image_uint8, save_grid_rows, to_uint8  # noqa: E402
from utils.help import HelpFormatter  # noqa: E402

SHARED = os.path.join(os.path.dirname(REPO), "shared")
OFFICIAL = {"official SCL-LLE": "SCL-LLE.pth", "official Zero-DCE": "Zero-DCE-Epoch99.pth"}
Method = Callable[[np.ndarray], np.ndarray]  # uint8 HxWx3 -> uint8 HxWx3


def gamma_method(g: float = 0.45) -> Method:
    return lambda x: to_uint8(np.power(x.astype(np.float32) / 255.0, g))


def clahe_method(clip: float = 2.0, tiles: int = 8) -> Method:
    import cv2

    clahe = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles))

    def run(x: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2LAB)
        lab[..., 0] = clahe.apply(lab[..., 0])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)

    return run


def enhancer_method(source, device: torch.device, denoise: float = 0.0, memory=None,
                    exposure: float | None = None, highlight_guard: float | None = None) -> Method:
    """A DCE-Net / EMNet checkpoint (a path, or an :class:`network.enhancer.Enhancer` already loaded) as a
    uint8 → uint8 method (fp32, whole image); ``denoise`` > 0 adds the noise option (:mod:`utils.denoise`),
    ``memory`` (a path or an :class:`network.memory.ExternalMemory`) an EMNet memory read with its own query
    (top-1, as the reference test) and refining the raw output; ``exposure`` scales DCE-Net's curve maps to
    that mean brightness (``lowlight_test.py --exposure`` and ``--highlight_guard``; the loaded enhancer itself
    is left as it is)."""
    from lowlight_model import enhance, load_enhancer
    from network.enhancer import Enhancer
    from network.memory import ExternalMemory, query
    from network.query import build_query
    from utils.denoise import denoise_8bit

    model = load_enhancer("auto", source, device) if isinstance(source, str) else source
    if exposure is not None:
        model = Enhancer(model.net, model.spec).set_curve_control(exposure=exposure, highlight_guard=highlight_guard)
    mem = ExternalMemory.from_checkpoint(memory, map_location=device) if isinstance(memory, str) else memory
    qnet = build_query(mem.query_kind, model).to(device) if mem is not None else None

    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x.transpose(2, 0, 1).copy()).float().div_(255.0)[None].to(device)
        with torch.inference_mode():
            y = enhance(model, t)
            y = mem.refine(y, mem.read(query(qnet, t))) if mem is not None else y.clamp_(0, 1)
        return denoise_8bit(to_uint8(y[0].cpu()), denoise)

    return run


def default_weights() -> list[tuple[str, str]]:
    """``(label, path)``: the repository's checkpoints, then the official ones found in ../shared/compat."""
    found = [(os.path.basename(p), p) for p in sorted(glob.glob(os.path.join(REPO, "checkpoints", "*.pth")))
             if not os.path.basename(p).startswith("memory")]  # memories refine an enhancer: --memory
    for label, name in OFFICIAL.items():
        p = os.path.join(SHARED, "compat", name)
        if os.path.isfile(p):
            found.append((label, p))
    return found


def build_methods(weights: list[tuple[str, str]], device: torch.device, baselines: bool = True,
                  denoise: float = 0.0, memories: list[tuple[str, str, str]] = (),
                  exposures: list[float] = (), guard: float | None = None) -> dict[str, Method]:
    """The baselines, each checkpoint (with ``denoise`` > 0 each again with the noise option, labelled
    ``+ denoise``; a DCE-Net with a card (:mod:`utils.model_card`) again with its card's defaults, as
    ``lowlight_test.py`` runs it, labelled ``with its card``; with ``exposures`` each DCE-Net again at each
    exposure, ``E=...``, with the highlight ``guard`` (percentage points) if given), and each ``(label,
    enhancer, memory)`` of ``memories``. Every file is read once."""
    from utils.model_card import describe, inference_defaults

    from lowlight_model import load_enhancer
    from network.memory import ExternalMemory

    methods: dict[str, Method] = {}
    if baselines:
        methods.update({"identity": lambda x: x, "gamma 0.45": gamma_method(0.45), "CLAHE": clahe_method()})
    for label, path, mem_path in [(lb, p, None) for lb, p in weights] + list(memories):
        for f in (path, mem_path):
            if f is not None and not os.path.isfile(f):
                raise UserError(f"{'--memory' if f is mem_path else '--weights'} {f}: file not found")
        model = load_enhancer("auto", path, device)
        mem = ExternalMemory.from_checkpoint(mem_path, map_location=device) if mem_path else None
        methods[label] = enhancer_method(model, device, memory=mem)
        if denoise:
            methods[f"{label} + denoise"] = enhancer_method(model, device, denoise, mem)
        if mem is None and model.spec.curve_maps:
            card = inference_defaults(path)
            if "exposure" in card:
                name = f"{label} with its card ({describe(card)})"
                methods[name] = enhancer_method(model, device, **card)
                if denoise:
                    methods[f"{name} + denoise"] = enhancer_method(model, device, denoise, **card)
            for e in exposures:
                methods[f"{label} E={e:g}" + (f" guard {guard:g}" if guard is not None else "")] = enhancer_method(
                    model, device, exposure=e, highlight_guard=guard)
    return methods


def score_pairs(methods: dict[str, Method], pairs: list[tuple[str, str]], lpips_model=None,
                convention: str = "reference", crop_border: int = 0) -> tuple[dict[str, dict], dict[str, float]]:
    """Mean PSNR / SSIM (in ``convention``, after cropping ``crop_border`` pixels at each edge) / colour error
    (/ LPIPS) / NIQE of each method over ``(low, high)`` file pairs, and the ground truth's mean colour shift
    from its low input (``shift``: image level, ``pixel_shift``: per pixel)."""
    scores = {name: {"psnr": [], "ssim": [], "colour": [], "lpips": [], "niqe": []} for name in methods}
    gt = {"shift": [], "pixel_shift": []}
    for low_path, high_path in pairs:
        low, high = read_image_uint8(low_path), read_image_uint8(high_path)
        gt["shift"].append(colour_shift(low, high))
        gt["pixel_shift"].append(pixel_colour_shift(low, high))
        for name, method in methods.items():
            out = method(low)
            s = scores[name]
            for k, v in scores_8bit(out, high, convention, crop_border).items():
                s[k].append(v)
            s["colour"].append(colour_shift(high, out))
            _append_niqe(s["niqe"], out)
            if lpips_model is not None:
                to_t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy()).float().div(255.0)[None]  # noqa: E731
                with torch.no_grad():
                    s["lpips"].append(float(lpips_distance(lpips_model, to_t(out), to_t(high)).mean()))
    means = {n: {k: float(np.mean(v)) if v else None for k, v in s.items()} for n, s in scores.items()}
    return means, {k: float(np.mean(v)) for k, v in gt.items()}


def score_real(methods: dict[str, Method], paths: list[str], keep: int = 0) -> tuple[dict[str, dict], list[list[np.ndarray]]]:
    """Mean brightness / clipped fraction / colour shift (image level, tone part, per pixel) / noise σ / NIQE
    of each method over real photos (NIQE: None when no photo holds two 96x96 blocks).

    Also returns the first ``keep`` rows ``[input, output of each method]`` for the grid.
    """
    keys = ("brightness", "clipped", "shift", "tone", "pixel_shift", "noise", "niqe")
    scores = {name: {k: [] for k in keys} for name in methods}
    rows = []
    for i, path in enumerate(paths):
        x = read_image_uint8(path)
        q = pixel_proportions(x)  # shared by every method's tone part and per-pixel shift
        row = [x]
        for name, method in methods.items():
            out = method(x)
            s = scores[name]
            s["brightness"].append(brightness(out))
            s["clipped"].append(clipped_fraction(out))
            s["shift"].append(colour_shift(x, out))
            s["tone"].append(tone_shift(x, out, q))
            s["pixel_shift"].append(pixel_colour_shift(x, out, q))
            s["noise"].append(noise_sigma(out))
            _append_niqe(s["niqe"], out)
            row.append(out)
        if i < keep:
            rows.append(row)
    return {n: {k: float(np.mean(v)) if v else None for k, v in s.items()} for n, s in scores.items()}, rows


def _append_niqe(values: list[float], out: np.ndarray) -> None:
    """NIQE of ``out`` appended to ``values``; skipped for images under two 96x96 blocks."""
    try:
        values.append(niqe(out))
    except ValueError:
        pass


def _cell(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown_table(paired: dict[str, dict] | None, real: dict[str, dict] | None, n_pairs: int, n_real: int,
                   convention: str = "reference") -> str:
    """One row per method: PSNR / SSIM / colour error (/ LPIPS) / NIQE on the pairs, then the real-photo figures;
    the PSNR column names ``convention`` unless it is the reference."""
    names = list((paired or real or {}).keys())
    has_lpips = bool(paired) and any(v["lpips"] is not None for v in paired.values())
    head = ["method"]
    if paired:
        named = "" if convention == "reference" else f", {convention}"
        head += [f"PSNR ↑ ({n_pairs} pairs{named})", "SSIM ↑", "colour error ↓"] + (["LPIPS ↓"] if has_lpips else []) + ["NIQE ↓"]
    if real:
        head += [f"brightness ({n_real} real)", "clipped % ↓", "colour shift ↓", "tone part", "per pixel ↓", "noise σ ↓",
                 "NIQE ↓"]
    best = {}
    if paired:
        best = {k: max(v[k] for v in paired.values()) for k in ("psnr", "ssim")}
        best["colour"] = min(v["colour"] for v in paired.values())
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        cells = [n]
        if paired:
            p = paired[n]
            cells += [_bold(f"{p['psnr']:.2f}", p["psnr"] == best["psnr"]), _bold(f"{p['ssim']:.4f}", p["ssim"] == best["ssim"]),
                      _bold(f"{p['colour']:.3f}", p["colour"] == best["colour"])]
            if has_lpips:
                cells.append(f"{p['lpips']:.3f}")
            cells.append(_cell(p["niqe"], ".3f"))
        if real:
            r = real[n]
            cells += [f"{r['brightness']:.3f}", f"{100 * r['clipped']:.2f}", f"{r['shift']:.3f}", f"{r['tone']:.3f}",
                      f"{r['pixel_shift']:.3f}", f"{r['noise']:.2f}", _cell(r["niqe"], ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _bold(s: str, on: bool) -> str:
    return f"**{s}**" if on else s


def save_comparison(rows: list[list[np.ndarray]], labels: list[str], path: str, height: int) -> None:
    """Rows of input | each method, each image scaled to ``height`` pixels (area filter)."""
    scaled = []
    for row in rows:
        h, w = row[0].shape[:2]
        size = (height, max(1, round(w * height / h)))
        scaled.append([F.interpolate(torch.from_numpy(a.transpose(2, 0, 1).copy()).float()[None] / 255.0, size=size,
                                     mode="area")[0] for a in row])
    save_grid_rows(scaled, path, labels=labels)


GENERATED_MARK = "<!-- written by benchmarks/quality.py -->"


def _write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path``, keeping what an existing file holds above its last ``GENERATED_MARK``
    (the prose of docs/quality.md): the table is replaced, the page above it stays."""
    head = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        head = old[:old.rindex(GENERATED_MARK)] if GENERATED_MARK in old else ""
    with atomic_write(path, "w") as f:
        f.write(head + text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    g = p.add_argument_group("what to score")
    g.add_argument("--weights", nargs="+", default=None, metavar="[LABEL=]PATH",
                   help="checkpoints to score (default: checkpoints/*.pth + official ones in ../shared/compat)")
    g.add_argument("--no_baselines", action="store_true", help="skip identity, gamma and CLAHE")
    g.add_argument("--denoise", type=at_least(0.0, float), default=0.0, metavar="S",
                   help="also score each checkpoint with lowlight_test.py's --denoise S (default 0: not)")
    g.add_argument("--exposure", nargs="+", type=float, default=[], metavar="E",
                   help="also score each DCE-Net checkpoint with lowlight_test.py's --exposure E, for each E "
                        "(default: none)")
    g.add_argument("--highlight_guard", type=at_least(0.0, float), default=None, metavar="PTS",
                   help="with --exposure: lowlight_test.py's --highlight_guard PTS for those rows (default: none)")
    g.add_argument("--memory", nargs="+", default=[], metavar="LABEL=ENHANCER,MEMORY",
                   help="an EMNet enhancer refined by its memory checkpoint, as one more method")
    g = p.add_argument_group("data")
    g.add_argument("--pairs", default=os.path.join(REPO, "datasets", "data", "LOL-demo", "eval15"),
                   help="paired folder (low/ + high/) of held-out synthetic pairs; '' to skip")
    g.add_argument("--real_dir", default=os.path.join(SHARED, "data", "LIME"),
                   help="folder of real low-light photos; '' to skip")
    g = p.add_argument_group("outputs")
    g.add_argument("--out_md", default=os.path.join(REPO, "docs", "quality.md"))
    g.add_argument("--out_grid", default=os.path.join(REPO, "docs", "quality_grid.jpg"))
    g.add_argument("--grid_rows", type=int, default=4, help="photos in the grid (0: no grid)")
    g.add_argument("--height", type=int, default=160, help="grid row height in pixels")
    g = p.add_argument_group("metrics and device")
    g.add_argument("--device", default="cpu")
    g.add_argument("--metrics", choices=CONVENTION_NAMES, default="reference",
                   help="PSNR/SSIM convention on the pairs (default reference; basicsr_rgb, basicsr_y: BasicSR's)")
    g.add_argument("--crop_border", type=at_least(0), default=0, help="pixels left out at each edge (default 0)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    with torch.no_grad():  # scoped: tests call main() in-process
        _main(argv)


def _main(argv: list[str] | None) -> None:
    from datasets.lol import find_pairs
    from utils.device import resolve_device

    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.weights is None:
        weights = default_weights()
    else:
        weights = [tuple(w.split("=", 1)) if "=" in w else (os.path.basename(w), w) for w in args.weights]
    memories = []
    for m in args.memory:
        label, _, files = m.rpartition("=")
        if files.count(",") != 1:
            raise UserError(f"--memory {m}: expected LABEL=ENHANCER.pth,MEMORY.pth")
        memories.append((label or "memory", *files.split(",")))
    methods = build_methods(weights, device, baselines=not args.no_baselines, denoise=args.denoise,
                            memories=memories, exposures=args.exposure, guard=args.highlight_guard)
    if not methods:
        raise UserError("nothing to score: pass --weights or drop --no_baselines")
    pairs = find_pairs(args.pairs) if args.pairs and os.path.isdir(args.pairs) else []
    if args.pairs and not pairs:
        print(f"no pairs in {args.pairs} (build them with python -m datasets.prepare_demo): skipping (a)")
    real = list_images(args.real_dir) if args.real_dir and os.path.isdir(args.real_dir) else []
    if not pairs and not real:
        raise UserError("no pairs (--pairs) and no real photos (--real_dir): nothing to measure")
    t0 = time.time()
    lp = build_lpips(device).eval() if pairs and lpips_available() else None
    paired, gt_shift = score_pairs(methods, pairs, lp, args.metrics, args.crop_border) if pairs else (None, None)
    real_scores, rows = score_real(methods, real, keep=args.grid_rows) if real else (None, [])
    if not rows:
        rows = [[x] + [m(x) for m in methods.values()]
                for x in (read_image_uint8(lo) for lo, _ in pairs[:args.grid_rows])]
    table = markdown_table(paired, real_scores, len(pairs), len(real), args.metrics)
    src = [f"pairs: `{os.path.relpath(args.pairs, REPO)}`" if pairs else "",
           f"real photos: `{os.path.relpath(args.real_dir, REPO)}`" if real else ""]
    note = "; ".join(s for s in src if s) + f"; LPIPS {'on' if lp is not None else 'off (no AlexNet file)'}"
    if pairs:
        note += f"; metrics {describe(args.metrics, args.crop_border)}"
        note += (f"; colour shift of the ground truth from its low input: {gt_shift['shift']:.3f}, per pixel "
                 f"{gt_shift['pixel_shift']:.3f}")
    note += "\n"
    _write_text(args.out_md, GENERATED_MARK + "\n" + note + "\n" + table)
    if rows:
        save_comparison(rows, ["input"] + list(methods), args.out_grid, args.height)
    print(table)
    print(note.strip())
    print(f"{len(methods)} methods, {len(pairs)} pairs, {len(real)} real photos in {time.time() - t0:.1f} s; "
          f"wrote {args.out_md}" + (f" and {args.out_grid}" if rows else ""))


if __name__ == "__main__":
    run_cli(main)

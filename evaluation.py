"""Paired evaluation (SPEC §7): enhancer alone (``ori``) and refined by the memory (``mem``) against GT.

PSNR/SSIM follow the papers' protocol on the 8-bit images that are written (scikit-image), converted as
the reference test script does: ``ori`` truncated, ``mem`` rounded half to even (:data:`TEST`); outputs are named
after the ground-truth files, as there. LPIPS (AlexNet) when its weights are in the torch cache; the
"GT-mean" oracle is reported on its own line, labelled as such, since it uses the ground truth and is not
comparable with the other figures. The memory's pooling comes from its checkpoint. With ``enhanced_dir``
(:func:`enhanced_outputs`) another method's saved outputs take the enhancer's place (``--enhanced_dir``).
"""
from __future__ import annotations

import csv
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from tqdm import tqdm

from datasets.lol import PairedDataset
from lowlight_model import enhance
from metrics import (MetricAccumulator, build_lpips, lpips_available, lpips_distance, psnr_float, quantise,
                     scores_8bit)
from metrics.conventions import crop, describe, get_convention
from network.memory import ExternalMemory, gt_mean_oracle, query
from network.query import build_query
from utils.denoise import denoise_tensor
from utils.errors import UserError
from utils.fs import atomic_write
from utils.image_io import image_size, list_images, read_image_tensor, save_grid_rows, save_image


@dataclass(frozen=True)
class Policy:
    """How each method's output becomes figures: its 8-bit conversion (:func:`metrics.quantise` mode), and
    whether PSNR is taken on the float image (data range 1) instead of the 8-bit one. SSIM is always on the
    8-bit images, against the ground truth converted with "round" (exact for 8-bit files)."""

    name: str
    quantise: Mapping[str, str]
    float_psnr: bool = False


#: The reference test script (SPEC §7): the enhancer alone ("ori") truncated, the memory output ("mem")
#: rounded half to even (``np.round``), the GT-mean oracle rounded as the memory validation does.
TEST = Policy("test", {"ori": "trunc", "mem": "round_half_even", "gt_mean_oracle": "round_half_even"})
#: The reference's memory validation: every image rounded half to even.
VALIDATION = Policy("validation", {m: "round_half_even" for m in ("ori", "mem", "gt_mean_oracle")})
#: The reference's enhancer validation, which picks the best checkpoint: PSNR on the float image.
ENHANCER_VALIDATION = Policy("enhancer validation", VALIDATION.quantise, float_psnr=True)
#: ``--enhanced_dir``: another method's 8-bit outputs scored as they are ("round" is exact for 8-bit files),
#: the memory's refinement of them rounded half to even as the reference's "mem".
ENHANCED = Policy("enhanced outputs", {"ori": "round", "mem": "round_half_even", "gt_mean_oracle": "round_half_even"})
#: The smallest image side each metric can score: SSIM's 7x7 window (scikit-image's default); LPIPS's
#: AlexNet, whose 11x11 stride-4 convolution and two 3x3 stride-2 poolings need 31 pixels.
MIN_SIDE = {"ssim": 7, "lpips": 31}


@torch.no_grad()
def enhance_and_query(model: torch.nn.Module, query_net: torch.nn.Module, pairs,
                      device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Raw (unclamped) enhancer outputs (1,3,H,W) on the CPU for every low image of ``pairs`` (the memory pools
    the unclamped output, SPEC §6; every figure clamps it) and their memory queries (N, K), in one pass (an
    enhancer query reuses the features of the forward pass that enhanced the same image)."""
    model.eval()
    outs, qs = [], []
    for i in range(len(pairs)):
        low = pairs.load(i)[0][None].to(device)
        outs.append(enhance(model, low).float().cpu())
        qs.append(query(query_net, low))
    return outs, torch.cat(qs).float()


def _outputs(raw: torch.Tensor, gt: torch.Tensor, memory: ExternalMemory | None, q: torch.Tensor | None,
             top_k: int, oracle: bool, denoise: float = 0.0) -> dict[str, torch.Tensor]:
    """Each method's output (1,3,H,W) in [0, 1] of one raw enhancer output (``ori`` and ``mem`` through
    :func:`utils.denoise.denoise_tensor` when ``denoise`` > 0)."""
    outputs = {"ori": denoise_tensor(raw.clamp(0, 1), denoise)}
    if memory is not None:
        outputs["mem"] = denoise_tensor(memory.refine(raw, memory.read(q, top_k)), denoise)
    if oracle:
        outputs["gt_mean_oracle"] = memory.oracle(raw, gt) if memory is not None else gt_mean_oracle(raw, gt)
    return outputs


@torch.no_grad()
def evaluate(model: torch.nn.Module | None, pairs, memory: ExternalMemory | None = None, policy: Policy = TEST, *,
             device: torch.device | str = "cpu", top_k: int = 1, raw: list[torch.Tensor] | None = None,
             queries: torch.Tensor | None = None, query_net: torch.nn.Module | None = None, oracle: bool = False,
             lpips: torch.nn.Module | None = None,
             each: Callable[[int, torch.Tensor, torch.Tensor, dict, dict], None] | None = None, progress: bool = False,
             only: tuple[str, ...] | None = None, convention: str = "reference",
             crop_border: int = 0, denoise: float = 0.0) -> dict[str, MetricAccumulator]:
    """The figures of ``model`` (+ ``memory`` read with ``top_k``) on ``pairs`` (``load(i)`` → (low, gt) and
    ``gt_names``, e.g. :class:`datasets.lol.PairedDataset`), one :class:`MetricAccumulator` per method
    ("ori", "mem" with a memory, "gt_mean_oracle" with ``oracle``), converted and scored by ``policy``.

    The one evaluation path: the reference test protocol (:data:`TEST`, :func:`evaluate_paired`) and the
    validations during training (:data:`VALIDATION`, :data:`ENHANCER_VALIDATION`). ``raw`` (the enhancer's
    outputs, e.g. of a frozen enhancer) and ``queries``, both computed once by :func:`enhance_and_query`, skip recomputing them; otherwise the memory's queries come from ``query_net``.
    ``lpips`` adds LPIPS on the 8-bit images; ``each(i, low, gt, outputs, images_8bit)`` sees every pair (its images as loaded); ``progress``
    shows a progress bar; ``only`` scores just those methods (e.g. ``("mem",)`` where "ori" is known).
    PSNR / SSIM follow ``convention`` (:data:`metrics.conventions.CONVENTIONS`) after cropping ``crop_border``
    pixels at each edge. ``denoise`` > 0 denoises ``ori`` and ``mem`` (:func:`utils.denoise.denoise_tensor`).
    """
    if memory is not None and queries is None and query_net is None:
        raise ValueError("evaluate: a memory needs queries or query_net")
    ssim_side = get_convention(convention).ssim_side + 2 * crop_border
    methods = ["ori"] + (["mem"] if memory is not None else []) + (["gt_mean_oracle"] if oracle else [])
    acc = {m: MetricAccumulator() for m in methods if only is None or m in only}
    names = getattr(pairs, "gt_names", None) or [str(i) for i in range(len(pairs))]
    for i in tqdm(range(len(pairs)), desc="evaluate", unit="pair", dynamic_ncols=True, disable=not progress):
        low, gt = (t[None].to(device) for t in pairs.load(i))
        r = raw[i].to(device) if raw is not None else enhance(model, low)
        q = None if memory is None else queries[i:i + 1].to(device) if queries is not None else query(query_net, low)
        outputs = _outputs(r, gt, memory, q, top_k, oracle, denoise)
        gt8 = quantise(gt[0], "round")
        images = {m: quantise(y[0], policy.quantise[m]) for m, y in outputs.items() if m in acc}
        crop(gt8, crop_border)  # a crop that leaves nothing is refused before any note
        skip = _too_small(names[i], gt.shape[-2:], lpips is not None, ssim_side)
        for m, y8 in images.items():
            figures = scores_8bit(y8, gt8, convention, crop_border, with_ssim="ssim" not in skip)
            if policy.float_psnr:
                figures["psnr"] = psnr_float(outputs[m][0], gt[0])
            if lpips is not None and "lpips" not in skip:  # on the 8-bit image as written, like PSNR/SSIM
                y_q = torch.from_numpy(y8).permute(2, 0, 1)[None].float().div(255).to(gt.device)
                figures["lpips"] = float(lpips_distance(lpips, y_q, gt))
            acc[m].add(names[i], **figures)
        if each is not None:
            each(i, low[0], gt[0], outputs, images)
    return acc


def first_outputs(names: list[str], limit: int, method: str = "ori"):
    """``(shown, each)``: ``each`` is an :func:`evaluate` callback keeping the first ``limit`` outputs of
    ``method`` ((3,H,W) float in [0, 1], on the CPU) in ``shown`` by pair name (validation images for TensorBoard)."""
    shown: dict[str, torch.Tensor] = {}

    def each(i, low, gt, outputs, images) -> None:
        if len(shown) < limit:
            shown[names[i]] = outputs[method][0].clamp(0, 1).float().cpu()

    return shown, each


def _too_small(name: str, size, lpips: bool, ssim_side: int = MIN_SIDE["ssim"]) -> list[str]:
    """The metrics a pair of ``size`` (H, W) is too small for (left out of its row and of the means), with one
    note line on stderr naming the pair; SSIM needs ``ssim_side`` pixels (its window and the crop)."""
    h, w = size
    sides = {**MIN_SIDE, "ssim": ssim_side}
    skip = [m for m, side in sides.items() if min(h, w) < side and (m != "lpips" or lpips)]
    if skip:
        need = ", ".join(f"{m.upper()} needs {sides[m]}" for m in skip)
        tqdm.write(f"note: {name} is {w}x{h}, too small for {' and '.join(m.upper() for m in skip)} ({need} pixels a "
                   f"side): not computed for this pair", file=sys.stderr)
    return skip


def mean_psnr_ssim(acc: dict[str, MetricAccumulator], method: str) -> tuple[float, float]:
    """(mean PSNR, mean SSIM) of ``method`` in an :func:`evaluate` result."""
    means = acc[method].mean()
    return means["psnr"], means.get("ssim", math.nan)  # no SSIM when every pair is smaller than its window


def enhanced_outputs(data: PairedDataset, enhanced_dir: str) -> list[str]:
    """The image of ``enhanced_dir`` for every pair of ``data``, matched by name: the file whose stem is the low
    image's (else the ground truth's), any image extension. A pair without one, a stem shared by two files, or an
    image of another size than its pair is a :class:`UserError` naming the file."""
    if not os.path.isdir(enhanced_dir):
        raise UserError(f"--enhanced_dir {enhanced_dir}: folder not found; pass the folder of another method's "
                        f"outputs for these low images")
    by_stem: dict[str, str] = {}
    for path in list_images(enhanced_dir):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in by_stem:
            raise UserError(f"--enhanced_dir: {by_stem[stem]} and {path} both match the pair {stem}; keep one")
        by_stem[stem] = path
    found = []
    for low, high in data.pairs:
        stems = [os.path.splitext(os.path.basename(f))[0] for f in (low, high)]
        path = next((by_stem[s] for s in stems if s in by_stem), None)
        if path is None:
            raise UserError(f"--enhanced_dir {enhanced_dir}: no image named {stems[0]}.* for the pair {low}; every "
                            f"low image needs the other method's output of the same name")
        if image_size(path) != image_size(low):
            (w, h), (lw, lh) = image_size(path), image_size(low)
            raise UserError(f"--enhanced_dir: {path} is {w}x{h} and its low image {low} {lw}x{lh}; the outputs must "
                            f"keep the input size")
        found.append(path)
    return found


def evaluate_paired(model: torch.nn.Module | None, input_dir: str, device: torch.device, *,
                    mem: ExternalMemory | None = None, top_k: int = 1, output_dir: str = "results",
                    save_images: bool = False, grid: int = 0, use_lpips: bool = True,
                    weights: str = "?", mem_weights: str | None = None, convention: str = "reference",
                    crop_border: int = 0, denoise: float = 0.0,
                    enhanced_dir: str | None = None) -> dict[str, dict[str, float]]:
    """The reference test protocol (:data:`TEST`) of ``model`` (+ ``mem`` read with ``top_k``) on the pairs
    under ``input_dir``, with its reports.

    Writes ``result.txt`` and ``results.csv`` (+ the 8-bit images with ``save_images``, a comparison grid of
    the first ``grid`` pairs) to ``output_dir``; ``weights``/``mem_weights`` only label the report. LPIPS
    when ``use_lpips`` and the AlexNet weights exist; PSNR / SSIM in ``convention`` with ``crop_border`` (named
    in ``result.txt``). Returns the mean figures per method.

    ``enhanced_dir``: another method's outputs for the same low images (:func:`enhanced_outputs`) take the
    enhancer's place: ``ori`` is each image as given (:data:`ENHANCED`), ``mem`` the memory's refinement of it
    (:meth:`ExternalMemory.refine` with the image as the raw output), the query computed from the low image as
    the memory expects (ResNet-18, or the features of ``model``, the enhancer the memory was built on, for an
    ``"enhancer"`` memory; ``model`` is unused otherwise and may be None).
    """
    data = PairedDataset(input_dir)
    names = data.gt_names  # the reference names its outputs after the ground-truth files
    enhanced = enhanced_outputs(data, enhanced_dir) if enhanced_dir else None
    if mem is not None and mem.query_kind == "enhancer" and model is None:
        raise ValueError("evaluate_paired: an enhancer-query memory needs the enhancer it was built on")
    query_net = build_query(mem.query_kind, model).to(device) if mem is not None else None
    if query_net is not None and getattr(query_net, "dim", mem.key_dim) != mem.key_dim:
        raise UserError(f"{mem_weights}: its keys ({mem.key_dim} numbers) come from another enhancer's features "
                        f"than --weights {weights} gives ({query_net.dim}); pass the enhancer the memory was built on")
    lp = build_lpips(device) if use_lpips and lpips_available() else None
    if use_lpips and lp is None:
        print("note: LPIPS not computed: its AlexNet weights (alexnet-owt-7be5be79.pth) are not in "
              "$TORCH_HOME/hub/checkpoints/ (pass --no_lpips to silence this)", file=sys.stderr)
    grid_rows = []

    def each(i: int, low: torch.Tensor, gt: torch.Tensor, outputs: dict, images: dict) -> None:
        if save_images:
            for method in ("ori", "mem"):
                if method in images:
                    save_image(images[method], os.path.join(output_dir, method, names[i]))
        if len(grid_rows) < grid:
            grid_rows.append([low, outputs["ori"][0], *([outputs["mem"][0]] if "mem" in outputs else []), gt])

    start = time.time()
    raw = [read_image_tensor(p)[None] for p in enhanced] if enhanced else None
    acc = evaluate(model, data, mem, ENHANCED if enhanced else TEST, device=device, top_k=top_k, raw=raw,
                   query_net=query_net, oracle=True, lpips=lp, each=each, progress=True, convention=convention,
                   crop_border=crop_border, denoise=denoise)
    elapsed = time.time() - start
    means = {m: a.mean() for m, a in acc.items()}
    os.makedirs(output_dir, exist_ok=True)
    source = (f"enhanced_dir: {enhanced_dir} (ori: its images as given)" if enhanced else
              f"arch: {getattr(model, 'arch', '?')}  weights: {weights}")
    if enhanced and mem is not None and mem.query_kind == "enhancer":
        source += f"  query enhancer: {weights}"
    header = [f"input_dir: {input_dir}", source,
              f"memory: {mem_weights or 'none'}  testing_top_k: {top_k}"
              + (f"  query: {mem.query_kind}" if mem is not None else ""),
              f"denoise: {denoise:g}" if denoise else "denoise: off"]
    _write_report(os.path.join(output_dir, "result.txt"), header, acc, len(data), elapsed,
                  describe(convention, crop_border),
                  "ori: the 8-bit images as given, mem rounded" if enhanced else None)
    _write_csv(os.path.join(output_dir, "results.csv"), acc)
    if grid_rows:
        labels = ["input", "ori", *(["mem"] if mem is not None else []), "GT"]
        save_grid_rows(grid_rows, os.path.join(output_dir, "comparison.png"), labels=labels)
    for m in acc:
        label = "GT-mean (oracle, uses GT)" if m == "gt_mean_oracle" else m
        figures = " ".join(f"{k.upper()} {v:.4f}" for k, v in means[m].items())
        print(f"{label:>26}: {figures}")
    print(f"report: {os.path.join(output_dir, 'result.txt')} ({len(data)} pairs, {elapsed:.1f}s)")
    return means


def _has_lpips(acc) -> bool:
    return any("lpips" in a.names for a in acc.values())


def _write_report(path: str, header: list[str], acc, n: int, elapsed: float, metrics: str,
                  conversion: str | None = None) -> None:
    lines = header + [f"pairs: {n}  time: {elapsed:.1f}s", f"metrics: {metrics}; "
             + ("LPIPS AlexNet v0.1" if _has_lpips(acc) else "LPIPS not computed (--no_lpips, or no AlexNet weights)")
             + "; " + (conversion or "8-bit images as the reference: ori truncated, mem rounded"), ""]
    for m, a in acc.items():
        title = "GT-mean (ORACLE: rescaled with the ground-truth mean; not comparable)" if m == "gt_mean_oracle" else m
        lines += [f"== {title} ==", a.format().rstrip(), ""]
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines))


def _write_csv(path: str, acc) -> None:
    names = next(iter(acc.values())).images
    cols = [(m, k) for m, a in acc.items() for k in a.names]
    with atomic_write(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image"] + [f"{m}_{k}" for m, k in cols])
        for i, name in enumerate(names):
            w.writerow([name] + [f"{acc[m].values[k][i]:.6f}" for m, k in cols])
        w.writerow(["mean"] + [f"{acc[m].mean()[k]:.6f}" for m, k in cols])

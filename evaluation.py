"""Paired evaluation (SPEC §7): enhancer alone (``ori``) and refined by the memory (``mem``) against GT.

PSNR/SSIM follow the papers' protocol on the 8-bit images that are written (scikit-image), converted as
the reference test script does: ``ori`` truncated, ``mem`` rounded (:data:`QUANTISE`); outputs are named
after the ground-truth files, as there. LPIPS (AlexNet) when its weights are in the torch cache; the
"GT-mean" oracle is reported on its own line, labelled as such, since it uses the ground truth and is not
comparable with the other figures. The memory's pooling comes from its checkpoint.
"""
from __future__ import annotations

import csv
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from datasets.lol import PairedDataset
from lowlight_model import enhance
from metrics import MetricAccumulator, build_lpips, lpips_available, lpips_distance, quantise, scores_8bit
from network.memory import ExternalMemory, build_query_net, gt_mean_oracle, query
from utils.fs import atomic_write
from utils.image_io import save_grid_rows, save_image

#: 8-bit conversion per method, as the reference test script: the enhancer alone is truncated, the
#: memory output rounded (and the oracle rounded, as the reference's memory validation).
QUANTISE = {"ori": "trunc", "mem": "round", "gt_mean_oracle": "round"}


def _metrics(y8: np.ndarray, gt8: np.ndarray, gt: torch.Tensor, lp) -> dict[str, float]:
    out = scores_8bit(y8, gt8)
    if lp is not None:
        # LPIPS on the 8-bit image as written, like PSNR/SSIM
        y_q = torch.from_numpy(y8).permute(2, 0, 1)[None].float().div(255).to(gt.device)
        out["lpips"] = float(lpips_distance(lp, y_q, gt))
    return out


def evaluate_paired(model: torch.nn.Module, input_dir: str, device: torch.device, *,
                    mem: ExternalMemory | None = None, top_k: int = 1, output_dir: str = "results",
                    save_images: bool = False, grid: int = 0, use_lpips: bool = True,
                    weights: str = "?", mem_weights: str | None = None) -> dict[str, dict[str, float]]:
    """Evaluate ``model`` (+ ``mem`` read with ``top_k``) on the pairs under ``input_dir``.

    Writes ``result.txt`` and ``results.csv`` (+ the 8-bit images with ``save_images``, a comparison grid of
    the first ``grid`` pairs) to ``output_dir``; ``weights``/``mem_weights`` only label the report. LPIPS
    when ``use_lpips`` and the AlexNet weights exist. Returns the mean figures per method.
    """
    data = PairedDataset(input_dir)
    names = data.gt_names  # the reference names its outputs after the ground-truth files
    query_net = build_query_net(pretrained=True).to(device) if mem is not None else None
    lp = build_lpips(device) if use_lpips and lpips_available() else None
    methods = ["ori"] + (["mem"] if mem is not None else []) + ["gt_mean_oracle"]
    acc = {m: MetricAccumulator() for m in methods}
    grid_rows = []
    start = time.time()
    for i in tqdm(range(len(data)), desc="evaluate", unit="pair", dynamic_ncols=True):
        low, gt = (t[None].to(device) for t in data.load(i))
        name = names[i]
        gt8 = quantise(gt[0], "round")
        with torch.inference_mode():
            raw = enhance(model, low)  # unclamped: the memory pools it (SPEC §6)
            outputs = {"ori": raw.clamp(0, 1)}
            if mem is not None:
                outputs["mem"] = mem.refine(raw, mem.read(query(query_net, low), top_k))
            outputs["gt_mean_oracle"] = mem.oracle(raw, gt) if mem is not None else gt_mean_oracle(raw, gt)
            images = {m: quantise(y[0], QUANTISE[m]) for m, y in outputs.items()}
            for method, y8 in images.items():
                acc[method].add(name, **_metrics(y8, gt8, gt, lp))
        if save_images:
            for method in ("ori", "mem"):
                if method in images:
                    save_image(images[method], os.path.join(output_dir, method, name))
        if len(grid_rows) < grid:
            grid_rows.append([low[0], outputs["ori"][0], outputs.get("mem", outputs["ori"])[0], gt[0]])
    elapsed = time.time() - start
    means = {m: a.mean() for m, a in acc.items()}
    os.makedirs(output_dir, exist_ok=True)
    header = [f"input_dir: {input_dir}", f"arch: {getattr(model, 'arch', '?')}  weights: {weights}",
              f"memory: {mem_weights or 'none'}  testing_top_k: {top_k}"]
    _write_report(os.path.join(output_dir, "result.txt"), header, acc, len(data), elapsed)
    _write_csv(os.path.join(output_dir, "results.csv"), acc)
    if grid_rows:
        labels = ["input", "ori", "mem" if mem is not None else "ori (no memory)", "GT"]
        save_grid_rows(grid_rows, os.path.join(output_dir, "comparison.png"), labels=labels)
    for m in methods:
        label = "GT-mean (oracle, uses GT)" if m == "gt_mean_oracle" else m
        figures = " ".join(f"{k.upper()} {v:.4f}" for k, v in means[m].items())
        print(f"{label:>26}: {figures}")
    print(f"report: {os.path.join(output_dir, 'result.txt')} ({len(data)} pairs, {elapsed:.1f}s)")
    return means


def _has_lpips(acc) -> bool:
    return any("lpips" in a.names for a in acc.values())


def _write_report(path: str, header: list[str], acc, n: int, elapsed: float) -> None:
    lines = header + [f"pairs: {n}  time: {elapsed:.1f}s",
             "metrics: PSNR/SSIM on 8-bit RGB (scikit-image, data range 255); "
             + ("LPIPS AlexNet v0.1" if _has_lpips(acc) else "LPIPS not computed (--no_lpips, or no AlexNet weights)")
             + "; 8-bit images as the reference: ori truncated, mem rounded", ""]
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

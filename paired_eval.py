"""Paired evaluation (SPEC §7): enhancer alone (``ori``) and refined by the memory (``mem``) against GT.

PSNR/SSIM follow the papers' protocol on the 8-bit images that are written (scikit-image); LPIPS
(AlexNet) when its weights are in the torch cache; the "GT-mean" oracle is reported on its own line,
labelled as such, since it uses the ground truth and is not comparable with the other figures.
"""
from __future__ import annotations

import csv
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from datasets.lol import PairedDataset
from lowlight_model import SIZE_MULTIPLE, enhance
from memory import ExternalMemory, build_query_net, gt_mean_oracle, query, refine
from metrics import MetricAccumulator, build_lpips, lpips_available, lpips_distance, psnr, ssim
from utils.image_io import save_grid_rows, save_image, to_uint8


def _metrics(y: torch.Tensor, gt8: np.ndarray, gt: torch.Tensor, lp) -> dict[str, float]:
    y8 = to_uint8(y[0])
    out = {"psnr": psnr(y8, gt8), "ssim": ssim(y8, gt8)}
    if lp is not None:
        # LPIPS on the 8-bit image as written, like PSNR/SSIM
        y_q = torch.from_numpy(y8).permute(2, 0, 1)[None].float().div(255).to(gt.device)
        out["lpips"] = float(lpips_distance(lp, y_q, gt))
    return out


def evaluate_paired(args, model: torch.nn.Module, device: torch.device) -> dict[str, dict[str, float]]:
    """Evaluate ``model`` (+ memory) on the pairs of ``args.input_dir``; returns the mean figures per method."""
    data = PairedDataset(args.input_dir)
    out_dir = args.output_dir or "results"
    mem = None
    if args.mem_weights:
        mem = ExternalMemory.from_checkpoint(args.mem_weights, map_location=device, pooling=args.pooling_size,
                                             pooling_mean=args.pooling_mean, value_dim=args.V_feat_dim)
        if mem.mem_size != args.mem_size:
            print(f"note: {args.mem_weights} holds {mem.mem_size} slots (--mem_size {args.mem_size} ignored)")
        query_net = build_query_net(pretrained=True).to(device)
    lp = None
    if not args.no_lpips and lpips_available():
        lp = build_lpips(device)
    methods = ["ori"] + (["mem"] if mem is not None else []) + ["gt_mean_oracle"]
    acc = {m: MetricAccumulator() for m in methods}
    grid_rows = []
    start = time.time()
    for i in tqdm(range(len(data)), desc="evaluate", unit="pair", dynamic_ncols=True):
        low, gt = (t[None].to(device) for t in data.load(i))
        name = data.names[i]
        gt8 = to_uint8(gt[0])
        with torch.inference_mode():
            outputs = {"ori": enhance(model, low, SIZE_MULTIPLE[model.arch]).clamp(0, 1)}
            if mem is not None:
                m = mem.read(query(query_net, low), args.testing_top_k)
                outputs["mem"] = refine(outputs["ori"], m, args.pooling_size, args.pooling_mean)
            outputs["gt_mean_oracle"] = gt_mean_oracle(outputs["ori"], gt)
            for method, y in outputs.items():
                acc[method].add(name, **_metrics(y, gt8, gt, lp))
        if args.save_images:
            for method in ("ori", "mem"):
                if method in outputs:
                    save_image(outputs[method][0], os.path.join(out_dir, method, name))
        if len(grid_rows) < args.grid:
            grid_rows.append([low[0], outputs["ori"][0], outputs.get("mem", outputs["ori"])[0], gt[0]])
    elapsed = time.time() - start
    means = {m: a.mean() for m, a in acc.items()}
    os.makedirs(out_dir, exist_ok=True)
    _write_report(os.path.join(out_dir, "result.txt"), args, model.arch, acc, means, len(data), elapsed)
    _write_csv(os.path.join(out_dir, "results.csv"), acc)
    if grid_rows:
        labels = ["input", "ori", "mem" if mem is not None else "ori (no memory)", "GT"]
        save_grid_rows(grid_rows, os.path.join(out_dir, "comparison.png"), labels=labels)
    for m in methods:
        label = "GT-mean (oracle, uses GT)" if m == "gt_mean_oracle" else m
        figures = " ".join(f"{k.upper()} {v:.4f}" for k, v in means[m].items())
        print(f"{label:>26}: {figures}")
    print(f"report: {os.path.join(out_dir, 'result.txt')} ({len(data)} pairs, {elapsed:.1f}s)")
    return means


def _write_report(path: str, args, arch: str, acc, means, n: int, elapsed: float) -> None:
    lines = [f"input_dir: {args.input_dir}", f"arch: {arch}  weights: {args.weights}",
             f"memory: {args.mem_weights or 'none'}  pooling_size: {args.pooling_size}  "
             f"testing_top_k: {args.testing_top_k}", f"pairs: {n}  time: {elapsed:.1f}s",
             "metrics: PSNR/SSIM on 8-bit RGB (scikit-image, data range 255); LPIPS AlexNet v0.1", ""]
    for m, a in acc.items():
        title = "GT-mean (ORACLE: rescaled with the ground-truth mean; not comparable)" if m == "gt_mean_oracle" else m
        lines += [f"== {title} ==", a.format().rstrip(), ""]
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)


def _write_csv(path: str, acc) -> None:
    names = next(iter(acc.values())).images
    cols = [(m, k) for m, a in acc.items() for k in a.names]
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image"] + [f"{m}_{k}" for m, k in cols])
        for i, name in enumerate(names):
            w.writerow([name] + [f"{acc[m].values[k][i]:.6f}" for m, k in cols])
        w.writerow(["mean"] + [f"{acc[m].mean()[k]:.6f}" for m, k in cols])
    os.replace(path + ".tmp", path)

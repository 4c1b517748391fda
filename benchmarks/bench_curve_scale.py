"""``--curve_scale``: speed, peak memory and quality cost of estimating DCE-Net's curve maps on a downscaled image.

    python benchmarks/bench_curve_scale.py [--scales 2,4,8] [--repeats 2] [--photo PATH] [--sets speed,quality]

speed: one 6000x4000 JPEG (``--photo`` upscaled bicubically, quality 95, written to a temporary folder, never
kept) enhanced by ``lowlight_test.py`` as a user runs it, one process per run, the scales taking turns
``--repeats`` times: ms per photo as its summary line prints it (decode, enhance, encode; start-up and model
loading excluded) and the process's peak RSS (VmHWM, its summary line). Then the enhancement alone
(``inference.enhance_batch`` on the decoded photo, fp32, the default 0.4 GB budget, as the folder path
runs it) in one process, the scales taking turns, also with torch limited to one thread; and each scale's
8-bit output against the full-resolution output (PSNR / SSIM, scikit-image convention).

quality: on paired folders (``--pairs``: the real SICE validation split and the synthetic LOL-demo pairs),
each scale's output against the full-resolution output and against the ground truth.

Prints markdown tables and the machine's load average (other jobs share this machine's cores).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PY = sys.executable
WEIGHTS = os.path.join(ROOT, "checkpoints", "LLE_model.pth")
SUMMARY = re.compile(r"in ([\d.]+)s, (\d+) ms/image; peak memory ([\d.]+) GB RSS")
DATA = os.path.join(ROOT, "datasets", "data")

ENHANCE_ONLY = r"""
import json, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from inference import _read, enhance_batch
from lowlight_model import load_enhancer
from metrics.image import psnr
from skimage.metrics import structural_similarity
from utils.device import keep_freed_memory
from utils.image_io import to_uint8
def ssim(a, b, rows=256, pad=3):
    # metrics.image.ssim (skimage, 7x7 window, borders of 3 pixels left out) in strips of rows with 3 rows of
    # context each side, so float64 temporaries stay small: the same value as on the whole image
    h, total, count = a.shape[0], 0.0, 0
    for top in range(pad, h - pad, rows):
        bottom = min(h - pad, top + rows)
        m = structural_similarity(a[top - pad:bottom + pad], b[top - pad:bottom + pad], channel_axis=-1,
                                  data_range=255, full=True)[1][pad:-pad, pad:-pad]
        total, count = total + float(m.sum(dtype=np.float64)), count + m.size
    return total / count
path, scales, repeats = sys.argv[2], [float(s) for s in sys.argv[3].split(",")], int(sys.argv[4])
keep_freed_memory()
model = load_enhancer("auto", sys.argv[5], "cpu").to(memory_format=torch.channels_last)
x = _read(path)[None]
default_threads = torch.get_num_threads()
runs = [(s, default_threads) for s in scales] + [(s, 1) for s in (scales[0], scales[-1])]
times, outs = {}, {}
for _ in range(repeats):
    for s, threads in runs:
        torch.set_num_threads(threads)
        model.set_curve_control(curve_scale=s)
        t = time.perf_counter()
        y = enhance_batch(model, x, torch.float32, 0.4e9, 0)
        times.setdefault(f"{s:g}/{threads}", []).append(time.perf_counter() - t)
        if threads == default_threads and s not in outs:
            outs[s] = to_uint8(y[0])
        del y
torch.set_num_threads(default_threads)
full = outs[scales[0]]
quality = {f"{s:g}": (psnr(outs[s], full), ssim(outs[s], full)) for s in scales[1:]}
print(json.dumps({"times": times, "quality": quality, "threads": default_threads}))
"""


def make_photo(src: str, folder: str) -> str:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "big.jpg")
    Image.open(src).convert("RGB").resize((6000, 4000), Image.BICUBIC).save(path, quality=95)
    return path


def run_folder(folder: str, out: str, scale: float) -> tuple[float, float]:
    r = subprocess.run([PY, os.path.join(ROOT, "lowlight_test.py"), "--input_dir", folder, "--output_dir", out,
                        "--weights", WEIGHTS, "--device", "cpu", "--curve_scale", f"{scale:g}",
                        "--exposure", "off"],  # the network's own output (the shipped card's exposure: off)
                       capture_output=True, text=True)
    m = SUMMARY.search(r.stdout)
    if r.returncode or not m:
        sys.exit(f"lowlight_test.py --curve_scale {scale:g} failed: {(r.stderr or r.stdout).strip().splitlines()[-1]}")
    return float(m.group(2)), float(m.group(3))


def speed(photo: str, scales: list[float], repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_photo(photo, os.path.join(tmp, "in"))
        ms: dict[float, list[float]] = {}
        peak: dict[float, float] = {}
        for _ in range(repeats):
            for s in scales:
                t, gb = run_folder(os.path.dirname(path), os.path.join(tmp, f"out{s:g}"), s)
                ms.setdefault(s, []).append(t)
                peak[s] = max(peak.get(s, 0.0), gb)
        r = subprocess.run([PY, "-c", ENHANCE_ONLY, ROOT, path, ",".join(f"{s:g}" for s in scales), str(repeats),
                            WEIGHTS], capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"enhancement timing failed: {r.stderr.strip().splitlines()[-1]}")
        alone = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"\n6000x4000 JPEG ({os.path.basename(photo)} upscaled), fp32, median of {repeats}; load average after: "
          f"{' / '.join(f'{v:.1f}' for v in os.getloadavg())}")
    head = ["--curve_scale", "per photo, end to end (ms)", "vs S=1", "peak RSS (GB)", "enhancement alone (s)",
            "vs S=1", "alone, 1 thread (s)", "PSNR / SSIM vs S=1 output"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    t = alone["times"]
    base_e2e, base_alone = statistics.median(ms[scales[0]]), statistics.median(t[f"{scales[0]:g}/{alone['threads']}"])
    for s in scales:
        e2e, a = statistics.median(ms[s]), statistics.median(t[f"{s:g}/{alone['threads']}"])
        one = t.get(f"{s:g}/1")
        q = alone["quality"].get(f"{s:g}")
        print(f"| {s:g} | {e2e:.0f} | {base_e2e / e2e:.2f}x | {peak[s]:.2f} | {a:.2f} | {base_alone / a:.2f}x | "
              f"{'-' if one is None else f'{statistics.median(one):.2f}'} | "
              f"{'-' if q is None else f'{q[0]:.2f} dB / {q[1]:.4f}'} |")


def quality(pairs: list[str], scales: list[float]) -> None:
    import torch

    from lowlight_model import enhance, load_enhancer
    from metrics.image import psnr, ssim
    from utils.image_io import read_image_tensor, to_uint8

    model = load_enhancer("auto", WEIGHTS, "cpu")
    print(f"\nquality against the full-resolution output (S=1) and the ground truth; load average "
          f"{' / '.join(f'{v:.1f}' for v in os.getloadavg())}")
    head = ["pairs", "--curve_scale", "PSNR / SSIM vs S=1 output", "PSNR / SSIM vs ground truth"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for folder in pairs:
        lows = sorted(glob.glob(os.path.join(folder, "low", "*")))
        acc: dict[float, list[tuple[float, float, float, float]]] = {}
        for low in lows:
            high = glob.glob(os.path.join(folder, "high", os.path.splitext(os.path.basename(low))[0] + ".*"))[0]
            x = read_image_tensor(low)[None]
            gt = to_uint8(read_image_tensor(high))
            with torch.inference_mode():
                outs = {s: to_uint8(enhance(model, x, curve_scale=s)[0].clamp(0, 1)) for s in scales}
            for s in scales:
                acc.setdefault(s, []).append((psnr(outs[s], outs[scales[0]]), ssim(outs[s], outs[scales[0]]),
                                              psnr(outs[s], gt), ssim(outs[s], gt)))
        name = f"{os.path.relpath(folder, DATA) if folder.startswith(DATA) else folder} ({len(lows)})"
        for s in scales:
            m = np.mean(acc[s], axis=0)
            vs_full = "-" if s == scales[0] else f"{m[0]:.2f} dB / {m[1]:.4f}"
            print(f"| {name} | {s:g} | {vs_full} | {m[2]:.2f} dB / {m[3]:.4f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    lime = os.path.join(os.path.dirname(ROOT), "shared", "data", "LIME", "10.bmp")
    p.add_argument("--photo", default=lime, help="photo upscaled to 6000x4000 (default ../shared/data/LIME/10.bmp)")
    p.add_argument("--scales", default="2,4,8", help="curve scales compared with 1")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sets", default="speed,quality")
    p.add_argument("--pairs", default=",".join(os.path.join(DATA, d) for d in ("sice-split/val", "LOL-demo/eval15")),
                   help="paired folders (low/ and high/), comma-separated")
    args = p.parse_args()
    import torch

    scales = [1.0] + [float(s) for s in args.scales.split(",")]
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; load average "
          f"before: {' / '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if "speed" in args.sets:
        speed(args.photo, scales, args.repeats)
    if "quality" in args.sets:
        quality([d for d in args.pairs.split(",") if d], scales)


if __name__ == "__main__":
    main()

"""Folder inference speed and memory: ``lowlight_test.py`` against a plain reference loop, one table.

    python benchmarks/bench_inference.py [--repeats 3] [--weights W] [--input DIR] [--sets photos,same,big,png] [--device cpu]

The reference loop is what the official test script does: the DCE-Net class in fp32 (NCHW contiguous,
plain ``model(x)``), loaded once; PIL load (``np.asarray(Image.open(p).convert('RGB'))/255``), save with
torchvision's rounding. Every variant runs in its own process (``lowlight_test.py`` as a user runs it),
the variants interleaved ``--repeats`` times; ms/image is the median over the repeats of the folder pass
(model loading and library imports excluded, in both), peak memory the process's peak RSS. Outputs are
compared with the reference loop's: largest difference in 8-bit levels and the share of pixels that
differ. Image sets: ``--input`` (default ../shared/data/LIME when present, else synthetic), 8 same-size
600x400 images, and one 6000x4000 photo (tiled, peak memory); ``png`` times the PNG encoders on one image.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PY = sys.executable

from utils.help import HelpFormatter  # noqa: E402

REFERENCE_LOOP = r"""
import json, os, sys, time
import numpy as np, torch
from PIL import Image
sys.path.insert(0, sys.argv[1])
from lowlight_model import enhance_net_nopool
src, dst, weights, device = sys.argv[2:6]
model = enhance_net_nopool().to(device)
# a raw torch.load, not utils.training_checkpoint: this copies the reference's test loop on purpose
sd = torch.load(weights, map_location=device, weights_only=True)
sd = sd.get("state_dict", sd)
model.load_state_dict({k.replace("module.", ""): v for k, v in sd.items()})
model.eval()
Image.preinit()  # Pillow's format plugins imported before the clock, as lowlight_test.py does
start = time.perf_counter()
names = sorted(os.listdir(src))
for name in names:
    x = torch.from_numpy(np.asarray(Image.open(os.path.join(src, name)).convert("RGB")) / 255.0).float()
    x = x.permute(2, 0, 1).unsqueeze(0).to(device)
    with torch.no_grad():
        y = model(x)[1]
    a = y[0].mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    Image.fromarray(a).save(os.path.join(dst, name))
if device.startswith("cuda"):
    torch.cuda.synchronize()
elapsed = time.perf_counter() - start
from utils.memory import peak_rss  # not ru_maxrss, which would give this benchmark's own peak (see peak_rss)
print(json.dumps({"ms": 1000 * elapsed / len(names), "rss": peak_rss()}))
"""
SUMMARY = re.compile(r"in ([\d.]+)s, (\d+) ms/image; peak memory ([\d.]+) GB RSS")


def run_reference(src: str, dst: str, weights: str, device: str) -> tuple[float, float]:
    os.makedirs(dst, exist_ok=True)
    r = subprocess.run([PY, "-c", REFERENCE_LOOP, ROOT, src, dst, weights, device], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"reference loop failed: {r.stderr.strip().splitlines()[-1]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return out["ms"], out["rss"] / 1e9


def run_ours(src: str, dst: str, weights: str, device: str, flags: list[str]) -> tuple[float, float]:
    r = subprocess.run([PY, os.path.join(ROOT, "lowlight_test.py"), "--input_dir", src, "--output_dir", dst,
                        "--weights", weights, "--device", device, "--exposure", "off", *flags],  # as the reference
                       capture_output=True, text=True)
    m = SUMMARY.search(r.stdout)
    if r.returncode or not m:
        sys.exit(f"lowlight_test.py {' '.join(flags)} failed: {(r.stderr or r.stdout).strip().splitlines()[-1]}")
    return float(m.group(2)), float(m.group(3))  # ms/image as printed (1 ms resolution)


def levels(a_dir: str, b_dir: str) -> tuple[int, float]:
    """Largest 8-bit difference between same-named images and the share of differing pixel values."""
    worst, differ, total = 0, 0, 0
    for name in sorted(os.listdir(a_dir)):
        a = np.asarray(Image.open(os.path.join(a_dir, name)).convert("RGB"), np.int16)
        b = np.asarray(Image.open(os.path.join(b_dir, name)).convert("RGB"), np.int16)
        d = np.abs(a - b)
        worst, differ, total = max(worst, int(d.max())), differ + int((d > 0).sum()), total + d.size
    return worst, differ / total


def synthetic(folder: str, n: int, h: int, w: int) -> str:
    """``n`` smooth dark RGB images of h x w (PNG) in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.random((h // 50 + 2, w // 50 + 2, 3))
        img = np.asarray(Image.fromarray((base * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
        img = np.clip(img * 0.25 + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"{i:03d}.png"))
    return folder


def bench_set(title: str, src: str, tmp: str, weights: str, device: str, variants, repeats: int) -> list[list[str]]:
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    rss: dict[str, float] = {}
    for r in range(repeats):
        for name, flags in variants:
            dst = os.path.join(tmp, title, name.replace(" ", "_"))
            ms, peak = (run_reference(src, dst, weights, device) if flags is None
                        else run_ours(src, dst, weights, device, flags))
            times[name].append(ms)
            rss[name] = max(rss.get(name, 0.0), peak)
    ref_name = variants[0][0]
    ref_ms = statistics.median(times[ref_name])
    rows = []
    for name, _ in variants:
        ms = statistics.median(times[name])
        worst, share = levels(os.path.join(tmp, title, ref_name.replace(" ", "_")), os.path.join(tmp, title, name.replace(" ", "_")))
        rows.append([title, name, f"{ms:.0f}", f"{1000 / ms:.2f}", f"{rss[name]:.2f}", f"{ref_ms / ms:.2f}x",
                     f"{worst} ({100 * share:.2f}%)"])
    return rows


def print_table(rows: list[list[str]]) -> None:
    if not rows:
        return
    head = ["images", "variant", "ms/image", "images/s", "peak GB", "vs reference", "max 8-bit diff (pixels)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    lime = os.path.join(os.path.dirname(ROOT), "shared", "data", "LIME")
    p.add_argument("--input", default=lime if os.path.isdir(lime) else None, help="folder of photos (flat)")
    p.add_argument("--weights", default=os.path.join(ROOT, "checkpoints", "LLE_model.pth"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sets", default="photos,same,big,png",
                   help="comma-separated: photos (--input), same (8 same-size images), big (6000x4000), "
                        "png (PNG encoding of one output)")
    args = p.parse_args()
    bf16 = ("bf16", ["--precision", "bf16"])
    variants = [("reference loop", None), ("default (fp32)", []), ("fp32, no I/O threads", ["--workers", "0"]), bf16]
    if args.device.startswith("cuda"):
        variants.append(("fp16", ["--precision", "fp16"]))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {args.device}, median of {args.repeats}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = args.sets.split(",")
        src = args.input or synthetic(os.path.join(tmp, "photos"), 6, 400, 600)
        rows += [] if "photos" not in sets else bench_set(os.path.basename(src.rstrip("/")), src, tmp, args.weights, args.device, variants,
                          args.repeats)
        same = synthetic(os.path.join(tmp, "same"), 8, 400, 600) if "same" in sets else ""
        rows += [] if "same" not in sets else bench_set("8x 600x400", same, tmp, args.weights, args.device,
                          variants[:2] + [("fp32, --batch_size 4", ["--batch_size", "4"]), bf16,
                                          ("bf16, --batch_size 4", ["--precision", "bf16", "--batch_size", "4"])],
                          args.repeats)
        if "big" in sets:
            big = synthetic(os.path.join(tmp, "big"), 1, 4000, 6000)
            for name, flags in (("--tile 512", ["--tile", "512"]), ("default (auto tiles)", []),
                                ("bf16 --tile 512", ["--precision", "bf16", "--tile", "512"])):
                ms, peak = run_ours(big, os.path.join(tmp, "big_out", name.replace(" ", "_")), args.weights,
                                    args.device, flags)
                rows.append(["6000x4000", name, f"{ms:.0f}", f"{1000 / ms:.2f}", f"{peak:.2f}", "-", "-"])
    print_table(rows)
    if "png" in sets:
        png_table(args.input, args.repeats)


def png_table(photos: str | None, repeats: int) -> None:
    """Encoding one output as PNG: Pillow at zlib levels 1 and 6 against ``utils.image_io``'s OpenCV path."""
    import io
    import time

    from utils.image_io import PNG_COMPRESS_LEVEL, _encode_png

    def pil(level: int):
        def run(a: np.ndarray) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="PNG", compress_level=level)
            return buf.getvalue()
        return run

    with tempfile.TemporaryDirectory() as tmp:
        images = {"600x400 synthetic": np.asarray(Image.open(os.path.join(synthetic(tmp, 1, 400, 600), "000.png")))}
    if photos:
        first = sorted(os.listdir(photos))[0]
        images[f"{first} (input)"] = np.asarray(Image.open(os.path.join(photos, first)).convert("RGB"))
    print(f"\n| PNG encoding (median of {max(3, repeats)}) | Pillow level 6 | Pillow level 1 "
          f"| OpenCV level {PNG_COMPRESS_LEVEL}, Z_RLE, up filter (written) |")
    print("|---|---|---|---|")
    for name, a in images.items():
        cells = []
        for encode in (pil(6), pil(1), _encode_png):
            times = []
            for _ in range(max(3, repeats)):
                t = time.perf_counter()
                size = len(encode(a))
                times.append(time.perf_counter() - t)
            cells.append(f"{1000 * statistics.median(times):.1f} ms, {size / 1e3:.0f} kB")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""DCE-Net inference on one 600x400 image: fp32 (reference), channels_last, bf16 autocast.

    python benchmarks/bench_enhancer.py [--repeats 5] [--threads 2]

Prints the median time of each variant, its ratio to fp32 in the same run, and the largest
difference from fp32 (in [0,1] units and in 8-bit levels after rounding). A second table times the
convolutions alone (the curve maps, channels-last) as ``lowlight_test.py`` runs them on the CPU: oneDNN
with fused activations, each convolution of a concatenation on the concatenation, or (the default)
``e_conv5/6`` split in two and ``e_conv7`` padded to 32 outputs, in fp32 and bf16; differences are to
the plain layers' curve maps.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lowlight_model import enhance_net_nopool, weights_init  # noqa: E402
from utils.image_io import to_uint8  # noqa: E402
from utils.help import HelpFormatter  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = enhance_net_nopool().eval()
    model.apply(weights_init)
    x = torch.rand(1, 3, 400, 600) * 0.3

    def fp32():
        with torch.inference_mode():
            return model(x)[1]

    cl_model = enhance_net_nopool().eval()
    cl_model.load_state_dict(model.state_dict())
    cl_model = cl_model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def channels_last():
        with torch.inference_mode():
            return cl_model(x_cl)[1]

    def bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return cl_model(x_cl)[1].float()

    results = [(name, *timed(fn, args.repeats)) for name, fn in
               (("fp32", fp32), ("channels_last", channels_last), ("bf16 autocast", bf16))]
    base_t, base = results[0][1], results[0][2]
    base8 = to_uint8(base[0].clamp(0, 1)).astype(int)
    print(f"DCE-Net 600x400, {args.threads} threads, median of {args.repeats}")
    print(f"{'variant':<15}{'time (s)':>10}{'vs fp32':>10}{'max |diff|':>12}{'max 8-bit diff':>16}")
    for name, t, out in results:
        d = (out - base).abs().max().item()
        d8 = abs(to_uint8(out[0].clamp(0, 1)).astype(int) - base8).max()
        print(f"{name:<15}{t:>10.3f}{base_t / t:>9.2f}x{d:>12.2e}{d8:>16d}")
    curve_maps(cl_model, x_cl, args.repeats)


def curve_maps(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> None:
    """The convolutions alone: plain layers against the fused inference kernels (see the module docstring)."""
    def fused(split: bool, dtype: torch.dtype):
        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                r = model._fused_curve_maps(x, split=split)  # None where the kernels do not apply
                return None if r is None else r.float()
        return run

    def plain():
        with torch.inference_mode():
            return model.curve_maps(x)

    if fused(True, torch.float32)() is None:
        print("(no oneDNN fused convolutions in this build)")
        return
    variants = [("plain layers", plain), ("fused, concatenated", fused(False, torch.float32)),
                ("fused, split/padded", fused(True, torch.float32))]
    if fused(True, torch.bfloat16)() is not None:
        variants.append(("bf16 fused, split/padded", fused(True, torch.bfloat16)))
    else:  # bf16 needs the CPU's own bf16 instructions (AVX-512 BF16 / AMX) for these kernels
        print("(no bf16 fused convolutions on this CPU)")
    results = [(name, *timed(fn, repeats)) for name, fn in variants]
    base_t, base = results[0][1], results[0][2]
    print(f"\ncurve maps alone (channels-last input), median of {repeats}")
    print(f"{'variant':<26}{'time (ms)':>10}{'vs plain':>10}{'max |diff|':>12}")
    for name, t, out in results:
        print(f"{name:<26}{1000 * t:>10.1f}{base_t / t:>9.2f}x{(out - base).abs().max().item():>12.2e}")


if __name__ == "__main__":
    main()

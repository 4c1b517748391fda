"""An exported enhancer against PyTorch on one 600x400 image (CPU): ONNX Runtime, TorchScript, PyTorch fp32.

    python benchmarks/bench_export.py [--weights checkpoints/LLE_model.pth] [--repeats 5] [--threads 2]

``--weights`` may be any enhancer checkpoint (DCE-Net or EMNet, recognised as by ``tools.export``).

Exports the checkpoint with ``tools.export`` into a temporary folder, then prints the median time of
each runtime (same input, same number of threads, one warm-up run each, runtimes taking turns), its speed relative to
PyTorch measured in the same run, and the largest difference from PyTorch's output.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lowlight_model import enhance, load_enhancer  # noqa: E402
from tools.export import INPUT_NAME, OUTPUT_NAME, export_model  # noqa: E402
from utils.help import HelpFormatter  # noqa: E402


def timed_interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, torch.Tensor]]:
    """Median time and output of each function; one warm-up each, then the functions take turns, so a
    change in the machine's load during the run affects them alike."""
    outs = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t)
    return {name: (statistics.median(times[name]), outs[name]) for name in fns}


def main() -> None:
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--weights", default="checkpoints/LLE_model.pth")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    model = load_enhancer("auto", args.weights, torch.device("cpu"))
    x = torch.rand(1, 3, 400, 600, generator=torch.Generator().manual_seed(0)) * 0.3
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, ts_path = os.path.join(tmp, "m.onnx"), os.path.join(tmp, "m.pt")
        export_model(model, "onnx", onnx_path)
        export_model(model, "torchscript", ts_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.load(ts_path, map_location="cpu")
        x_np = x.numpy()

        def pytorch():
            with torch.inference_mode():
                return enhance(model, x)

        def onnxruntime():
            return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x_np})[0])

        def torchscript():
            with torch.inference_mode():
                return scripted(x)

        timings = timed_interleaved({"PyTorch fp32": pytorch, "ONNX Runtime": onnxruntime,
                                     "TorchScript": torchscript}, args.repeats)
    results = [(name, t, out) for name, (t, out) in timings.items()]
    base_t, base = results[0][1], results[0][2]
    print(f"{model.arch} ({args.weights}) 600x400, {args.threads} threads, median of {args.repeats}; "
          f"onnxruntime {ort.__version__}, torch {torch.__version__}")
    print(f"{'runtime':<15}{'time (s)':>10}{'speed vs PyTorch':>18}{'max |diff|':>12}")
    for name, t, out in results:
        print(f"{name:<15}{t:>10.3f}{base_t / t:>17.2f}x{(out - base).abs().max().item():>12.2e}")


if __name__ == "__main__":
    main()

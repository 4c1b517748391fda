"""Export an enhancer (DCE-Net or EMNet) to ONNX or TorchScript, with dynamic batch, height and width.

    python -m tools.export --weights checkpoints/LLE_model.pth --format onnx --out LLE_model.onnx
    python -m tools.export --weights log/LOL_v1/models/model_best.pth --format torchscript --out emnet.pt

The architecture (and EMNet's width) is recognised from the checkpoint. The exported graph maps one
input ``input`` (N,3,H,W) float32 in [0,1] to one output ``enhanced`` (N,3,H,W), the same values as
its :class:`network.enhancer.Enhancer` (not clamped: clamp to [0,1] before converting to 8 bits). EMNet's graph
reflect-pads H and W up to multiples of 8 and crops back, so any H, W >= 8 works. Before the file is
moved into place (atomically), it is run on an input of another size than the export example and
compared with PyTorch; a difference above ``--tol`` is an error and nothing is written.

DCE-Net only: ``--strength S`` bakes a fixed scale of the curve maps into the graph and ``--curve_scale S``
the downscaled curve estimation (``lowlight_test.py``'s flags; the graph downscales with ``Resize``,
estimates the maps, upsamples them to the input size and applies the curves; H and W must be at least
``S``). ``--exposure`` is refused: it finds one scale per image by a bisection on a subsample whose stride
follows the image size, which a graph of fixed operations does not hold; export with ``--strength``, or
run ``lowlight_test.py --exposure``.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import warnings

import torch
from torch import nn

from network.enhancer import Enhancer, as_enhancer, load_enhancer, reflect_pad
from utils.errors import UserError, run_cli
from network.curve_scale import MAX_SCALE
from utils.options import add_arch_arguments, at_least, between, parse, parser
from utils.fs import atomic_path, check_writable_dir
from utils.model_card import card_path, describe, inference_defaults

FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAME = "input", "enhanced"
# Export example (N, H, W) and the different size the parity check uses (dynamic shapes).
EXAMPLE_SHAPE = (2, 64, 96)
CHECK_SHAPE = (3, 45, 71)
MIN_OPSET = 18  # the oldest opset torch.export-based ONNX export produces
EXPOSURE_REFUSED = ("--exposure cannot be exported: it solves one curve scale per image at run time (a bisection "
                    "on a subsample whose stride follows the image size); export a fixed --strength instead, or "
                    "run lowlight_test.py --exposure")


class _ScriptedPad(nn.Module):
    """TorchScript's form of :class:`Enhancer`'s padding (scripted, so the pad follows the input size) around a
    traced network: :func:`network.enhancer.reflect_pad` to ``multiple``, the network, the crop back."""

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        return self.net(reflect_pad(x, self.multiple))[:, :, :h, :w]


def wrap(model: nn.Module) -> Enhancer:
    """The exportable (N,3,H,W) -> (N,3,H,W) module of an enhancer: its :class:`Enhancer`, eval mode."""
    return as_enhancer(model).eval()


def _min_side(wrapper: Enhancer) -> int:
    return max(2, wrapper.spec.size_multiple, math.ceil(wrapper.curve_scale))


def _example(shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """A dim image batch (N,3,H,W) in [0, 0.4]: the range low-light inputs live in."""
    g = torch.Generator().manual_seed(seed)
    n, h, w = shape
    return torch.rand(n, 3, h, w, generator=g) * 0.4


def _export_onnx(wrapper: nn.Module, path: str, opset: int | None) -> None:
    import onnx

    min_hw = _min_side(wrapper)
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=min_hw),
            3: torch.export.Dim("width", min=min_hw)}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (_example(EXAMPLE_SHAPE, 0),), path, dynamo=True, external_data=False,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                          dynamic_shapes={"x": dims}, verbose=False)
    # The exporter names the output's sizes by their formulas (EMNet: Min(height, 8*(...))); they equal
    # the input's, so say so.
    graph = onnx.load(path)
    for i, name in ((0, "batch"), (2, "height"), (3, "width")):
        graph.graph.output[0].type.tensor_type.shape.dim[i].dim_param = name
    onnx.checker.check_model(graph)
    onnx.save(graph, path)


def _export_torchscript(wrapper: nn.Module, path: str) -> None:
    """Trace the Enhancer on the example; where it pads (EMNet, whose network returns the image itself), trace
    the network and script the padding around it, so the pad follows the input size."""
    x = _example(EXAMPLE_SHAPE, 0)
    multiple = wrapper.spec.size_multiple
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if multiple > 1:
            module = torch.jit.script(_ScriptedPad(torch.jit.trace(wrapper.net, x, check_trace=False), multiple))
        else:
            module = torch.jit.trace(wrapper, x, check_trace=False)
        torch.jit.save(module, path)  # deprecated in favour of torch.export, still supported


def run_exported(path: str, fmt: str, x: torch.Tensor) -> torch.Tensor:
    """Run an exported file on ``x`` (N,3,H,W): ONNX through onnxruntime (CPU), TorchScript through torch."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(path, map_location="cpu")
    with torch.inference_mode():
        return module(x)


def _writable_target(out: str) -> None:
    """A one-line error if ``out`` is a folder, or its folder is missing or not writable."""
    folder = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise UserError(f"--out {out} is a folder; give a file name (e.g. {os.path.join(out, 'model.onnx')})")
    if not os.path.isdir(folder):
        raise UserError(f"--out {out}: folder {folder} does not exist; create it first")
    check_writable_dir(folder, f"--out {out}: folder")


def _check_options(fmt: str, opset: int | None) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if opset is not None and opset < MIN_OPSET:
        raise UserError(f"--opset {opset} is too old; use {MIN_OPSET} or more (PyTorch's exporter) or omit it")


def export_model(model: nn.Module, fmt: str, out: str, opset: int | None = None, tol: float = 1e-4) -> float:
    """Export ``model`` (an enhancer with an ``arch`` attribute, on the CPU) to ``out`` atomically.

    Returns the largest absolute difference from PyTorch on a ``CHECK_SHAPE`` input; raises
    :class:`UserError` (and writes nothing) when it exceeds ``tol``.
    """
    _check_options(fmt, opset)
    _writable_target(out)
    wrapper = wrap(model)
    if wrapper.exposure is not None:
        raise UserError(EXPOSURE_REFUSED)
    with atomic_path(out) as tmp:  # the temporary file keeps --out's extension
        if fmt == "onnx":
            _export_onnx(wrapper, tmp, opset)
        else:
            _export_torchscript(wrapper, tmp)
        x = _example(CHECK_SHAPE, 1)
        with torch.inference_mode():
            ref = wrapper(x)
        diff = (run_exported(tmp, fmt, x) - ref).abs().max().item()
        if not diff <= tol:
            raise UserError(f"the exported {fmt} model differs from PyTorch by {diff:.2e} (> --tol {tol:g}) on a "
                            f"{'x'.join(map(str, CHECK_SHAPE))} input; nothing was written to {out}")
    return diff


def export(weights: str, fmt: str, out: str, arch: str = "auto", embed_dim: int | None = None,
           opset: int | None = None, tol: float = 1e-4, strength: float = 1.0,
           curve_scale: float = 1.0) -> tuple[str, float]:
    """Load ``weights`` on the CPU (``arch`` ``auto``: recognised from the checkpoint), with ``strength`` and
    ``curve_scale`` baked in (DCE-Net), and export it;
    returns ``(arch, max difference from PyTorch)``."""
    _check_options(fmt, opset)
    _writable_target(out)  # fail before loading anything
    model = load_enhancer(arch, weights, torch.device("cpu"), embed_dim=embed_dim)
    model.set_curve_control(strength, None, curve_scale)
    return model.arch, export_model(model, fmt, out, opset=opset, tol=tol)


def main(argv: list[str] | None = None) -> None:
    p = parser(prog="python -m tools.export", description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("what to export")
    g.add_argument("--weights", required=True, help="enhancer checkpoint (any layout the project loads)")
    g.add_argument("--format", required=True, choices=FORMATS)
    g.add_argument("--out", required=True, help="output file (.onnx / .pt); its folder must exist")
    add_arch_arguments(g, default="auto", auto=True, auto_help="recognised (with its width) from the checkpoint")
    g = p.add_argument_group("export and check")
    g.add_argument("--opset", type=int, default=None, help="ONNX opset version (>= 18); None = the exporter's default")
    g.add_argument("--tol", type=float, default=1e-4, help="largest accepted difference from PyTorch")
    g = p.add_argument_group("curve control baked into the graph (DCE-Net)")
    g.add_argument("--strength", type=at_least(0.0, float), default=1.0, metavar="S",
                   help="every curve map scaled by S (default 1: the model's own output)")
    g.add_argument("--curve_scale", type=between(1.0, MAX_SCALE), default=1.0, metavar="S",
                   help="curve maps estimated on the input downscaled by S (default 1: full resolution)")
    g.add_argument("--exposure", type=float, default=None, metavar="E",
                   help="refused: a per-image solve (see above); use --strength (default: none)")
    args = parse(p, argv)
    if args.exposure is not None:
        raise UserError(EXPOSURE_REFUSED)
    with torch.no_grad():
        arch, diff = export(args.weights, args.format, args.out, args.arch, args.embed_dim, args.opset, args.tol,
                            args.strength, args.curve_scale)
    n, h, w = CHECK_SHAPE
    baked = "".join(f", {k} {v:g}" for k, v in (("strength", args.strength), ("curve_scale", args.curve_scale))
                    if v != 1.0)
    print(f"wrote {args.out} ({args.format}, {arch}{baked}, input '{INPUT_NAME}' (N,3,H,W) -> output '{OUTPUT_NAME}'); "
          f"max |diff| from PyTorch on {n}x3x{h}x{w}: {diff:.2e}")
    card = inference_defaults(args.weights)
    if card:
        print(f"note: the card {card_path(args.weights)} ({describe(card)}) is not in the exported graph, which "
              f"gives the network's own output (lowlight_test.py --exposure off); --exposure solves per image",
              file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)

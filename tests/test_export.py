"""tools/export.py: ONNX (onnxruntime) and TorchScript (torch.jit.load) files against PyTorch, at sizes
other than the export example (dynamic N, H, W), EMNet padding, the README's ONNX example, bad input."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import ROOT, random_dce, run_cli_in_process
from lowlight_model import enhance, load_enhancer
from network.emnet import EMNet
import utils.fs as fs
from tools import export as ex
from utils.errors import UserError
from utils.image_io import read_image_tensor, to_uint8

TOL = 1e-4


def _dark(n: int, h: int, w: int, seed: int = 5) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 0.3


@pytest.fixture(scope="module")
def dce_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("dce") / "dce.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in random_dce().state_dict().items()}}, path)
    return path


@pytest.fixture(scope="module")
def dce_exports(dce_ckpt, tmp_path_factory):
    """Both formats of the random DCE-Net, written once through the command line."""
    out = tmp_path_factory.mktemp("dce_out")
    files = {"onnx": out / "dce.onnx", "torchscript": out / "dce.pt"}
    for fmt, path in files.items():
        ex.main(["--weights", str(dce_ckpt), "--format", fmt, "--out", str(path)])
    return files


def _tiny_emnet() -> torch.nn.Module:
    torch.manual_seed(0)
    m = EMNet(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).eval()
    m.arch = "emnet"
    return m


@pytest.mark.parametrize("fmt", ex.FORMATS)
@pytest.mark.parametrize("shape", [(1, 37, 53), (3, 120, 80)])
def test_dce_parity_dynamic_shapes(dce_exports, dce_ckpt, fmt, shape):
    assert torch.is_grad_enabled()  # the command left the process as it found it
    model = load_enhancer("auto", str(dce_ckpt), torch.device("cpu"))
    x = _dark(*shape)
    with torch.inference_mode():
        ref = enhance(model, x)
    got = ex.run_exported(str(dce_exports[fmt]), fmt, x)
    assert got.shape == x.shape
    assert (ref - x).abs().max() > 0.01  # the model does something, so parity means something
    assert (got - ref).abs().max().item() <= TOL


def test_onnx_graph_declares_dynamic_sizes(dce_exports):
    import onnx

    graph = onnx.load(str(dce_exports["onnx"])).graph

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    assert [(v.name, dims(v)) for v in graph.input] == [("input", ["batch", 3, "height", "width"])]
    assert [(v.name, dims(v)) for v in graph.output] == [("enhanced", ["batch", 3, "height", "width"])]


@pytest.mark.parametrize("fmt", [pytest.param("onnx", marks=pytest.mark.slow), "torchscript"])
def test_emnet_padded_parity(tmp_path, fmt):
    """EMNet's graph pads to multiples of 8 and crops: sizes that are not multiples match PyTorch's enhance().

    A 9-block EMNet (the full one has 45 blocks of the same kinds); its ONNX export alone takes about
    two minutes on the busy 2-core machine, hence slow."""
    model = _tiny_emnet()
    out = tmp_path / f"emnet.{fmt}"
    diff = ex.export_model(model, fmt, str(out))
    assert diff <= TOL
    for shape in [(1, 37, 53), (2, 64, 40)]:
        x = _dark(*shape, seed=shape[1])
        with torch.inference_mode():
            ref = enhance(model, x)
        got = ex.run_exported(str(out), fmt, x)
        assert got.shape == x.shape
        assert (got - ref).abs().max().item() <= TOL


@pytest.mark.slow
def test_emnet_checkpoint_torchscript_cli(tmp_path):
    """The full EMNet (embed dim 8) from a training checkpoint through the command line: arch and width
    recognised, 8-multiple padding (the command's code path is the same for ONNX)."""
    torch.manual_seed(1)
    state = EMNet(dim=8).state_dict()
    ckpt = tmp_path / "model_best.pth"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, ckpt)
    out = tmp_path / "emnet.pt"
    ex.main(["--weights", str(ckpt), "--format", "torchscript", "--out", str(out)])
    model = load_enhancer("auto", str(ckpt), torch.device("cpu"))
    x = _dark(1, 36, 50)
    with torch.inference_mode():
        ref = enhance(model, x)
    assert (ex.run_exported(str(out), "torchscript", x) - ref).abs().max().item() <= TOL


def test_readme_onnx_example(dce_exports, dce_ckpt, tmp_path, monkeypatch):
    """The five-line ONNX example of docs/inference.md, run as written, gives PyTorch's 8-bit image (±1 level)."""
    page = (ROOT / "docs" / "inference.md").read_text()
    section = page[page.index("Running the ONNX model needs only"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) == 5
    model_name = re.findall(r'"([^"]+\.onnx)"', code)[0]
    in_name, out_name = re.findall(r'"([^"]+\.png)"', code)
    (tmp_path / model_name).write_bytes(dce_exports["onnx"].read_bytes())
    dark = (_dark(1, 41, 67)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(dark).save(tmp_path / in_name)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})  # as written, in a fresh namespace
    got = np.asarray(Image.open(tmp_path / out_name)).astype(int)
    model = load_enhancer("auto", str(dce_ckpt), torch.device("cpu"))
    with torch.inference_mode():
        ref = to_uint8(enhance(model, read_image_tensor(str(tmp_path / in_name)).unsqueeze(0))[0].clamp(0, 1))
    assert got.shape == ref.shape == (41, 67, 3)
    assert np.abs(got - ref.astype(int)).max() <= 1
    assert np.abs(got - dark.astype(int)).max() > 5  # enhanced, not copied


# ---------------------------------------------------------------------------------------- bad input

def _cli(*args: str) -> tuple[int, list[str]]:
    """``python -m tools.export ARGS`` in this process: (exit status, stderr lines)."""
    code, err, _ = run_cli_in_process(ex.main, list(args))
    return code, err


def test_cli_missing_weights_one_line(tmp_path):
    code, err = _cli("--weights", str(tmp_path / "nope.pth"), "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert code == 2
    assert len(err) == 1 and "nope.pth" in err[0] and "not found" in err[0]
    assert not (tmp_path / "m.onnx").exists()


def test_cli_unknown_format(tmp_path, dce_ckpt):
    code, err = _cli("--weights", str(dce_ckpt), "--format", "tflite", "--out", str(tmp_path / "m.tflite"))
    assert code == 2 and "invalid choice: 'tflite'" in err[-1]
    with pytest.raises(UserError, match="--format 'tflite'"):
        ex.export(str(dce_ckpt), "tflite", str(tmp_path / "m.tflite"))


@pytest.mark.parametrize("case", ["corrupt", "not_enhancer", "missing_folder", "out_is_folder"])
def test_bad_input_user_errors(tmp_path, dce_ckpt, case):
    weights, out = str(dce_ckpt), str(tmp_path / "m.onnx")
    if case == "corrupt":
        weights = str(tmp_path / "bad.pth")
        (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
        match = "cannot read checkpoint"
    elif case == "not_enhancer":
        weights = str(tmp_path / "other.pth")
        torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
        match = "not a checkpoint of a known enhancer"
    elif case == "missing_folder":
        out, match = str(tmp_path / "no" / "m.onnx"), "does not exist; create it first"
    else:
        out, match = str(tmp_path), "is a folder"
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UserError, match=match) as e:
        ex.export(weights, "onnx", out)
    assert "\n" not in str(e.value)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_opset(tmp_path, dce_ckpt):
    """Opsets below 18 break the exporter (its Split has no 'num_outputs' before 18): refused up front."""
    with pytest.raises(UserError, match="--opset 17 is too old; use 18"):
        ex.export(str(dce_ckpt), "onnx", str(tmp_path / "m.onnx"), opset=17)
    import onnx

    ex.export(str(dce_ckpt), "onnx", str(tmp_path / "m.onnx"), opset=18)
    assert [o.version for o in onnx.load(str(tmp_path / "m.onnx")).opset_import if o.domain == ""] == [18]


def test_unwritable_folder(tmp_path, monkeypatch):
    """A folder the exporter cannot create files in (read-only mount, permissions) is one line."""
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fs.tempfile, "mkstemp", refuse)
    with pytest.raises(UserError, match=r"cannot write in .*Permission denied"):
        ex.export_model(random_dce(), "torchscript", str(tmp_path / "m.pt"))


def test_failed_check_writes_nothing(tmp_path):
    """A parity failure leaves an existing --out untouched and no temporary file behind."""
    out = tmp_path / "m.pt"
    out.write_bytes(b"previous")
    with pytest.raises(UserError, match="nothing was written"):
        ex.export_model(random_dce(), "torchscript", str(out), tol=-1.0)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]

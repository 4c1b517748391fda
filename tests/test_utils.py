"""The project's checkpoint loader, atomic save, device resolution and pretrained-weights lookup."""
import os

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from utils.checkpoint import atomic_save, extract_state_dict, load_weights, read_checkpoint
from utils.device import resolve_device
from utils.errors import UserError
from utils.pretrained import load_pretrained


def _net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1))


@pytest.mark.parametrize("wrap", [None, "state_dict", "model_state", "params", "model"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_loader_accepts_reference_layouts(tmp_path, wrap, prefix):
    src = _net()
    state = {prefix + k: v for k, v in src.state_dict().items()}
    obj = state if wrap is None else {wrap: state, "epoch": 3}
    torch.save(obj, tmp_path / "c.pth")
    dst = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1))
    load_weights(dst, str(tmp_path / "c.pth"))
    for a, b in zip(src.state_dict().values(), dst.state_dict().values()):
        assert torch.equal(a, b)


def test_loader_names_missing_and_unexpected_keys(tmp_path):
    state = _net().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["1.bias"]
    torch.save(state, tmp_path / "c.pth")
    with pytest.raises(UserError) as e:
        load_weights(_net(), str(tmp_path / "c.pth"))
    msg = str(e.value)
    assert "1.bias" in msg and "extra.weight" in msg and "c.pth" in msg and "\n" not in msg


def test_loader_errors_on_corrupt_missing_and_non_model_files(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.pth"):
        read_checkpoint(str(tmp_path / "bad.pth"))
    with pytest.raises(UserError, match="nope.pth"):
        read_checkpoint(str(tmp_path / "nope.pth"))
    with pytest.raises(UserError, match="no model state dict"):
        extract_state_dict({"epoch": 1}, "x.pth")


def test_loader_reports_shape_mismatch(tmp_path):
    torch.save(nn.Sequential(nn.Conv2d(3, 5, 3), nn.Conv2d(5, 2, 1)).state_dict(), tmp_path / "c.pth")
    with pytest.raises(UserError, match="shape"):
        load_weights(_net(), str(tmp_path / "c.pth"))


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "ck.pth"
    atomic_save({"a": torch.ones(2)}, str(path))

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"a": Boom()}, str(path))
    assert torch.equal(torch.load(path)["a"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["ck.pth"]


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            resolve_device("cuda")


def test_missing_pretrained_weights_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError) as e:
        load_pretrained(tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1)
    assert "resnet18-f37072fd.pth" in str(e.value)
    assert str(tmp_path / "hub" / "checkpoints") in str(e.value)


def test_pretrained_weights_load_from_cache(fake_torch_home):
    model = load_pretrained(tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1)
    saved = torch.load(fake_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    assert torch.equal(model.conv1.weight, saved["conv1.weight"])

"""utils/: the checkpoint loader and atomic save, device resolution, pretrained-weights lookup."""
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


# issue 8: the loader never leaks a traceback or unsafe-unpickling advice ---------------------------

LFS_TEXT = ("version https://git-lfs.github.com/spec/v1\n"
            "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")


@pytest.mark.parametrize("content,expected", [
    (b"hello world\nthis is text\n", "not a PyTorch checkpoint"),   # torch.load raised KeyError
    (b"K", "not a PyTorch checkpoint"),                              # torch.load raised IndexError
    (b'{"a": 1}', "is it a PyTorch .pth file"),
    (b"", "is empty"),
    (LFS_TEXT.encode(), "git lfs pull"),
])
def test_non_checkpoints_are_one_line_errors(tmp_path, content, expected):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        read_checkpoint(str(path))
    msg = str(e.value)
    assert expected in msg and "model.pth" in msg and "\n" not in msg and "weights_only" not in msg


def test_pickled_objects_are_refused_without_unsafe_advice(tmp_path):
    torch.save(_net(), tmp_path / "whole_model.pth")  # a pickled nn.Module, not a state dict
    with pytest.raises(UserError) as e:
        read_checkpoint(str(tmp_path / "whole_model.pth"))
    msg = str(e.value)
    assert "torch.nn.modules.container.Sequential" in msg and "whole_model.pth" in msg
    assert "weights_only" not in msg.lower().replace(" ", "_") and "trust" not in msg and "\n" not in msg


def test_a_plain_pickle_is_one_line_without_torchs_warning(tmp_path, recwarn):
    import pickle

    for name, obj in {"empty.pth": {}, "dict.pth": {"a": 1, "b": [1.0]}}.items():
        (tmp_path / name).write_bytes(pickle.dumps(obj, protocol=4))
        with pytest.raises(UserError, match=rf"^cannot read checkpoint .*{name} \(a plain Python pickle, not a file "
                                            rf"torch.save wrote\); is it a PyTorch .pth file\?$"):
            read_checkpoint(str(tmp_path / name))
    torch.save({"w": torch.ones(2)}, tmp_path / "legacy4.pth", _use_new_zipfile_serialization=False, pickle_protocol=4)
    with pytest.raises(UserError, match=r"\(pickled with opcodes a weights-only load does not read: save it again"):
        read_checkpoint(str(tmp_path / "legacy4.pth"))
    torch.save({"w": torch.ones(2)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(str(tmp_path / "legacy.pth"))["w"], torch.ones(2))  # still read
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


def test_numpy_scalars_load_but_nothing_else_is_allow_listed(tmp_path):
    import numpy as np

    torch.save({"best_score": np.float64(0.5), "n": np.int64(3), "f": np.float32(0.25)}, tmp_path / "a.pth")
    ck = read_checkpoint(str(tmp_path / "a.pth"))
    assert ck == {"best_score": 0.5, "n": 3, "f": 0.25} and type(ck["n"]) is np.int64
    torch.save({"arr": np.zeros(3)}, tmp_path / "b.pth")  # numpy arrays are not in real checkpoints
    with pytest.raises(UserError, match="b.pth"):
        read_checkpoint(str(tmp_path / "b.pth"))


def test_require_keys_names_what_is_missing():
    from utils.checkpoint import require_keys

    ck = {"state_dict": {}, "optimizer": {}, "iteration": 5}
    assert require_keys(ck, ("state_dict", "optimizer"), "a.pth", "x") is ck
    with pytest.raises(UserError, match=r"a.pth is not a training checkpoint of the enhancer stage.*scheduler"):
        require_keys(ck, ("optimizer", "scheduler"), "a.pth", "a training checkpoint of the enhancer stage")
    with pytest.raises(UserError, match="a.pth"):
        require_keys([1, 2], ("optimizer",), "a.pth", "x")


@pytest.mark.parametrize("local_rank, printed", [(None, True), ("0", True), ("1", False), ("2", False)])
def test_flag_error_under_torchrun_is_printed_by_local_rank_0_only(monkeypatch, capsys, local_rank, printed):
    """torchrun_mem_world3_batch_gt_mem: an error found before the processes join (the same flags and files in
    every process) is printed once, by local rank 0; the other ranks exit with the same status silently."""
    from utils.errors import run_cli

    monkeypatch.setenv("WORLD_SIZE", "3")
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)

    def main():
        raise UserError("--mem_size 8: smaller than one batch")

    with pytest.raises(SystemExit) as e:
        run_cli(main)
    assert e.value.code == 2
    assert (capsys.readouterr().err == "error: --mem_size 8: smaller than one batch\n") == printed

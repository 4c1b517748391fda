"""utils.checkpoint.atomic_save on a full disk, through torch.save's real zip writer."""
from __future__ import annotations

import errno
import os

import pytest
import torch

from helpers import FullDisk
from utils.checkpoint import atomic_save, payload_bytes
from utils.errors import UserError


def test_a_full_disk_raises_the_no_space_error_naming_the_path_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "latest.pth")
    atomic_save({"w": torch.ones(10)}, path)
    before = open(path, "rb").read()
    disk = FullDisk({"latest.pth"}, room=5000)
    monkeypatch.setattr("utils.fs.open", disk, raising=False)
    with pytest.raises(OSError) as e:  # torch's writer raises "RuntimeError: ... unexpected pos" in its place
        atomic_save({"w": torch.zeros(100_000)}, path)
    assert e.value.errno == errno.ENOSPC and e.value.filename == path
    assert disk.failed == [(path, before)]  # the write did reach the disk, and failed there
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["latest.pth"]
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(10))


def test_other_writer_errors_pass_through(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.save", lambda obj, f: (_ for _ in ()).throw(RuntimeError("not a disk problem")))
    with pytest.raises(RuntimeError, match="not a disk problem"):
        atomic_save({}, str(tmp_path / "a.pth"))
    assert os.listdir(tmp_path) == []


def test_payload_bytes_counts_the_tensors_of_nested_containers():
    state = {"model": {"w": torch.zeros(3, 4), "b": torch.zeros(4, dtype=torch.float64)},
             "rng": [torch.zeros(5, dtype=torch.uint8), (torch.zeros(2, dtype=torch.int64),)], "step": 7}
    assert payload_bytes(state) == 48 + 32 + 5 + 16


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_truncated_checkpoint_is_named_as_truncated(tmp_path, zip_format):
    """probe deeplab_ckpt_truncated: a cut file said '[Errno 22] Invalid argument' or miniz's internals."""
    from utils.checkpoint import read_checkpoint

    whole = tmp_path / "whole.pth"
    torch.save({"model_state": {"w": torch.randn(300, 300)}}, whole, _use_new_zipfile_serialization=zip_format)
    data = whole.read_bytes()
    for frac in (0.3, 0.99):
        cut = tmp_path / "cut.pth"
        cut.write_bytes(data[:int(len(data) * frac)])
        with pytest.raises(UserError, match=r"cannot read checkpoint .*cut.pth \(the file is truncated"):
            read_checkpoint(str(cut))

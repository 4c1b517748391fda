"""Two-process data-parallel training on the CPU (gloo), launched with torchrun as on a GPU cluster."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from helpers import make_cityscapes, make_contrast
from stages.common import epoch_batches, read_losses


def test_epoch_batches_shard_the_permutation():
    full = epoch_batches(10, 2, seed=5, epoch=3)
    r0 = epoch_batches(10, 2, seed=5, epoch=3, rank=0, world=2)
    r1 = epoch_batches(10, 2, seed=5, epoch=3, rank=1, world=2)
    flat = sorted(i for b in r0 + r1 for i in b)
    assert flat == list(range(10)) == sorted(i for b in full for i in b)
    assert epoch_batches(10, 2, 5, 3) == full and epoch_batches(10, 2, 5, 4) != full
    assert all(len(b) >= 2 for b in epoch_batches(7, 2, 1, 0, min_batch=2))


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    city = make_cityscapes(tmp_path / "cityscapes", n=8, labels=False)
    contrast = make_contrast(tmp_path / "Contrast")
    out = tmp_path / "snap"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py",
           "--stage", "scl", "--data_root", str(city), "--contrast_dir", str(contrast), "--crop_size", "32",
           "--num_workers", "0", "--device", "cpu", "--snapshots_folder", str(out), "--total_itrs", "3",
           "--snapshot_iter", "3", "--log_every", "1", "--w_seg", "0", "--w_segexp", "0", "--w_feat", "0",
           "--w_percep", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = read_losses(str(out / "losses.jsonl"))
    assert [x["step"] for x in rows] == [1, 2, 3]  # rank 0 alone logs: no duplicated records
    assert r.stderr.count("device cpu, world size 2") == 1
    state = torch.load(out / "Epoch3.pth", map_location="cpu", weights_only=True)
    assert all(not k.startswith("module.") for k in state)  # unwrapped before saving

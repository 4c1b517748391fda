"""Every stage under torchrun on the CPU (gloo), launched as on a GPU cluster: two processes, one writer."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from helpers import ROOT, make_cityscapes, make_contrast, make_lol_v1
from stages.batches import epoch_batches
from stages.runlog import read_losses


def test_epoch_batches_shard_the_permutation():
    full = epoch_batches(10, 2, seed=5, epoch=3)
    r0 = epoch_batches(10, 2, seed=5, epoch=3, rank=0, world=2)
    r1 = epoch_batches(10, 2, seed=5, epoch=3, rank=1, world=2)
    flat = sorted(i for b in r0 + r1 for i in b)
    assert flat == list(range(10)) == sorted(i for b in full for i in b)
    assert epoch_batches(10, 2, 5, 3) == full and epoch_batches(10, 2, 5, 4) != full
    assert all(len(b) >= 2 for b in epoch_batches(7, 2, 1, 0, min_batch=2))


def test_close_distributed_leaves_the_group_and_is_a_no_op_without_one(tmp_path):
    """train.py leaves the process group itself (barrier, destroy) instead of at the interpreter's exit."""
    import torch.distributed as dist

    from utils.device import close_distributed

    close_distributed()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    close_distributed()
    assert not dist.is_initialized()


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), "train.py",
           *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_torchrun_scl_with_bf16_one_writer_and_resume(tmp_path):
    city = make_cityscapes(tmp_path / "cityscapes", n=8, labels=False)
    contrast = make_contrast(tmp_path / "Contrast")
    out = tmp_path / "snap"
    argv = ["--stage", "scl", "--data_root", str(city), "--contrast_dir", str(contrast), "--crop_size", "32",
            "--num_workers", "0", "--device", "cpu", "--snapshots_folder", str(out), "--snapshot_iter", "3",
            "--log_every", "1", "--w_seg", "0", "--w_segexp", "0", "--w_feat", "0", "--w_percep", "0", "--amp", "bf16"]
    r = _torchrun(argv + ["--total_itrs", "3"])
    assert r.returncode == 0, r.stderr[-8000:]
    assert r.stderr.count("scl stage: device cpu, world size 2, amp bf16") == 1  # rank 0 alone logs
    assert [x["step"] for x in read_losses(str(out / "losses.jsonl"))] == [1, 2, 3]
    assert sorted(p.name for p in out.glob("*.pth")) == ["Epoch3.pth", "latest.pth"]
    state = torch.load(out / "Epoch3.pth", map_location="cpu", weights_only=True)
    assert all(not k.startswith("module.") for k in state)  # unwrapped before saving
    r = _torchrun(argv + ["--total_itrs", "5", "--resume"])
    assert r.returncode == 0, r.stderr[-8000:]
    assert "resumed" in r.stderr and "at iteration 3" in r.stderr
    assert [x["step"] for x in read_losses(str(out / "losses.jsonl"))] == [1, 2, 3, 4, 5]
    assert torch.load(out / "latest.pth", weights_only=True)["iteration"] == 5


def _memory_args(tmp_path, env: str, batch: int, nepoch: int) -> list[str]:
    return ["--stage", "memory", "--pretrain_weights", str(tmp_path / "dce.pth"), "--train_dir", str(tmp_path / "tr"),
            "--val_dir", str(tmp_path / "va"), "--train_ps", "32", "--batch_size", str(batch), "--num_workers", "0",
            "--nepoch", str(nepoch), "--mem_size", "12", "--device", "cpu", "--save_dir", str(tmp_path / "log"),
            "--env", env, "--random_seed", "5"]


@pytest.mark.slow
def test_torchrun_memory_identical_on_every_rank_one_writer_and_resume(tmp_path, fake_torch_home):
    from lowlight_model import enhance_net_nopool

    import train

    make_lol_v1(tmp_path / "tr", n=8, h=40, w=48)
    make_lol_v1(tmp_path / "va", n=2, h=40, w=48, seed=50)
    torch.manual_seed(0)
    torch.save(enhance_net_nopool().state_dict(), tmp_path / "dce.pth")
    r = _torchrun(_memory_args(tmp_path, "ddp", batch=2, nepoch=2))
    assert r.returncode == 0, r.stderr[-8000:]
    log = (tmp_path / "log" / "ddp" / "train.log").read_text()
    assert "epoch 1: memory identical on all 2 processes" in log and "epoch 2: memory identical" in log
    models = tmp_path / "log" / "ddp" / "models"
    assert sorted(p.name for p in models.iterdir()) == ["memory_best.pth", "memory_latest.pth"]
    assert [v["step"] for v in read_losses(str(tmp_path / "log" / "ddp" / "losses.jsonl"), "val")] == [1, 2]
    # one process fed the same global batches (2 x 2 per step) ends with the same memory
    train.main(_memory_args(tmp_path, "one", batch=4, nepoch=2))
    a = torch.load(models / "memory_latest.pth", weights_only=True)
    b = torch.load(tmp_path / "log" / "one" / "models" / "memory_latest.pth", weights_only=True)
    assert torch.equal(a["mem_index"], b["mem_index"]) and torch.equal(a["mem_vale"], b["mem_vale"])
    assert torch.allclose(a["mem_key"], b["mem_key"], atol=1e-5) and torch.equal(a["mem_age"], b["mem_age"])
    assert (a["mem_index"] >= 0).sum() >= 4
    r = _torchrun(_memory_args(tmp_path, "ddp", batch=2, nepoch=3) + ["--resume"])
    assert r.returncode == 0, r.stderr[-8000:]
    assert "resumed" in r.stderr and "epoch 2" in r.stderr
    assert [v["step"] for v in read_losses(str(tmp_path / "log" / "ddp" / "losses.jsonl"), "val")] == [1, 2, 3]
    assert torch.load(models / "memory_latest.pth", weights_only=True)["epoch"] == 3

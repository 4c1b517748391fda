"""stages/scl.py (the SCL-LLE stage) through train.py on a tiny Cityscapes tree + Contrast set with fake
VGG/DeepLab weights."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import train
from helpers import ROOT, make_cityscapes, make_contrast, run_cli_in_process
from lowlight_model import enhance_net_nopool
from stages.runlog import read_losses
from utils.errors import UserError


def _args(tmp, city, contrast, ckpt, out, *extra):
    return ["--stage", "scl", "--data_root", str(city), "--contrast_dir", str(contrast), "--ckpt", str(ckpt),
            "--crop_size", "32", "--batch_size", "2", "--num_workers", "0", "--device", "cpu",
            "--snapshots_folder", str(out), "--log_every", "1", "--random_seed", "3", *extra]


def test_train_run_writes_snapshots_logs_and_plot(scl_data):
    tmp, city, contrast, ckpt = scl_data
    out = tmp / "snap"
    train.main(_args(tmp, city, contrast, ckpt, out, "--total_itrs", "4", "--snapshot_iter", "2"))
    rows = read_losses(str(out / "losses.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in rows)
    assert set(rows[0]) >= {"tv", "color", "con", "feat", "percep", "segexp", "seg", "total"}
    for r in rows:  # total is the sum of the logged terms
        assert abs(r["total"] - sum(v for k, v in r.items() if k not in ("step", "prefix", "total"))) < 1e-4
    assert (out / "loss_curves.png").stat().st_size > 1000
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out / "tb"))
    # the raw snapshot loads as the reference test script would
    m = enhance_net_nopool()
    m.load_state_dict(torch.load(out / "Epoch4.pth", map_location="cpu"))
    assert (out / "Epoch2.pth").exists()
    args = json.load(open(out / "args.json"))
    assert args["total_itrs"] == 4


def test_terms_can_be_turned_off_without_labels_or_vgg(tmp_path, caplog):
    city = make_cityscapes(tmp_path / "cityscapes", labels=False)
    contrast = make_contrast(tmp_path / "Contrast")
    out = tmp_path / "snap"
    argv = _args(tmp_path, city, contrast, tmp_path / "none.pth", out, "--total_itrs", "2", "--w_seg", "0",
                 "--w_segexp", "0", "--w_feat", "0", "--w_percep", "0")
    train.main(argv)
    rows = read_losses(str(out / "losses.jsonl"))
    assert set(rows[0]) == {"step", "prefix", "total", "tv", "color", "con"}
    log = (out / "train.log").read_text()
    assert "loss terms off: feat, percep, segexp, seg" in log


def test_missing_vgg_weights_is_one_line_error(tmp_path):
    city = make_cityscapes(tmp_path / "cityscapes", labels=False)
    contrast = make_contrast(tmp_path / "Contrast")
    argv = _args(tmp_path, city, contrast, tmp_path / "none.pth", tmp_path / "snap", "--total_itrs", "1",
                 "--w_seg", "0", "--w_segexp", "0")
    with pytest.raises(UserError, match=r"vgg16-397923af\.pth.*--w_feat 0 --w_percep 0"):
        train.main(argv)
    # and as the command line reports it: one line on stderr, exit code 2
    code, err, _ = run_cli_in_process(train.main, argv)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "vgg16-397923af.pth" in err[0]


def test_missing_labels_is_an_error(tmp_path, fake_torch_home):
    city = make_cityscapes(tmp_path / "cityscapes", labels=False)
    contrast = make_contrast(tmp_path / "Contrast")
    argv = _args(tmp_path, city, contrast, tmp_path / "none.pth", tmp_path / "snap", "--total_itrs", "1")
    with pytest.raises(UserError, match="gtFine"):
        train.main(argv)


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_uninterrupted_losses(scl_data):
    tmp, city, contrast, ckpt = scl_data
    # uninterrupted reference run
    full = tmp / "full"
    train.main(_args(tmp, city, contrast, ckpt, full, "--total_itrs", "14", "--snapshot_iter", "3"))
    ref = {r["step"]: r["total"] for r in read_losses(str(full / "losses.jsonl"))}
    # a run killed with SIGKILL after its first snapshot
    killed = tmp / "killed"
    argv = _args(tmp, city, contrast, ckpt, killed, "--total_itrs", "1000", "--snapshot_iter", "3")
    proc = subprocess.Popen([sys.executable, "train.py", *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ})
    deadline = time.time() + 120
    while not (killed / "latest.pth").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    k = torch.load(killed / "latest.pth", map_location="cpu", weights_only=True)["iteration"]
    assert k % 3 == 0 and 3 <= k <= 9
    train.main(_args(tmp, city, contrast, ckpt, killed, "--total_itrs", str(k + 3), "--snapshot_iter", "3",
                     "--resume", "auto"))
    got = {r["step"]: r["total"] for r in read_losses(str(killed / "losses.jsonl"))}
    assert sorted(got) == list(range(1, k + 4))  # records past the snapshot were rewritten, none doubled
    for step in range(k + 1, k + 4):
        assert got[step] == pytest.approx(ref[step], rel=1e-6, abs=1e-7), step


def test_scl_stage_trains_emnet_without_tv(tmp_path):
    city = make_cityscapes(tmp_path / "cityscapes", labels=False)
    contrast = make_contrast(tmp_path / "Contrast")
    base = _args(tmp_path, city, contrast, tmp_path / "none.pth", tmp_path / "snap", "--total_itrs", "2",
                 "--w_seg", "0", "--w_segexp", "0", "--w_feat", "0", "--w_percep", "0", "--arch", "emnet",
                 "--embed_dim", "8")
    with pytest.raises(UserError, match="--w_tv 0"):
        train.main(base)
    with pytest.raises(UserError, match="multiple of 8"):
        train.main(base + ["--w_tv", "0", "--crop_size", "36"])
    train.main(base + ["--w_tv", "0"])
    rows = read_losses(str(tmp_path / "snap" / "losses.jsonl"))
    assert set(rows[0]) == {"step", "prefix", "total", "color", "con"}


def test_too_few_images_for_a_batch_is_one_line_error(tmp_path):
    city = make_cityscapes(tmp_path / "cityscapes", n=1, labels=False)
    contrast = make_contrast(tmp_path / "Contrast")
    with pytest.raises(UserError, match="--batch_size"):
        train.main(_args(tmp_path, city, contrast, tmp_path / "none.pth", tmp_path / "snap", "--total_itrs", "1",
                         "--w_seg", "0", "--w_segexp", "0", "--w_feat", "0", "--w_percep", "0"))


def test_cosine_schedule_sets_the_learning_rate_of_each_iteration(tmp_path):
    import math

    city = make_cityscapes(tmp_path / "cityscapes", labels=False)
    contrast = make_contrast(tmp_path / "Contrast")
    base = _args(tmp_path, city, contrast, tmp_path / "none.pth", tmp_path / "snap", "--total_itrs", "4",
                 "--w_seg", "0", "--w_segexp", "0", "--w_feat", "0", "--w_percep", "0", "--lowlight_lr", "1e-3")
    with pytest.raises(UserError, match="--lr_min 0.01: must be <= 0.001"):
        train.main(base + ["--lr_schedule", "cosine", "--lr_min", "1e-2"])
    train.main(base + ["--lr_schedule", "cosine", "--lr_min", "1e-5"])
    state = torch.load(tmp_path / "snap" / "latest.pth", map_location="cpu", weights_only=False)
    lr_last = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 3 / 4))  # the 4th step, iteration 3
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [pytest.approx(lr_last, rel=1e-12)]
    train.main(base + ["--snapshots_folder", str(tmp_path / "const")])  # the reference: constant
    state = torch.load(tmp_path / "const" / "latest.pth", map_location="cpu", weights_only=False)
    assert state["optimizer"]["param_groups"][0]["lr"] == 1e-3

"""EMNet's two stages on a tiny LOL tree: supervised enhancer, then the memory; evaluation with memory."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

import lowlight_test
import train
from helpers import fit_fixed_batch, make_lol_v1
from lowlight_model import build_enhancer, enhance, load_enhancer
from memory import ExternalMemory
from stages.common import read_losses
from stages.enhancer import SupervisedLoss, lr_factor
from utils.errors import UserError


def _lol(tmp_path):
    return make_lol_v1(tmp_path / "our485", n=6, h=40, w=48), make_lol_v1(tmp_path / "eval15", n=2, h=40, w=48, seed=50)


def _enh_args(tmp_path, arch, *extra):
    train_dir, val_dir = tmp_path / "our485", tmp_path / "eval15"
    return ["--stage", "enhancer", "--arch", arch, "--embed_dim", "8", "--train_dir", str(train_dir),
            "--val_dir", str(val_dir), "--train_ps", "32", "--batch_size", "2", "--num_workers", "0",
            "--device", "cpu", "--save_dir", str(tmp_path / "log"), "--env", f"t_{arch}", "--warmup_epochs", "1",
            *extra]


@pytest.mark.parametrize("arch", ["dce", "emnet"])
def test_supervised_loss_decreases_on_a_fixed_batch(fake_torch_home, arch):
    args = type("A", (), {"ssim_lambda": 1.0, "lpips_lambda": 1.0, "l1_lambda": 0.0, "l2_lambda": 0.0})
    crit = SupervisedLoss(args, torch.device("cpu"))
    torch.manual_seed(0)
    gt = torch.rand(2, 3, 32, 32) * 0.6 + 0.2
    low = gt * 0.2
    totals = fit_fixed_batch(build_enhancer(arch, 8), lambda m: crit(enhance(m, low), gt), {"ssim", "lpips"}, 12)
    assert totals[-1] < totals[0] * 0.9, totals


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(e, 10, 3, 0.01) for e in range(10)]
    assert f[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert f[3] == pytest.approx(1.0) and f[-1] > 0.01 and all(a >= b for a, b in zip(f[3:], f[4:]))
    assert lr_factor(10, 10, 3, 0.01) == pytest.approx(0.01)


def test_enhancer_then_memory_then_paired_evaluation(tmp_path, fake_torch_home):
    train_dir, val_dir = _lol(tmp_path)
    train.main(_enh_args(tmp_path, "dce", "--nepoch", "2", "--val_time", "2"))
    models = tmp_path / "log" / "t_dce" / "models"
    best = torch.load(models / "model_best.pth", map_location="cpu", weights_only=True)
    assert {"epoch", "state_dict"} <= set(best)
    vals = read_losses(str(tmp_path / "log" / "t_dce" / "losses.jsonl"), prefix="val")
    assert len(vals) == 4  # twice per epoch, 2 epochs
    assert best["best_psnr"] == pytest.approx(max(v["psnr"] for v in vals))
    load_enhancer("dce", str(models / "model_best.pth"), torch.device("cpu"))

    train.main(["--stage", "memory", "--arch", "dce", "--pretrain_weights", str(models / "model_best.pth"),
                "--train_dir", str(train_dir), "--val_dir", str(val_dir), "--train_ps", "32", "--batch_size", "4",
                "--num_workers", "0", "--nepoch", "3", "--mem_size", "16", "--device", "cpu",
                "--save_dir", str(tmp_path / "log"), "--env", "t_mem"])
    mem_path = tmp_path / "log" / "t_mem" / "models" / "memory_best.pth"
    ck = torch.load(mem_path, map_location="cpu", weights_only=True)
    assert set(ck) == {"epoch", "mem_key", "mem_vale", "mem_age", "mem_index"}
    assert ck["mem_key"].shape == (16, 512) and ck["mem_vale"].shape == (16, 3)
    assert (ck["mem_index"] >= 0).sum() >= 1  # slots were written from the training set
    mem_vals = read_losses(str(tmp_path / "log" / "t_mem" / "losses.jsonl"), prefix="val")
    assert [v["step"] for v in mem_vals] == [1, 2, 3]
    assert ck["epoch"] == max(mem_vals, key=lambda v: v["psnr"])["step"]

    out = tmp_path / "res"
    lowlight_test.main(["--input_dir", str(val_dir), "--result_dir", str(out), "--arch", "dce",
                        "--weights", str(models / "model_best.pth"), "--mem_weights", str(mem_path),
                        "--mem_size", "16", "--device", "cpu", "--save_images"])
    rows = {r["image"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert {"ori_psnr", "mem_psnr", "gt_mean_oracle_psnr"} <= set(rows["1.png"])
    assert (out / "mem" / "1.png").exists() and (out / "ori" / "2.png").exists()
    # the memory run's best validation PSNR is what evaluation measures on the same images
    assert float(rows["mean"]["mem_psnr"]) == pytest.approx(max(v["psnr"] for v in mem_vals), abs=1e-4)


def test_emnet_enhancer_trains_and_resumes(tmp_path, fake_torch_home):
    _lol(tmp_path)
    train.main(_enh_args(tmp_path, "emnet", "--nepoch", "1", "--val_time", "1", "--lpips_lambda", "0"))
    models = tmp_path / "log" / "t_emnet" / "models"
    assert torch.load(models / "model_latest.pth", weights_only=True)["epoch"] == 1
    train.main(_enh_args(tmp_path, "emnet", "--nepoch", "2", "--val_time", "1", "--lpips_lambda", "0", "--resume"))
    latest = torch.load(models / "model_latest.pth", weights_only=True)
    assert latest["epoch"] == 2
    assert latest["scheduler"]["last_epoch"] == 2
    m = load_enhancer("emnet", str(models / "model_latest.pth"), torch.device("cpu"), embed_dim=8)
    assert m.patch_embed.proj.weight.shape[0] == 8
    resumed = read_losses(str(tmp_path / "log" / "t_emnet" / "losses.jsonl"))
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]  # 3 batches per epoch, none logged twice
    # the resumed second epoch repeats an uninterrupted two-epoch run
    train.main(_enh_args(tmp_path, "emnet", "--nepoch", "2", "--val_time", "1", "--lpips_lambda", "0",
                         "--env", "t_straight"))
    straight = read_losses(str(tmp_path / "log" / "t_straight" / "losses.jsonl"))
    for a, b in zip(resumed, straight):
        assert a["total"] == pytest.approx(b["total"], rel=1e-5), a["step"]
    # a new run in the same folder is refused; with --overwrite it starts a new log
    with pytest.raises(UserError, match="--resume.*--overwrite"):
        train.main(_enh_args(tmp_path, "emnet", "--nepoch", "1", "--val_time", "1", "--lpips_lambda", "0"))
    train.main(_enh_args(tmp_path, "emnet", "--nepoch", "1", "--val_time", "1", "--lpips_lambda", "0", "--overwrite"))
    assert [r["step"] for r in read_losses(str(tmp_path / "log" / "t_emnet" / "losses.jsonl"))] == [1, 2, 3]


def test_memory_checkpoint_with_wrong_pooling_is_an_error(tmp_path):
    mem = ExternalMemory(mem_size=4, value_dim=3)
    torch.save(mem.to_checkpoint(1), tmp_path / "m.pth")
    with pytest.raises(UserError, match="pooling"):
        ExternalMemory.from_checkpoint(str(tmp_path / "m.pth"), pooling=2)


def test_mismatched_pair_is_an_error(tmp_path, fake_torch_home):
    train_dir, _ = _lol(tmp_path)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(train_dir / "high" / "1.png")
    with pytest.raises(UserError, match="1.png"):
        train.main(_enh_args(tmp_path, "dce", "--nepoch", "1"))


@pytest.mark.parametrize("pooling", [["--pooling_size", "2"], ["--pooling_size", "2", "--pooling_mean"]])
def test_memory_stage_with_pooling(tmp_path, fake_torch_home, pooling):
    from lowlight_model import enhance_net_nopool

    train_dir, val_dir = _lol(tmp_path)
    torch.save(enhance_net_nopool().state_dict(), tmp_path / "dce.pth")
    train.main(["--stage", "memory", "--pretrain_weights", str(tmp_path / "dce.pth"), "--train_dir", str(train_dir),
                "--val_dir", str(val_dir), "--train_ps", "32", "--batch_size", "4", "--num_workers", "0",
                "--nepoch", "1", "--mem_size", "8", "--device", "cpu", "--save_dir", str(tmp_path / "log"),
                "--env", "m", *pooling])
    mem_path = tmp_path / "log" / "m" / "models" / "memory_best.pth"
    v = torch.load(mem_path, weights_only=True)["mem_vale"]
    assert v.shape == (8, 4 if "--pooling_mean" in pooling else 12)
    out = tmp_path / "res"
    lowlight_test.main(["--input_dir", str(val_dir), "--result_dir", str(out), "--weights", str(tmp_path / "dce.pth"),
                        "--mem_weights", str(mem_path), "--device", "cpu", *pooling])
    assert "mem_psnr" in next(csv.DictReader(open(out / "results.csv")))
    with pytest.raises(UserError, match="pooling"):  # a p=2 memory read with p=1
        lowlight_test.main(["--input_dir", str(val_dir), "--result_dir", str(out), "--weights",
                            str(tmp_path / "dce.pth"), "--mem_weights", str(mem_path), "--device", "cpu"])

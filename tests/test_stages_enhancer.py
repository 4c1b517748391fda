"""stages/enhancer.py through train.py on a tiny LOL tree (DCE-Net and EMNet), then the memory stage and
paired evaluation on its checkpoint."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

import lowlight_test
import train
from datasets.lol import PairedDataset
from helpers import make_lol_train_val
from lowlight_model import build_enhancer, enhance, load_enhancer
from metrics import psnr_float
from stages.runlog import read_losses
from utils.errors import UserError


def _enh_args(tmp_path, arch, *extra):
    train_dir, val_dir = tmp_path / "our485", tmp_path / "eval15"
    return ["--stage", "enhancer", "--arch", arch, "--embed_dim", "8", "--train_dir", str(train_dir),
            "--val_dir", str(val_dir), "--train_ps", "32", "--batch_size", "2", "--num_workers", "0",
            "--device", "cpu", "--save_dir", str(tmp_path / "log"), "--env", f"t_{arch}", "--warmup_epochs", "0",
            *extra]


def test_enhancer_then_memory_then_paired_evaluation(tmp_path, fake_torch_home):
    train_dir, val_dir = make_lol_train_val(tmp_path)
    train.main(_enh_args(tmp_path, "dce", "--nepoch", "2", "--val_time", "2"))
    models = tmp_path / "log" / "t_dce" / "models"
    best = torch.load(models / "model_best.pth", map_location="cpu", weights_only=True)
    assert {"epoch", "state_dict"} <= set(best)
    assert all(k.startswith("module.") for k in best["state_dict"])  # the reference's test script expects them
    vals = read_losses(str(tmp_path / "log" / "t_dce" / "losses.jsonl"), prefix="val")
    assert len(vals) == 4  # twice per epoch, 2 epochs
    assert best["best_psnr"] == pytest.approx(max(v["psnr"] for v in vals))
    model = load_enhancer("dce", str(models / "model_best.pth"), torch.device("cpu"))
    # the best checkpoint is chosen by float PSNR (data range 1), as the reference's validation
    val = PairedDataset(str(val_dir))
    with torch.no_grad():
        floats = [psnr_float(enhance(model, val.load(i)[0][None]).clamp(0, 1), val.load(i)[1]) for i in range(2)]
    assert best["best_psnr"] == pytest.approx(sum(floats) / 2, abs=1e-6)

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
    # the incomplete last batch is dropped as the reference's loader: 6 pairs, batch 4 -> one update of 4
    assert all(v["matched"] + v["written"] == 4 for v in mem_vals)
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


@pytest.mark.slow
def test_emnet_enhancer_trains_and_resumes(tmp_path, fake_torch_home):
    make_lol_train_val(tmp_path)
    train.main(_enh_args(tmp_path, "emnet", "--nepoch", "1", "--val_time", "1", "--lpips_lambda", "0"))
    models = tmp_path / "log" / "t_emnet" / "models"
    assert torch.load(models / "model_latest.pth", weights_only=True)["epoch"] == 1
    train.main(_enh_args(tmp_path, "emnet", "--nepoch", "2", "--val_time", "1", "--lpips_lambda", "0", "--resume"))
    latest = torch.load(models / "model_latest.pth", weights_only=True)
    assert latest["epoch"] == 2
    assert latest["scheduler"]["last_epoch"] == 2
    m = load_enhancer("emnet", str(models / "model_latest.pth"), torch.device("cpu"), embed_dim=8)
    assert m.net.patch_embed.proj.weight.shape[0] == 8
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


def test_resume_from_another_stages_checkpoint_is_one_line_error(tmp_path):
    """issue 8: an SCL-stage latest.pth given to the enhancer stage's --resume (was KeyError: 'scheduler')."""
    from stages.state import training_state
    from utils.checkpoint import atomic_save

    make_lol_train_val(tmp_path)
    model = build_enhancer("dce")
    opt = torch.optim.Adam(model.parameters())
    atomic_save(training_state("scl", 10, 0, model, opt, generators={"contrast": torch.Generator()}),
                str(tmp_path / "scl" / "latest.pth"))
    with pytest.raises(UserError) as e:
        train.main(_enh_args(tmp_path, "dce", "--nepoch", "1", "--lpips_lambda", "0", "--resume",
                             str(tmp_path / "scl" / "latest.pth")))
    msg = str(e.value)
    assert "latest.pth was written by the scl stage" in msg and "enhancer stage resumes only its own" in msg
    assert "\n" not in msg


def test_mismatched_pair_is_an_error(tmp_path, fake_torch_home):
    train_dir, _ = make_lol_train_val(tmp_path)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(train_dir / "high" / "1.png")
    with pytest.raises(UserError, match="1.png"):
        train.main(_enh_args(tmp_path, "dce", "--nepoch", "1"))

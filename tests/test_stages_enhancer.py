"""EMNet's two stages on a tiny LOL tree: supervised enhancer, then the memory; evaluation with memory."""
from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

import lowlight_test
import train
from helpers import fit_fixed_batch, make_lol_v1
from datasets.lol import PairedDataset
from lowlight_model import build_enhancer, enhance, load_enhancer
from metrics import psnr_float
from network.memory import ExternalMemory
from stages.common import read_losses
from losses import SupervisedLoss
from stages.common import lr_factor
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
    crit = SupervisedLoss(ssim=1.0, lpips=1.0)
    torch.manual_seed(0)
    gt = torch.rand(2, 3, 32, 32) * 0.6 + 0.2
    low = gt * 0.2
    totals = fit_fixed_batch(build_enhancer(arch, 8), lambda m: crit(enhance(m, low), gt), {"ssim", "lpips"}, 12)
    assert totals[-1] < totals[0] * 0.9, totals


def test_supervised_loss_clamps_the_output_and_feeds_lpips_unscaled_images(fake_torch_home):
    """As the reference (issue 6.2): clamp to [0,1] before the loss (no gradient outside); LPIPS on the
    [0,1] images (lpips normalize=False) unless --lpips_normalize."""
    y = torch.full((1, 3, 4, 4), 0.5)
    y[..., 0, 0], y[..., 0, 1] = 1.5, -0.3
    y.requires_grad_(True)
    gt = torch.full((1, 3, 4, 4), 0.6)
    l1 = SupervisedLoss(ssim=0, lpips=0, l1=1.0)(y, gt)["l1"]
    assert l1.item() == pytest.approx((14 * 0.1 + 0.4 + 0.6) / 16)  # |1 − 0.6|, |0 − 0.6| after the clamp
    l1.backward()
    expected = torch.full((1, 3, 4, 4), -1 / 48)
    expected[..., 0, 0] = expected[..., 0, 1] = 0.0
    assert torch.allclose(y.grad, expected)

    torch.manual_seed(0)
    y, gt = torch.rand(2, 3, 32, 32) * 1.4 - 0.2, torch.rand(2, 3, 32, 32)
    for normalize in (False, True):
        crit = SupervisedLoss(ssim=0, lpips=1.0, lpips_normalize=normalize)
        with torch.no_grad():
            got = crit(y, gt)["lpips"]
            scale = (lambda t: 2 * t - 1) if normalize else (lambda t: t)
            assert got.item() == pytest.approx(crit.lpips(scale(y.clamp(0, 1)), scale(gt)).mean().item(), rel=1e-5)


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


def test_resume_from_another_stages_checkpoint_is_one_line_error(tmp_path):
    """issue 8: an SCL-stage latest.pth given to the enhancer stage's --resume (was KeyError: 'scheduler')."""
    from stages.common import training_state
    from utils.checkpoint import atomic_save

    _lol(tmp_path)
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
    with_flags = list(csv.DictReader(open(out / "results.csv")))
    assert "mem_psnr" in with_flags[0]
    out2 = tmp_path / "res2"  # the pooling is read from the checkpoint: same figures without the flags
    lowlight_test.main(["--input_dir", str(val_dir), "--result_dir", str(out2), "--weights", str(tmp_path / "dce.pth"),
                        "--mem_weights", str(mem_path), "--device", "cpu"])
    assert list(csv.DictReader(open(out2 / "results.csv"))) == with_flags
    with pytest.raises(UserError, match="pooling"):  # a p=2 memory read with p=1 is refused
        lowlight_test.main(["--input_dir", str(val_dir), "--result_dir", str(out), "--weights",
                            str(tmp_path / "dce.pth"), "--mem_weights", str(mem_path), "--device", "cpu",
                            "--pooling_size", "1"])


def test_memory_batch_larger_than_the_training_set_is_one_line_error(tmp_path):
    train_dir, val_dir = _lol(tmp_path)
    with pytest.raises(UserError, match="--batch_size 128 exceeds the 6 training pairs"):
        train.main(["--stage", "memory", "--train_dir", str(train_dir), "--val_dir", str(val_dir),
                    "--device", "cpu", "--save_dir", str(tmp_path / "log"), "--num_workers", "0"])


class _Gain(torch.nn.Module):
    """A stand-in enhancer whose output exceeds 1 on bright pixels: r = 6·x."""

    arch = "dce"

    def forward(self, x):
        return 6.0 * x


def test_evaluation_quantises_and_names_outputs_as_the_reference_test_script(tmp_path, fake_torch_home):
    """issue 6.4: ori truncated, mem rounded (metrics on those arrays), memory pooling the unclamped output,
    outputs named after the ground-truth files (LOL-v2 real), pooling read from the memory file."""
    from helpers import write_rgb
    from evaluation import evaluate_paired
    from skimage.metrics import peak_signal_noise_ratio

    root = tmp_path / "Test"
    for i in (1, 2):
        write_rgb(root / "Low" / f"low0000{i}.png", 24, 32, seed=i, scale=0.3)
        write_rgb(root / "Normal" / f"normal0000{i}.png", 24, 32, seed=10 + i)
    mem = ExternalMemory(mem_size=4, key_dim=512, value_dim=3)
    mem.value.fill_(0.5)
    torch.save(mem.to_checkpoint(1), tmp_path / "mem.pth")
    loaded = ExternalMemory.from_checkpoint(str(tmp_path / "mem.pth"))  # pooling read from the file
    evaluate_paired(_Gain(), str(root), torch.device("cpu"), mem=loaded, output_dir=str(tmp_path / "res"),
                    save_images=True, use_lpips=False)
    rows = {r["image"]: r for r in csv.DictReader(open(tmp_path / "res" / "results.csv"))}
    assert sorted(os.listdir(tmp_path / "res" / "ori")) == ["normal00001.png", "normal00002.png"]
    for i in (1, 2):
        low = torch.from_numpy(np.asarray(Image.open(root / "Low" / f"low0000{i}.png"), np.float32) / 255)
        gt8 = np.asarray(Image.open(root / "Normal" / f"normal0000{i}.png"))
        r = (6.0 * low).permute(2, 0, 1)[None]
        assert r.max() > 1.2
        ori8 = (torch.clamp(r, 0, 1).numpy().squeeze().transpose((1, 2, 0)) * 255.0).astype(np.uint8)
        m_out = r.mean(dim=(2, 3), keepdim=True)  # unclamped
        w_out = torch.exp(m_out) / (torch.exp(m_out) + math.exp(0.5))
        y = torch.clamp(torch.clamp(r, 0, 1) * (w_out + (1 - w_out) * 0.5 / m_out), 0, 1)
        mem8 = np.round(y.numpy().squeeze().transpose((1, 2, 0)) * 255.0).astype(np.uint8)
        name = f"normal0000{i}.png"
        assert np.array_equal(np.asarray(Image.open(tmp_path / "res" / "ori" / name)), ori8)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "res" / "mem" / name)), mem8)
        assert float(rows[name]["ori_psnr"]) == pytest.approx(peak_signal_noise_ratio(gt8, ori8), abs=1e-5)
        assert float(rows[name]["mem_psnr"]) == pytest.approx(peak_signal_noise_ratio(gt8, mem8), abs=1e-5)

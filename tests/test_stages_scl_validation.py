"""The SCL stage's validation (--val_dir: paired PSNR/SSIM or a folder's brightness / clipped / NIQE), its
TensorBoard images, the loss lines of train.log with the learning rate, and console lines above the bar."""
from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import train
from helpers import make_cityscapes, make_contrast, make_lol_v1, write_rgb
from lowlight_model import enhance_net_nopool
from metrics import niqe
from stages.runlog import ConsoleHandler, read_losses
from utils.errors import UserError
from utils.image_io import read_image_tensor

NO_VGG = ["--w_seg", "0", "--w_segexp", "0", "--w_feat", "0", "--w_percep", "0"]


def _argv(tmp, out, *extra):
    city = make_cityscapes(tmp / "cityscapes", labels=False)
    contrast = make_contrast(tmp / "Contrast")
    return ["--stage", "scl", "--data_root", str(city), "--contrast_dir", str(contrast), "--crop_size", "32",
            "--batch_size", "2", "--num_workers", "0", "--device", "cpu", "--snapshots_folder", str(out),
            "--log_every", "1", "--random_seed", "3", "--total_itrs", "4", "--snapshot_iter", "2", *NO_VGG, *extra]


def _val_records(out):
    return read_losses(str(out / "losses.jsonl"), prefix="val")


def _model(path):
    m = enhance_net_nopool()
    m.load_state_dict(torch.load(path, map_location="cpu"))
    return m.eval()


def _tb_image_tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0})
    acc.Reload()
    return acc.Tags()["images"], acc


def test_paired_validation_scores_the_snapshot_as_computed_by_hand(tmp_path):
    pairs = make_lol_v1(tmp_path / "val", n=3, h=32, w=40)
    out = tmp_path / "snap"
    train.main(_argv(tmp_path, out, "--val_dir", str(pairs), "--val_images", "2"))
    rows = _val_records(out)
    assert [r["step"] for r in rows] == [2, 4]  # every --snapshot_iter (the default --val_every) and the last
    model = _model(out / "Epoch4.pth")
    psnrs, ssims = [], []
    for i in range(1, 4):
        low = read_image_tensor(str(pairs / "low" / f"{i}.png"))
        gt = np.asarray(read_image_tensor(str(pairs / "high" / f"{i}.png")).permute(1, 2, 0).numpy() * 255 + 0.5,
                        np.uint8)
        with torch.no_grad():
            y = model(low[None])[1][0].clamp(0, 1)
        y8 = np.round(y.permute(1, 2, 0).numpy().astype(np.float32) * 255).astype(np.uint8)  # half to even
        psnrs.append(peak_signal_noise_ratio(gt, y8, data_range=255))
        ssims.append(structural_similarity(gt, y8, channel_axis=2, data_range=255))
    assert rows[-1]["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-4)
    assert rows[-1]["ssim"] == pytest.approx(np.mean(ssims), abs=1e-4)
    tags, _ = _tb_image_tags(out)
    assert sorted(tags) == ["val/1.png", "val/2.png"]  # --val_images 2
    log = (out / "train.log").read_text()
    assert "validation every 2 iterations on 3 pairs: PSNR/SSIM" in log
    assert re.search(r"step 4: val psnr [\d.]+, ssim [\d.]+", log)


def test_folder_validation_reports_brightness_clipped_and_niqe(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_rgb(photos / "big.png", 100, 200, seed=5, scale=0.2)   # two 96x96 NIQE blocks
    write_rgb(photos / "small.png", 40, 48, seed=6, scale=0.2)   # too small for NIQE
    out = tmp_path / "snap"
    train.main(_argv(tmp_path, out, "--val_dir", str(photos), "--val_every", "4"))
    rows = _val_records(out)
    assert [r["step"] for r in rows] == [4]
    model = _model(out / "Epoch4.pth")
    y8s = []
    for name in ("big.png", "small.png"):
        with torch.no_grad():
            y = model(read_image_tensor(str(photos / name))[None])[1][0].clamp(0, 1)
        y8s.append((y.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    assert rows[0]["brightness"] == pytest.approx(np.mean([y.mean() / 255 for y in y8s]), abs=1e-4)
    clipped = [100 * (y >= 254).any(axis=2).mean() for y in y8s]
    assert rows[0]["clipped_pct"] == pytest.approx(np.mean(clipped), abs=1e-4)
    assert rows[0]["niqe"] == pytest.approx(niqe(y8s[0]), abs=1e-3)  # the small photo is left out, said once
    assert capsys.readouterr().err.count("small.png is 48x40, too small for NIQE") == 1
    tags, acc = _tb_image_tags(out)
    assert sorted(tags) == ["val/big.png", "val/small.png"]
    assert acc.Images("val/big.png")[0].width == 200


def test_val_every_without_val_dir_is_refused_before_the_folder_exists(tmp_path):
    out = tmp_path / "snap"
    with pytest.raises(UserError, match="--val_every applies to a validation: add --val_dir DIR"):
        train.main(_argv(tmp_path, out, "--val_every", "2"))
    assert not out.exists()


def test_corrupt_validation_image_stops_before_training(tmp_path):
    photos = tmp_path / "photos"
    write_rgb(photos / "ok.png", 40, 40, seed=1)
    (photos / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "snap"
    with pytest.raises(UserError, match="bad.png"):
        train.main(_argv(tmp_path, out, "--val_dir", str(photos)))
    assert not out.exists()


def test_train_log_has_the_losses_and_learning_rate_every_log_every(tmp_path):
    out = tmp_path / "snap"
    train.main(_argv(tmp_path, out, "--log_every", "2", "--lowlight_lr", "3e-4"))
    log = (out / "train.log").read_text()
    lines = re.findall(r"iteration (\d+): loss ([\d.]+) \(tv [^)]*con [^)]*\), lr ([\d.e-]+)", log)
    assert [int(s) for s, _, _ in lines] == [2, 4]
    losses = read_losses(str(out / "losses.jsonl"))
    assert [float(total) for _, total, _ in lines] == pytest.approx([r["total"] for r in losses], abs=1e-4)
    lrs = read_losses(str(out / "losses.jsonl"), prefix="train")
    assert [(r["step"], r["lr"]) for r in lrs] == [(2, pytest.approx(3e-4)), (4, pytest.approx(3e-4))]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    assert {"train/lr", "loss/total", "loss/tv", "loss/con"} <= set(acc.Tags()["scalars"])


def test_console_lines_are_written_above_the_progress_bar_not_onto_it():
    from tqdm import tqdm

    def console(handler_cls):
        buf = io.StringIO()
        bar = tqdm(total=10, file=buf, ascii=True, dynamic_ncols=False, ncols=60, mininterval=0)
        bar.update(3)
        handler = handler_cls(buf)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.emit(logging.LogRecord("train", logging.INFO, __file__, 1, "epoch 1: val psnr 20", None, None))
        bar.close()
        return buf.getvalue()

    plain = console(logging.StreamHandler)
    assert re.search(r"3/10[^\r\n]*epoch 1: val psnr 20", plain), plain  # what the plain handler did: glued to the bar
    ours = console(ConsoleHandler)
    assert not re.search(r"/10[^\r\n]*epoch 1", ours), ours
    assert re.search(r"(^|[\r\n])\s*epoch 1: val psnr 20\n", ours)

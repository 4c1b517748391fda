"""benchmarks/quality.py: the real-photo metrics on hand-made images, the baselines, and a whole run."""
import math
import os

import numpy as np
import pytest
import torch

from lowlight_model import enhance_net_nopool
from utils.image_io import save_image

from benchmarks import quality
from helpers import ROOT


def test_clipped_fraction_counts_pixels_with_any_channel_at_254():
    img = np.zeros((4, 5, 3), np.uint8)
    img[0, 0] = (254, 0, 0)      # counts (one channel is enough)
    img[0, 1] = (255, 255, 255)  # counts once, not three times
    img[1, 1] = (253, 253, 253)  # does not count
    assert quality.clipped_fraction(img) == pytest.approx(2 / 20)


def test_colour_shift_by_hand():
    grey = np.full((2, 2, 3), 100, np.uint8)
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    assert quality.colour_shift(grey, grey * 2) == 0.0  # brightening keeps the proportions
    assert quality.colour_shift(grey, red) == pytest.approx(4 / 3)  # |1/3-1| + 1/3 + 1/3
    warm = np.zeros((1, 1, 3), np.uint8) + np.array([120, 60, 20], np.uint8)  # proportions .6 .3 .1
    assert quality.colour_shift(warm, grey[:1, :1]) == pytest.approx(abs(0.6 - 1 / 3) + abs(0.3 - 1 / 3) + abs(0.1 - 1 / 3))


def test_pixel_colour_shift_by_hand_and_against_the_image_level_shift():
    """Per pixel: a gain keeps it 0; a pixel turned grey counts its own distance; black pixels are grey.
    Brightening the dark one of two differently coloured pixels moves the image-level proportions but
    no pixel's colour."""
    warm = np.array([[[120, 60, 20], [30, 30, 30]]], np.uint8)  # (.6 .3 .1) and grey
    assert quality.pixel_colour_shift(warm, warm * 2) == 0.0  # a gain: every pixel keeps its proportions
    grey = np.array([[[60, 60, 60], [30, 30, 30]]], np.uint8)
    d = abs(0.6 - 1 / 3) + abs(0.3 - 1 / 3) + abs(0.1 - 1 / 3)
    assert quality.pixel_colour_shift(warm, grey) == pytest.approx(d / 2)  # one of two pixels changed
    black = np.zeros((1, 2, 3), np.uint8)
    assert quality.pixel_colour_shift(black, grey) == 0.0
    lifted = np.array([[[120, 60, 20], [150, 150, 150]]], np.uint8)  # the grey pixel ×5, the warm one kept
    assert quality.pixel_colour_shift(warm, lifted) == 0.0
    # image level: (150,90,50)/290 against (270,210,170)/650
    expected = sum(abs(a / 290 - b / 650) for a, b in ((150, 270), (90, 210), (50, 170)))
    assert quality.colour_shift(warm, lifted) == pytest.approx(expected) and expected > 0.1
    assert quality.tone_shift(warm, lifted) == pytest.approx(expected)  # all of it comes from the tone
    orange = np.array([[[90, 60, 30], [30, 30, 30]]], np.uint8)  # → grey keeps each pixel's sum: no tone part
    assert quality.tone_shift(orange, grey) == pytest.approx(0.0, abs=1e-12) and quality.colour_shift(orange, grey) > 0.1
    half = np.array([[[120, 60, 20], [15, 15, 15]]], np.uint8)  # grey pixel darker: (150,90,50) → (135,75,35)
    assert quality.tone_shift(warm, half) == pytest.approx(
        sum(abs(a / 290 - b / 245) for a, b in ((150, 135), (90, 75), (50, 35))))
    q = quality.pixel_proportions(warm)  # what score_real passes once per photo
    assert quality.tone_shift(warm, half, q) == quality.tone_shift(warm, half)
    assert quality.pixel_colour_shift(warm, grey, q) == quality.pixel_colour_shift(warm, grey)


def test_noise_sigma_recovers_gaussian_noise_and_ignores_flat_and_ramp():
    rng = np.random.default_rng(0)
    flat = np.full((200, 200, 3), 128.0)
    assert quality.noise_sigma(flat.astype(np.uint8)) == 0.0
    ramp = np.broadcast_to(np.arange(200, dtype=np.float64)[None, :, None], (200, 200, 3)).astype(np.uint8)
    assert quality.noise_sigma(ramp) == pytest.approx(0.0, abs=1e-9)  # M annihilates linear ramps
    noisy = np.clip(flat + rng.normal(0, 5.0, (200, 200, 1)), 0, 255).astype(np.uint8)  # same noise in R, G, B
    assert quality.noise_sigma(noisy) == pytest.approx(5.0, rel=0.08)


def test_baselines():
    x = np.array([[[0, 64, 255]]], np.uint8)
    g = quality.gamma_method(0.45)(x)
    assert g.tolist() == [[[0, int(math.floor(255 * (64 / 255) ** 0.45 + 0.5)), 255]]]
    img = (np.random.default_rng(0).random((64, 64, 3)) * 60).astype(np.uint8)
    out = quality.clahe_method()(img)
    assert out.shape == img.shape and out.dtype == np.uint8 and out.mean() > img.mean()


def test_markdown_table_bolds_the_best():
    paired = {"a": {"psnr": 20.0, "ssim": 0.5, "colour": 0.03, "lpips": None},
              "b": {"psnr": 18.0, "ssim": 0.7, "colour": 0.05, "lpips": None}}
    real = {k: {"brightness": 0.3, "clipped": 0.012, "shift": 0.04, "tone": 0.03, "pixel_shift": 0.021, "noise": 2.0} for k in paired}
    t = quality.markdown_table(paired, real, 2, 3)
    assert "| a | **20.00** | 0.5000 | **0.030** | 0.300 | 1.20 | 0.040 | 0.030 | 0.021 | 2.00 |" in t  # colour error: lowest is best
    assert "| b | 18.00 | **0.7000** | 0.050 |" in t and "LPIPS" not in t


def test_whole_run_writes_table_and_grid(tmp_path):
    pairs, real = tmp_path / "pairs", tmp_path / "real"
    rng = np.random.default_rng(0)
    for i in range(2):
        high = rng.random((32, 40, 3)).astype(np.float32)
        save_image(high, str(pairs / "high" / f"{i}.png"))
        save_image(high * 0.2, str(pairs / "low" / f"{i}.png"))
        save_image(high * 0.1, str(real / f"r{i}.png"))
    torch.manual_seed(0)
    w = tmp_path / "dce.pth"
    torch.save(enhance_net_nopool().state_dict(), w)
    md, grid = tmp_path / "q.md", tmp_path / "g.jpg"
    quality.main(["--weights", f"mine={w}", "--pairs", str(pairs), "--real_dir", str(real),
                  "--out_md", str(md), "--out_grid", str(grid), "--height", "32"])
    text = md.read_text()
    for name in ("identity", "gamma 0.45", "CLAHE", "mine"):
        assert f"| {name} |" in text
    row = next(line for line in text.splitlines() if line.startswith("| identity |"))
    from metrics import psnr
    from utils.image_io import read_image, to_uint8

    def u8(path):
        return to_uint8(read_image(str(path)))

    expected = np.mean([psnr(u8(pairs / "high" / f"{i}.png"), u8(pairs / "low" / f"{i}.png")) for i in range(2)])
    assert float(row.split("|")[2].strip("* ")) == pytest.approx(expected, abs=0.006)  # the input itself
    colour = np.mean([quality.colour_shift(u8(pairs / "high" / f"{i}.png"), u8(pairs / "low" / f"{i}.png")) for i in range(2)])
    assert float(row.split("|")[4].strip("* ")) == pytest.approx(colour, abs=6e-4)  # colour error of the input
    pix = np.mean([quality.pixel_colour_shift(u8(pairs / "low" / f"{i}.png"), u8(pairs / "high" / f"{i}.png"))
                   for i in range(2)])
    assert f"colour shift of the ground truth from its low input: {colour:.3f}, per pixel {pix:.3f}" in text
    bright = np.mean([u8(real / f"r{i}.png").mean() / 255 for i in range(2)])
    assert float(row.split("|")[5]) == pytest.approx(bright, abs=6e-4)
    assert [float(row.split("|")[i]) for i in (7, 8, 9)] == [0.0, 0.0, 0.0]  # the input's shifts from itself
    mine = next(line for line in text.splitlines() if line.startswith("| mine |"))
    w8 = [quality.pixel_colour_shift(u8(real / f"r{i}.png"), quality.enhancer_method(str(w), torch.device("cpu"))(
        u8(real / f"r{i}.png"))) for i in range(2)]
    assert float(mine.split("|")[9]) == pytest.approx(np.mean(w8), abs=6e-4) and np.mean(w8) > 0.001
    assert grid.is_file() and os.path.getsize(grid) > 0


def test_shipped_samples_rebuild_and_the_shipped_model_beats_the_input(tmp_path):
    """The shipped samples are the prepare_demo eval images (seed 0); the shipped model improves them."""
    from datasets.prepare_demo import build_demo
    from metrics import psnr, ssim
    from utils.image_io import read_image, to_uint8

    samples = ROOT / "datasets" / "test_data" / "skimage"
    weights = ROOT / "checkpoints" / "LLE_model.pth"
    build_demo(str(tmp_path), None, seed=0, n_crops=1, crop=32)
    run = quality.enhancer_method(str(weights), torch.device("cpu"))
    gains = []
    for f in sorted(samples.glob("*.png")):
        low = to_uint8(read_image(str(f)))  # same pixels (the PNG encoder settings may differ)
        assert np.array_equal(low, to_uint8(read_image(str(tmp_path / "LOL-demo" / "eval15" / "low" / f.name))))
        high = to_uint8(read_image(str(tmp_path / "LOL-demo" / "eval15" / "high" / f.name)))
        out = run(low)
        gains.append((psnr(high, out) - psnr(high, low), ssim(high, out) - ssim(high, low)))
    assert len(gains) == 6
    assert np.mean([g[0] for g in gains]) > 3.0 and min(g[1] for g in gains) > 0  # dB, SSIM

"""benchmarks/quality.py: the baselines, the table, and a whole run (its metrics: tests/test_metrics.py)."""
import math
import os

import numpy as np
import pytest
import torch

from lowlight_model import enhance_net_nopool
from metrics import colour_shift, niqe, pixel_colour_shift
from utils.image_io import save_image

from benchmarks import quality
from helpers import ROOT


def test_baselines():
    x = np.array([[[0, 64, 255]]], np.uint8)
    g = quality.gamma_method(0.45)(x)
    assert g.tolist() == [[[0, int(math.floor(255 * (64 / 255) ** 0.45 + 0.5)), 255]]]
    img = (np.random.default_rng(0).random((64, 64, 3)) * 60).astype(np.uint8)
    out = quality.clahe_method()(img)
    assert out.shape == img.shape and out.dtype == np.uint8 and out.mean() > img.mean()


def test_markdown_table_bolds_the_best():
    paired = {"a": {"psnr": 20.0, "ssim": 0.5, "colour": 0.03, "lpips": None, "niqe": 4.1234},
              "b": {"psnr": 18.0, "ssim": 0.7, "colour": 0.05, "lpips": None, "niqe": None}}
    real = {k: {"brightness": 0.3, "clipped": 0.012, "shift": 0.04, "tone": 0.03, "pixel_shift": 0.021, "noise": 2.0,
                "niqe": 3.5} for k in paired}
    t = quality.markdown_table(paired, real, 2, 3)
    # colour error: lowest is best; NIQE last in each part, "–" where no image was large enough
    assert "| a | **20.00** | 0.5000 | **0.030** | 4.123 | 0.300 | 1.20 | 0.040 | 0.030 | 0.021 | 2.00 | 3.500 |" in t
    assert "| b | 18.00 | **0.7000** | 0.050 | – |" in t and "LPIPS" not in t


def test_table_rewrite_keeps_the_page_above_it(tmp_path):
    """docs/quality.md is prose + the generated table: a new run replaces the table only."""
    md = tmp_path / "quality.md"
    prose = f"# Quality\n\nProse naming `{quality.GENERATED_MARK}`.\n\n"
    md.write_text(prose + quality.GENERATED_MARK + "\nold note\n\n| old |\n")
    quality._write_text(str(md), quality.GENERATED_MARK + "\nnew note\n\n| new |\n")
    assert md.read_text() == prose + quality.GENERATED_MARK + "\nnew note\n\n| new |\n"
    fresh = tmp_path / "fresh.md"
    quality._write_text(str(fresh), "table only\n")
    assert fresh.read_text() == "table only\n"


def test_whole_run_writes_table_and_grid(tmp_path):
    pairs, real = tmp_path / "pairs", tmp_path / "real"
    rng = np.random.default_rng(0)
    for i in range(2):
        high = rng.random((32, 40, 3)).astype(np.float32)
        save_image(high, str(pairs / "high" / f"{i}.png"))
        save_image(high * 0.2, str(pairs / "low" / f"{i}.png"))
        save_image(rng.random((12, 24, 3)).repeat(8, 0).repeat(8, 1) * 0.3, str(real / f"r{i}.png"))  # 2 NIQE blocks
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
    colour = np.mean([colour_shift(u8(pairs / "high" / f"{i}.png"), u8(pairs / "low" / f"{i}.png")) for i in range(2)])
    assert float(row.split("|")[4].strip("* ")) == pytest.approx(colour, abs=6e-4)  # colour error of the input
    pix = np.mean([pixel_colour_shift(u8(pairs / "low" / f"{i}.png"), u8(pairs / "high" / f"{i}.png"))
                   for i in range(2)])
    assert f"colour shift of the ground truth from its low input: {colour:.3f}, per pixel {pix:.3f}" in text
    bright = np.mean([u8(real / f"r{i}.png").mean() / 255 for i in range(2)])
    assert float(row.split("|")[6]) == pytest.approx(bright, abs=6e-4)
    assert [float(row.split("|")[i]) for i in (8, 9, 10)] == [0.0, 0.0, 0.0]  # the input's shifts from itself
    assert row.split("|")[5].strip() == "–"  # 32x40 pairs: too small for NIQE
    assert float(row.split("|")[12]) == pytest.approx(np.mean([niqe(u8(real / f"r{i}.png")) for i in range(2)]), abs=6e-4)
    mine = next(line for line in text.splitlines() if line.startswith("| mine |"))
    w8 = [pixel_colour_shift(u8(real / f"r{i}.png"), quality.enhancer_method(str(w), torch.device("cpu"))(
        u8(real / f"r{i}.png"))) for i in range(2)]
    assert float(mine.split("|")[10]) == pytest.approx(np.mean(w8), abs=6e-4) and np.mean(w8) > 0.001
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


def test_build_methods_adds_denoise_and_exposure_rows(tmp_path):
    """--denoise and --exposure rows: a DCE-Net gets both, EMNet only the denoise one; each row is the option's
    own output (utils.denoise / Enhancer.set_curve_control) of the same checkpoint."""
    from helpers import random_dce
    from lowlight_model import enhance, load_enhancer
    from network.emnet import EMNet
    from utils.denoise import denoise_8bit
    from utils.image_io import to_uint8

    torch.manual_seed(0)
    torch.save(random_dce(std=0.05).state_dict(), tmp_path / "d.pth")
    torch.save(EMNet(dim=2).state_dict(), tmp_path / "e.pth")
    methods = quality.build_methods([("d", str(tmp_path / "d.pth")), ("e", str(tmp_path / "e.pth"))],
                                    torch.device("cpu"), baselines=False, denoise=1.0, exposures=[0.3, 0.5])
    assert list(methods) == ["d", "d + denoise", "d E=0.3", "d E=0.5", "e", "e + denoise"]
    x = (np.random.default_rng(1).random((24, 32, 3)) * 60).astype(np.uint8)
    t = torch.from_numpy(x.transpose(2, 0, 1).copy()).float()[None] / 255
    model = load_enhancer("auto", str(tmp_path / "d.pth"), "cpu")
    with torch.no_grad():
        plain = to_uint8(enhance(model, t)[0].clamp(0, 1))
        bright = to_uint8(enhance(model, t, exposure=0.5)[0].clamp(0, 1))
    assert np.array_equal(methods["d"](x), plain)  # the exposure rows leave the shared model as it was
    assert np.array_equal(methods["d + denoise"](x), denoise_8bit(plain, 1.0))
    assert np.array_equal(methods["d E=0.5"](x), bright) and not np.array_equal(bright, plain)

"""The PSNR / SSIM conventions (metrics.conventions) against BasicSR's published formulas, written out here in
numpy: the BT.601 luma, the crop border, PSNR with peak 255, and SSIM with an explicit 11x11 Gaussian window
(σ 1.5) averaged over the valid positions."""
import numpy as np
import pytest

from metrics import image as metrics_image
from metrics.conventions import CONVENTION_NAMES, crop, describe, scores_8bit, y_channel


def _pair(h=19, w=23, seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    noise = rng.integers(-25, 26, (h, w, 3))
    return np.clip(gt.astype(int) + noise, 0, 255).astype(np.uint8), gt


def _luma(img8):
    """Y = 16 + 65.481 R + 128.553 G + 24.966 B on R, G, B in [0, 1] (ITU-R BT.601, BasicSR's y_only)."""
    x = img8.astype(np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def _psnr(a, b):
    return 10.0 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def _ssim_channel(a, b):
    """Wang et al.'s SSIM with an 11x11 Gaussian window (σ 1.5), valid positions only, C1 = (0.01·255)²,
    C2 = (0.03·255)², mean of the map."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    win = np.outer(g, g)
    h, w = a.shape[0] - 10, a.shape[1] - 10
    filt = lambda x: np.array([[np.sum(x[i:i + 11, j:j + 11] * win) for j in range(w)] for i in range(h)])  # noqa: E731
    a, b = a.astype(np.float64), b.astype(np.float64)
    ma, mb = filt(a), filt(b)
    va, vb, cov = filt(a * a) - ma ** 2, filt(b * b) - mb ** 2, filt(a * b) - ma * mb
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return np.mean((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))


def test_y_channel_is_bt601_luma():
    img = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    expected = [16 + 65.481, 16 + 128.553, 16 + 24.966, 235.0, 16.0]  # Y of pure R, G, B, white, black
    np.testing.assert_allclose(y_channel(img)[0, :, 0], expected, atol=1e-4)


@pytest.mark.parametrize("crop_border", [0, 2])
def test_basicsr_y_matches_published_formulas(crop_border):
    y8, gt8 = _pair()
    c = slice(crop_border, None if crop_border == 0 else -crop_border)
    ya, yb = _luma(gt8[c, c]), _luma(y8[c, c])
    got = scores_8bit(y8, gt8, "basicsr_y", crop_border)
    assert got["psnr"] == pytest.approx(_psnr(ya, yb), abs=1e-6)
    assert got["ssim"] == pytest.approx(_ssim_channel(ya, yb), abs=1e-4)


@pytest.mark.parametrize("crop_border", [0, 3])
def test_basicsr_rgb_matches_published_formulas(crop_border):
    y8, gt8 = _pair(seed=1)
    c = slice(crop_border, None if crop_border == 0 else -crop_border)
    a, b = gt8[c, c], y8[c, c]
    got = scores_8bit(y8, gt8, "basicsr_rgb", crop_border)
    assert got["psnr"] == pytest.approx(_psnr(a, b), abs=1e-6)
    assert got["ssim"] == pytest.approx(np.mean([_ssim_channel(a[..., k], b[..., k]) for k in range(3)]), abs=1e-4)


def test_conventions_differ_on_the_same_pair():
    y8, gt8 = _pair(seed=2)
    ssims = {name: scores_8bit(y8, gt8, name)["ssim"] for name in CONVENTION_NAMES}
    assert len({round(v, 6) for v in ssims.values()}) == 3


def test_reference_default_is_todays_scores():
    y8, gt8 = _pair(seed=3)
    assert scores_8bit(y8, gt8) == {"psnr": metrics_image.psnr(gt8, y8), "ssim": metrics_image.ssim(gt8, y8)}
    cropped = scores_8bit(y8, gt8, crop_border=4)
    assert cropped["psnr"] == metrics_image.psnr(gt8[4:-4, 4:-4], y8[4:-4, 4:-4])


def test_bad_convention_and_crop_are_refused():
    y8, gt8 = _pair(h=8, w=8)
    with pytest.raises(ValueError, match="convention must be one of reference, basicsr_rgb, basicsr_y"):
        scores_8bit(y8, gt8, "matlab")
    with pytest.raises(ValueError, match="crop_border 4 leaves nothing of a 8x8 image"):
        crop(gt8, 4)
    assert "4-pixel border cropped" in describe("basicsr_y", 4)


@pytest.fixture
def paired_run(tmp_path):
    import torch

    from helpers import make_lol_v1, random_dce

    path = tmp_path / "w.pth"
    torch.save(random_dce(std=0.05).state_dict(), path)
    return make_lol_v1(tmp_path / "eval15", n=2), path


def test_metrics_flag_reaches_result_txt_and_the_csv(tmp_path, paired_run):
    import csv

    from PIL import Image

    import lowlight_test

    pairs, weights = paired_run
    out = tmp_path / "res"
    lowlight_test.main(["--input_dir", str(pairs), "--result_dir", str(out), "--weights", str(weights), "--device",
                        "cpu", "--no_lpips", "--save_images", "--metrics", "basicsr_y", "--crop_border", "2"])
    report = (out / "result.txt").read_text()
    assert "metrics: basicsr_y: PSNR/SSIM on the Y channel of ITU-R BT.601" in report
    assert "2-pixel border cropped" in report
    rows = {r["image"]: r for r in csv.DictReader(open(out / "results.csv"))}
    for name in ("1.png", "2.png"):
        ori = np.asarray(Image.open(out / "ori" / name))[2:-2, 2:-2]
        gt = np.asarray(Image.open(pairs / "high" / name))[2:-2, 2:-2]
        assert float(rows[name]["ori_psnr"]) == pytest.approx(_psnr(_luma(gt), _luma(ori)), abs=1e-5)
        assert float(rows[name]["ori_ssim"]) == pytest.approx(_ssim_channel(_luma(gt), _luma(ori)), abs=1e-4)


def test_crop_border_too_large_and_folder_mode_are_one_line_errors(tmp_path, paired_run):
    import lowlight_test
    from helpers import run_cli_in_process

    pairs, weights = paired_run
    base = ["--input_dir", str(pairs), "--result_dir", str(tmp_path / "res"), "--weights", str(weights), "--device",
            "cpu", "--no_lpips"]
    code, err, _ = run_cli_in_process(lowlight_test.main, base + ["--crop_border", "16"])
    assert code != 0 and len(err) == 1 and "--crop_border 16 leaves nothing of a 40x32 image" in err[0]
    folder = base[:-1] + ["--mode", "folder", "--metrics", "basicsr_y"]  # without --no_lpips
    code, err, _ = run_cli_in_process(lowlight_test.main, folder)
    assert code != 0 and len(err) == 1 and "--metrics applies only to paired evaluation" in err[0]


def test_quality_benchmark_metrics_flag_names_the_convention(tmp_path):
    import torch

    from PIL import Image

    from benchmarks import quality
    from lowlight_model import enhance_net_nopool
    from utils.image_io import read_image_uint8

    pairs = tmp_path / "pairs"
    y8, gt8 = _pair(h=24, w=30, seed=4)
    for sub, img in (("high", gt8), ("low", y8)):
        (pairs / sub).mkdir(parents=True)
        Image.fromarray(img).save(pairs / sub / "0.png")
    w = tmp_path / "dce.pth"
    torch.save(enhance_net_nopool().state_dict(), w)
    md = tmp_path / "q.md"
    quality.main(["--weights", f"mine={w}", "--pairs", str(pairs), "--real_dir", "", "--out_md", str(md),
                  "--grid_rows", "0", "--metrics", "basicsr_y", "--crop_border", "1"])
    text = md.read_text()
    assert "PSNR ↑ (1 pairs, basicsr_y)" in text and "metrics basicsr_y: PSNR/SSIM on the Y channel" in text
    row = next(line for line in text.splitlines() if line.startswith("| identity |"))
    low, high = read_image_uint8(str(pairs / "low" / "0.png"))[1:-1, 1:-1], gt8[1:-1, 1:-1]
    assert float(row.split("|")[2].strip("* ")) == pytest.approx(_psnr(_luma(high), _luma(low)), abs=0.006)
    assert float(row.split("|")[3].strip("* ")) == pytest.approx(_ssim_channel(_luma(high), _luma(low)), abs=6e-5)

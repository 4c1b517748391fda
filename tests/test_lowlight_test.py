"""lowlight_test.py: folder mode round trip, odd inputs, errors; paired mode against scikit-image."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import lowlight_test
from helpers import (COMPAT, ROOT, SHARED, make_lol_v1, random_dce, requires_shared, run_cli_in_process,
                     write_rgb)
from utils.errors import UserError
from utils.image_io import read_image_tensor, to_uint8

LIME = SHARED / "data" / "LIME"


@pytest.fixture
def dce_weights(tmp_path):
    m = random_dce(std=0.05)
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in m.state_dict().items()}}, path)
    return path, m.eval()


def test_folder_round_trip(tmp_path, dce_weights):
    weights, model = dce_weights
    src = tmp_path / "test_data"
    write_rgb(src / "a" / "one.png", 30, 40, seed=1, scale=0.3)
    write_rgb(src / "b" / "two.jpg", 25, 33, seed=2, scale=0.3)
    gray = (np.arange(20 * 24).reshape(20, 24) % 256).astype(np.uint8)
    Image.fromarray(gray).save(src / "b" / "gray.png")
    Image.fromarray(np.zeros((10, 12, 4), np.uint8) + 60).save(src / "b" / "rgba.png")
    Image.fromarray((np.arange(16 * 18).reshape(16, 18) * 200).astype(np.uint16)).save(src / "b" / "deep.png")
    out = tmp_path / "result"
    assert lowlight_test.main(["--input_dir", str(src), "--output_dir", str(out), "--weights", str(weights),
                               "--device", "cpu"]) == 0
    for rel in ("a/one.png", "b/two.jpg", "b/gray.png", "b/rgba.png", "b/deep.png"):
        x = read_image_tensor(str(src / rel))
        got = np.asarray(Image.open(out / rel).convert("RGB"))
        assert got.shape == (x.shape[1], x.shape[2], 3)
        if rel.endswith(".png"):
            with torch.no_grad():
                expect = to_uint8(model(x[None])[1][0].clamp(0, 1))
            assert np.array_equal(got, expect), rel


def test_corrupt_image_is_skipped_with_one_line_error(tmp_path, dce_weights):
    weights, _ = dce_weights
    src = tmp_path / "in"
    write_rgb(src / "ok.png", 16, 16, seed=1)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "lowlight_test.py", "--input_dir", str(src), "--output_dir", str(out),
                        "--weights", str(weights), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "broken.png" in r.stderr and (out / "ok.png").exists() and not (out / "broken.png").exists()
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no half-written temporary files


@pytest.mark.parametrize("problem", ["missing_dir", "missing_weights", "wrong_checkpoint"])
def test_bad_input_is_one_line_error(tmp_path, dce_weights, problem):
    weights, _ = dce_weights
    src = tmp_path / "in"
    write_rgb(src / "ok.png", 16, 16, seed=1)
    if problem == "missing_dir":
        argv, needle = ["--input_dir", str(tmp_path / "nope"), "--weights", str(weights)], "nope"
    elif problem == "missing_weights":
        argv, needle = ["--input_dir", str(src), "--weights", str(tmp_path / "none.pth")], "none.pth"
    else:
        torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
        argv, needle = ["--input_dir", str(src), "--weights", str(tmp_path / "other.pth")], "known enhancer"
    code, lines, _ = run_cli_in_process(lowlight_test.main, [*argv, "--device", "cpu"])  # the real process: above
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


def test_paired_mode_reports_scikit_image_metrics(tmp_path, dce_weights, fake_torch_home):
    weights, _ = dce_weights
    pairs = make_lol_v1(tmp_path / "eval15", n=3)
    out = tmp_path / "res"
    lowlight_test.main(["--input_dir", str(pairs), "--result_dir", str(out), "--weights", str(weights),
                        "--device", "cpu", "--save_images", "--grid", "2"])
    rows = {r["image"]: r for r in csv.DictReader(open(out / "results.csv"))}
    for name in ("1.png", "2.png", "3.png"):
        ori = np.asarray(Image.open(out / "ori" / name))
        gt = np.asarray(Image.open(pairs / "high" / name))
        assert float(rows[name]["ori_psnr"]) == pytest.approx(peak_signal_noise_ratio(gt, ori, data_range=255), abs=1e-5)
        assert float(rows[name]["ori_ssim"]) == pytest.approx(
            structural_similarity(gt, ori, channel_axis=-1, data_range=255), abs=1e-5)
        assert "ori_lpips" in rows[name]
    mean = np.mean([float(rows[n]["ori_psnr"]) for n in ("1.png", "2.png", "3.png")])
    assert float(rows["mean"]["ori_psnr"]) == pytest.approx(mean, abs=1e-5)
    report = (out / "result.txt").read_text()
    assert "ORACLE" in report and "1.png" in report and "LPIPS AlexNet v0.1" in report
    assert 3 * 40 < Image.open(out / "comparison.png").size[0] < 4 * 40  # input | ori | GT: no memory column
    lowlight_test.main(["--input_dir", str(pairs), "--result_dir", str(out), "--weights", str(weights),
                        "--device", "cpu", "--no_lpips"])
    report = (out / "result.txt").read_text()  # the header names only metrics that were computed
    assert "LPIPS not computed" in report and "AlexNet v0.1" not in report
    assert "ori_lpips" not in next(csv.DictReader(open(out / "results.csv")))


@pytest.mark.parametrize("precision,max_levels", [("channels_last", 1), ("bf16", 3)])
def test_fast_precisions_stay_within_a_few_levels(tmp_path, dce_weights, precision, max_levels):
    weights, _ = dce_weights
    src = tmp_path / "in"
    write_rgb(src / "x.png", 48, 64, seed=3, scale=0.3)
    outs = {}
    for prec in ("fp32", precision):
        lowlight_test.main(["--input_dir", str(src), "--output_dir", str(tmp_path / prec), "--weights", str(weights),
                            "--device", "cpu", "--precision", prec])
        outs[prec] = np.asarray(Image.open(tmp_path / prec / "x.png")).astype(int)
    assert np.abs(outs["fp32"] - outs[precision]).max() <= max_levels


@pytest.mark.parametrize("native", [False, True, None])
def test_bf16_on_a_cpu_without_bf16_instructions_says_so(tmp_path, dce_weights, monkeypatch, native):
    """bf16 is emulated (about 10x slower than fp32) where oneDNN has no native bf16: a note says so, and the
    images are still written; a CPU with it (or one torch cannot describe) gets no note."""
    weights, _ = dce_weights
    write_rgb(tmp_path / "in" / "x.png", 24, 32, seed=1, scale=0.3)
    monkeypatch.setattr(lowlight_test, "cpu_has_bf16", lambda: native)
    code, err, _ = run_cli_in_process(lowlight_test.main, ["--input_dir", str(tmp_path / "in"), "--output_dir",
                                                           str(tmp_path / "out"), "--weights", str(weights),
                                                           "--device", "cpu", "--precision", "bf16"])
    assert code == 0 and (tmp_path / "out" / "x.png").exists()
    notes = [line for line in err if "no bf16 instructions" in line]
    assert len(notes) == (1 if native is False else 0)


def test_cpu_has_bf16_matches_the_cpu_flags():
    from utils.device import cpu_has_bf16

    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if not flags or torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("no /proc/cpuinfo to compare with")
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        assert cpu_has_bf16() is True
    elif "avx512" not in flags:
        assert cpu_has_bf16() is False  # AVX2-only CPUs (this project's CI machines) have none
    else:
        pytest.skip("AVX-512 without BF16: oneDNN decides by its own ISA rules")


def test_default_run_enhances_the_shipped_samples(tmp_path):
    """No arguments but the output folder: shipped samples, shipped checkpoint, visibly brighter outputs."""
    samples = ROOT / "datasets" / "test_data"
    assert (ROOT / "checkpoints" / "LLE_model.pth").exists()
    assert lowlight_test.main(["--output_dir", str(tmp_path), "--device", "cpu"]) == 0
    paths = sorted(p.relative_to(samples) for p in samples.rglob("*.png"))
    assert len(paths) >= 4
    for rel in paths:
        x = np.asarray(Image.open(samples / rel).convert("RGB"), np.float32)
        y = np.asarray(Image.open(tmp_path / rel).convert("RGB"), np.float32)
        assert y.shape == x.shape
        # the samples' ground truth (physically based synthesis) is 2.4-5.5x brighter than they are
        assert y.mean() > 2 * x.mean(), rel
        # no colour cast: the output's channel proportions stay close to the input's (the ground truth's
        # differ from the input's by up to 0.059: white-balance shift and the sRGB curve)
        cx, cy = x.reshape(-1, 3).mean(0), y.reshape(-1, 3).mean(0)
        assert np.abs(cy / cy.sum() - cx / cx.sum()).max() < 0.08, (rel, cx / cx.sum(), cy / cy.sum())


def test_single_image_input(tmp_path, dce_weights):
    weights, _ = dce_weights
    write_rgb(tmp_path / "photo.png", 20, 24, seed=4, scale=0.3)
    assert lowlight_test.main(["--input_dir", str(tmp_path / "photo.png"), "--output_dir", str(tmp_path / "o"),
                               "--weights", str(weights), "--device", "cpu"]) == 0
    assert np.asarray(Image.open(tmp_path / "o" / "photo.png")).shape == (20, 24, 3)


def test_output_into_the_input_folder_is_refused(tmp_path, dce_weights):
    weights, _ = dce_weights
    before = write_rgb(tmp_path / "photo.png", 20, 24, seed=4, scale=0.3)
    with pytest.raises(UserError, match="overwritten"):
        lowlight_test.main(["--input_dir", str(tmp_path), "--output_dir", str(tmp_path), "--weights", str(weights),
                            "--device", "cpu"])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "photo.png")), before)


def _reference_loop(weights: str, path) -> np.ndarray:
    """The official test script's arithmetic: plain fp32 NCHW forward, PIL load, torchvision rounding."""
    from lowlight_model import enhance_net_nopool

    model = enhance_net_nopool()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")) / 255.0).float().permute(2, 0, 1)[None]
    with torch.no_grad():
        y = model.eval()(x)[1]
    return y[0].mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()


@requires_shared
@pytest.mark.parametrize("precision,max_levels", [("fp32", 1), ("bf16", 3)])
def test_real_photos_match_the_reference_loop(tmp_path, precision, max_levels):
    """Default path within one 8-bit level of the official loop (SCL-LLE weights, LIME photos), bf16 within 3."""
    import shutil

    src = tmp_path / "lime"
    src.mkdir()
    for name in ("4.bmp", "6.bmp", "8.bmp"):
        shutil.copy(LIME / name, src / name)
    weights = str(COMPAT / "SCL-LLE.pth")
    assert lowlight_test.main(["--input_dir", str(src), "--output_dir", str(tmp_path / "out"), "--weights", weights,
                               "--device", "cpu", "--precision", precision]) == 0
    for name in ("4.bmp", "6.bmp", "8.bmp"):
        got = np.asarray(Image.open(tmp_path / "out" / name)).astype(int)
        ref = _reference_loop(weights, src / name).astype(int)
        assert np.abs(got - ref).max() <= max_levels, name


def test_same_size_images_are_batched_with_the_single_image_result(tmp_path, dce_weights, monkeypatch):
    import inference

    weights, _ = dce_weights
    src = tmp_path / "in"
    for i in range(3):
        write_rgb(src / f"s{i}.png", 24, 32, seed=i, scale=0.3)
    write_rgb(src / "odd.png", 20, 20, seed=9, scale=0.3)
    shapes = []
    real = inference.enhance_batch
    monkeypatch.setattr(inference, "enhance_batch", lambda m, x, *a: shapes.append(tuple(x.shape)) or real(m, x, *a))
    for bs, workers in ((1, 0), (2, 2)):
        assert lowlight_test.main(["--input_dir", str(src), "--output_dir", str(tmp_path / f"b{bs}"), "--weights",
                                   str(weights), "--device", "cpu", "--batch_size", str(bs),
                                   "--workers", str(workers)]) == 0
    assert sorted(shapes[4:]) == [(1, 3, 20, 20), (1, 3, 24, 32), (2, 3, 24, 32)]
    for name in ("s0.png", "s1.png", "s2.png", "odd.png"):
        a, b = (np.asarray(Image.open(tmp_path / d / name), int) for d in ("b1", "b2"))
        assert np.abs(a - b).max() <= 1, name


def test_8bit_and_16bit_images_of_one_size_go_in_separate_passes(tmp_path, dce_weights, monkeypatch):
    """8-bit images are read as uint8 and 16-bit ones as float: with --batch_size 2 they still go through
    the network apart (stacked together, the 8-bit one would be 255 times too bright), with the same
    outputs as one at a time."""
    import cv2
    import inference

    batches = []
    real = inference.enhance_batch
    monkeypatch.setattr(inference, "enhance_batch", lambda m, x, *a: batches.append(x.dtype) or real(m, x, *a))

    weights, _ = dce_weights
    src = tmp_path / "in"
    write_rgb(src / "a8.png", 24, 32, seed=1, scale=0.3)
    rgb16 = np.random.default_rng(2).integers(0, 20000, (24, 32, 3), dtype=np.uint16)
    cv2.imwrite(str(src / "b16.png"), rgb16[..., ::-1])
    for bs in (1, 2):
        assert lowlight_test.main(["--input_dir", str(src), "--output_dir", str(tmp_path / f"b{bs}"), "--weights",
                                   str(weights), "--device", "cpu", "--batch_size", str(bs), "--workers", "0"]) == 0
    for name in ("a8.png", "b16.png"):
        a, b = (np.asarray(Image.open(tmp_path / d / name), int) for d in ("b1", "b2"))
        assert np.abs(a - b).max() <= 1, name
    assert sorted(map(str, batches)) == ["torch.float32"] * 2 + ["torch.uint8"] * 2


@pytest.mark.slow
def test_torchrun_writes_every_image_exactly_once(tmp_path, dce_weights):
    """Two processes (gloo, CPU): disjoint shares, one summary whose count is the folder's size."""
    weights, _ = dce_weights
    src = tmp_path / "in"
    for i in range(5):
        write_rgb(src / f"d{i % 2}" / f"{i}.png", 16 + 4 * (i % 3), 20, seed=i, scale=0.3)
    lowlight_test.main(["--input_dir", str(src), "--output_dir", str(tmp_path / "single"), "--weights", str(weights),
                        "--device", "cpu"])
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "lowlight_test.py", "--input_dir", str(src), "--output_dir", str(out), "--weights",
                        str(weights), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summaries = [line for line in r.stdout.splitlines() if line.startswith("enhanced ")]
    assert len(summaries) == 1 and summaries[0].startswith("enhanced 5 image(s)")  # counts summed over ranks
    for p in sorted(src.rglob("*.png")):
        rel = p.relative_to(src)
        assert np.array_equal(np.asarray(Image.open(out / rel)), np.asarray(Image.open(tmp_path / "single" / rel)))


@pytest.mark.slow
def test_12_megapixel_photo_stays_under_3_gb_by_default(tmp_path, dce_weights):
    """big_4000x3000_17GB_RSS: automatic tiles keep the whole process (peak RSS) under 3 GB."""
    weights, _ = dce_weights
    write_rgb(tmp_path / "in" / "big.png", 3000, 4000, seed=1, scale=0.3)
    script = ("import sys, lowlight_test; from utils.memory import peak_rss; code = lowlight_test.main(sys.argv[1:]); "
              "print('RSS', peak_rss() // 1024); sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", script, "--input_dir", str(tmp_path / "in"), "--output_dir",
                        str(tmp_path / "out"), "--weights", str(weights), "--device", "cpu"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-500:]
    rss_kb = int(r.stdout.split("RSS")[-1])
    assert rss_kb * 1024 < 3e9, rss_kb
    assert np.asarray(Image.open(tmp_path / "out" / "big.png")).shape == (3000, 4000, 3)


def test_denoise_option_in_folder_mode(tmp_path, dce_weights):
    """--denoise 0 writes the same files as no flag; --denoise 1 writes the enhanced image through
    utils.denoise.denoise_8bit (less noise σ on a noisy flat photo)."""
    from metrics import noise_sigma
    from utils.denoise import denoise_8bit

    weights, model = dce_weights
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(3)
    noisy = np.clip(40 + rng.normal(0, 6, (48, 56, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(src / "flat.png")
    outs = {}
    for label, extra in (("none", []), ("zero", ["--denoise", "0"]), ("one", ["--denoise", "1"])):
        out = tmp_path / label
        assert lowlight_test.main(["--input_dir", str(src), "--output_dir", str(out), "--weights", str(weights),
                                   "--device", "cpu", *extra]) == 0
        outs[label] = np.asarray(Image.open(out / "flat.png").convert("RGB"))
    assert np.array_equal(outs["none"], outs["zero"])
    assert np.array_equal(outs["one"], denoise_8bit(outs["none"], 1.0))
    assert noise_sigma(outs["one"]) < noise_sigma(outs["none"])
    with pytest.raises(UserError, match="--denoise -1"):
        lowlight_test.main(["--input_dir", str(src), "--weights", str(weights), "--denoise", "-1"])


def _run(src, out, weights, *extra):
    return lowlight_test.main(["--input_dir", str(src), "--output_dir", str(out), "--weights", str(weights),
                               "--device", "cpu", "--workers", "0", *extra])


def test_folder_mode_keeps_icc_and_exif_with_orientation_reset(tmp_path, dce_weights):
    from PIL import ImageCms

    weights, model = dce_weights
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "in"
    src.mkdir()
    im = Image.fromarray(write_rgb(tmp_path / "tmp.png", 16, 24, seed=5, scale=0.3))
    exif = im.getexif()
    exif[0x0112], exif[0x010F] = 8, "TestCam"
    im.save(src / "photo.png", exif=exif.tobytes(), icc_profile=icc)
    assert _run(src, tmp_path / "out", weights) == 0
    with Image.open(tmp_path / "out" / "photo.png") as o:
        assert o.info.get("icc_profile") == icc
        assert o.getexif().get(0x0112) == 1 and o.getexif().get(0x010F) == "TestCam"
        got = np.asarray(o.convert("RGB"))
    x = read_image_tensor(str(src / "photo.png"))  # upright: 24x16
    with torch.no_grad():
        assert np.array_equal(got, to_uint8(model(x[None])[1][0].clamp(0, 1)))
    assert _run(src, tmp_path / "bare", weights, "--strip_metadata") == 0
    with Image.open(tmp_path / "bare" / "photo.png") as o:
        assert "icc_profile" not in o.info and len(o.getexif()) == 0
        assert np.array_equal(np.asarray(o.convert("RGB")), got)


def test_format_flag_names_quality_and_webp(tmp_path, dce_weights):
    weights, _ = dce_weights
    src = tmp_path / "in"
    write_rgb(src / "a.png", 64, 64, seed=1, scale=0.4)
    write_rgb(src / "a.jpg", 64, 64, seed=2, scale=0.4)
    assert _run(src, tmp_path / "same", weights) == 0
    assert sorted(os.listdir(tmp_path / "same")) == ["a.jpg", "a.png"]
    assert _run(src, tmp_path / "png", weights, "--format", "png") == 0
    assert sorted(os.listdir(tmp_path / "png")) == ["a.jpg.png", "a.png"]
    assert (tmp_path / "png" / "a.png").read_bytes() == (tmp_path / "same" / "a.png").read_bytes()
    for q in ("50", "95"):
        assert _run(src, tmp_path / f"q{q}", weights, "--format", "jpg", "--quality", q) == 0
        assert sorted(os.listdir(tmp_path / f"q{q}")) == ["a.jpg", "a.png.jpg"]
    assert (tmp_path / "q95" / "a.jpg").read_bytes() == (tmp_path / "same" / "a.jpg").read_bytes()  # 95: today's
    for name in ("a.jpg", "a.png.jpg"):
        assert os.path.getsize(tmp_path / "q50" / name) < os.path.getsize(tmp_path / "q95" / name)
    assert _run(src, tmp_path / "webp", weights, "--format", "webp") == 0
    assert sorted(os.listdir(tmp_path / "webp")) == ["a.jpg.webp", "a.png.webp"]  # neither input is a WebP
    for name in ("a.png.webp", "a.jpg.webp"):
        with Image.open(tmp_path / "webp" / name) as im:
            assert im.format == "WEBP" and im.size == (64, 64)
            lossless = {"a.png.webp": "a.png", "a.jpg.webp": "a.jpg.png"}[name]
            ref = np.asarray(Image.open(tmp_path / "png" / lossless).convert("RGB"))
            assert np.abs(np.asarray(im.convert("RGB")).astype(int) - ref).mean() < 4


def test_bit_depth_16_writes_the_float_output_rounded_to_16_bits(tmp_path, dce_weights):
    import cv2

    from inference import enhance_batch
    from utils.image_io import to_uint16

    weights, model = dce_weights
    src = tmp_path / "in"
    src.mkdir()
    deep = (np.random.default_rng(0).random((18, 22, 3)) * 20000).astype(np.uint16)
    cv2.imwrite(str(src / "deep.png"), deep[..., ::-1])
    assert _run(src, tmp_path / "out", weights, "--bit_depth", "16") == 0
    got = cv2.imread(str(tmp_path / "out" / "deep.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    x = read_image_tensor(str(src / "deep.png"))[None].contiguous(memory_format=torch.channels_last)
    y = enhance_batch(model.to(memory_format=torch.channels_last), x)[0]
    assert got.dtype == np.uint16 and np.array_equal(got, to_uint16(y))
    assert _run(src, tmp_path / "8", weights) == 0  # default: 8 bits, as before
    assert np.array_equal(np.asarray(Image.open(tmp_path / "8" / "deep.png")), to_uint8(y))


@pytest.mark.parametrize("flags, message", [
    (["--bit_depth", "16", "--format", "jpg"], "--bit_depth 16 needs a PNG/TIFF output"),
    (["--bit_depth", "16", "--denoise", "1"], "--denoise works on 8-bit outputs"),
    (["--quality", "80", "--format", "png"], "--quality applies to jpg/webp"),
    (["--quality", "0"], "--quality 0"),
    (["--bit_depth", "16"], r"--bit_depth 16: .*b\.jpg would be written as \.jpg"),
])
def test_output_flag_errors_are_one_line(tmp_path, dce_weights, flags, message):
    weights, _ = dce_weights
    src = tmp_path / "in"
    write_rgb(src / "a.png", 8, 8, seed=1)
    write_rgb(src / "b.jpg", 8, 8, seed=1)
    with pytest.raises(UserError, match=message):
        _run(src, tmp_path / "out", weights, *flags)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")

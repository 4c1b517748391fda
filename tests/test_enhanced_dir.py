"""lowlight_test.py --enhanced_dir D: another method's outputs scored as ori and refined by the memory as mem."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import lowlight_test
from helpers import make_lol_v1, random_dce, run_cli_in_process, write_rgb
from lowlight_model import load_enhancer
from network.memory import ExternalMemory, query
from network.query import build_query


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(random_dce(std=0.05).state_dict(), path)
    return str(path)


def other_method(pairs, root, ext=".png"):
    """``root`` holding a made-up enhancer's outputs, named as the low images."""
    for i, low in enumerate(sorted((pairs / "low").iterdir())):
        img = np.asarray(Image.open(low), np.float32)
        out = np.clip(img * 3.5 + 10 * i, 0, 255).astype(np.uint8)
        root.mkdir(parents=True, exist_ok=True)
        Image.fromarray(out).save(root / (low.stem + ext))
    return root


def by_hand(d8: np.ndarray, value: torch.Tensor) -> np.ndarray:
    """The reference's refinement (pooling 1) of the 8-bit image ``d8`` with the memory value (3,), rounded."""
    r = torch.from_numpy(np.array(d8)).permute(2, 0, 1)[None].float() / 255
    m_out, m_mem = r.mean((2, 3), keepdim=True), value.reshape(1, 3, 1, 1)
    w_out, w_mem = torch.softmax(torch.stack([m_out, m_mem]), 0)
    y = torch.clamp(r * (w_out + w_mem * m_mem / m_out), 0, 1)
    return np.round(y[0].permute(1, 2, 0).numpy() * np.float32(255)).astype(np.uint8)


def run(*argv):
    return lowlight_test.main([*map(str, argv), "--device", "cpu", "--no_lpips"])


def test_ori_is_d_as_given_and_mem_its_refinement_with_a_resnet_memory(tmp_path, fake_torch_home):
    pairs = make_lol_v1(tmp_path / "eval", n=3)
    d = other_method(pairs, tmp_path / "D")
    mem = ExternalMemory(mem_size=2, key_dim=512, value_dim=3)
    mem.value.copy_(torch.tensor([[0.45, 0.5, 0.55]] * 2))  # every query reads the same value
    torch.save(mem.to_checkpoint(1), tmp_path / "mem.pth")
    out = tmp_path / "res"
    # --weights is not read: a ResNet-18 memory needs no enhancer, and D replaces its outputs
    assert run("--input_dir", pairs, "--result_dir", out, "--weights", tmp_path / "absent.pth",
               "--mem_weights", tmp_path / "mem.pth", "--enhanced_dir", d, "--save_images") == 0
    rows = {r["image"]: r for r in csv.DictReader(open(out / "results.csv"))}
    for name in ("1.png", "2.png", "3.png"):
        d8 = np.asarray(Image.open(d / name))
        gt = np.asarray(Image.open(pairs / "high" / name))
        mem8 = by_hand(d8, mem.value[0])
        assert np.array_equal(np.asarray(Image.open(out / "ori" / name)), d8)
        assert np.array_equal(np.asarray(Image.open(out / "mem" / name)), mem8)
        assert float(rows[name]["ori_psnr"]) == pytest.approx(peak_signal_noise_ratio(gt, d8, data_range=255), abs=1e-5)
        assert float(rows[name]["ori_ssim"]) == pytest.approx(
            structural_similarity(gt, d8, channel_axis=-1, data_range=255), abs=1e-5)
        assert float(rows[name]["mem_psnr"]) == pytest.approx(peak_signal_noise_ratio(gt, mem8, data_range=255),
                                                              abs=1e-5)
    report = (out / "result.txt").read_text()
    assert f"enhanced_dir: {d}" in report and "ori: the 8-bit images as given" in report


def test_an_enhancer_memory_queries_the_low_image_with_its_own_enhancer(tmp_path, weights):
    """The query of an "enhancer" memory comes from --weights on the low image (D's image cannot give it):
    a memory whose keys are the queries of pairs 1 and 2 gives each pair its own slot's value."""
    pairs = make_lol_v1(tmp_path / "eval", n=2)
    d = other_method(pairs, tmp_path / "D", ext=".jpg")  # any image format, matched by stem
    net = load_enhancer("auto", weights)
    qnet = build_query("enhancer", net)
    lows = [torch.from_numpy(np.asarray(Image.open(pairs / "low" / f"{i}.png"), np.float32) / 255).permute(2, 0, 1)
            for i in (1, 2)]
    keys = torch.cat([query(qnet, x[None]) for x in lows])
    assert float(keys[0] @ keys[1]) < 0.9999  # two distinct queries
    mem = ExternalMemory(mem_size=2, key_dim=keys.shape[1], value_dim=3, query_kind="enhancer")
    mem.key.copy_(keys)
    mem.value.copy_(torch.tensor([[0.2, 0.3, 0.4], [0.7, 0.6, 0.5]]))
    torch.save(mem.to_checkpoint(1), tmp_path / "mem.pth")
    out = tmp_path / "res"
    assert run("--input_dir", pairs, "--result_dir", out, "--weights", weights, "--mem_weights", tmp_path / "mem.pth",
               "--enhanced_dir", d, "--save_images") == 0
    for i in (1, 2):
        d8 = np.asarray(Image.open(d / f"{i}.jpg").convert("RGB"))
        assert np.array_equal(np.asarray(Image.open(out / "mem" / f"{i}.png")), by_hand(d8, mem.value[i - 1])), i
    assert "query enhancer: " + weights in (out / "result.txt").read_text()


@pytest.mark.parametrize("problem", ["missing", "size", "not_a_folder", "denoise", "curve_scale", "folder_mode"])
def test_bad_enhanced_dirs_are_one_line(tmp_path, weights, problem):
    pairs = make_lol_v1(tmp_path / "eval", n=2)
    d = other_method(pairs, tmp_path / "D")
    argv = ["--input_dir", pairs, "--result_dir", tmp_path / "res", "--weights", weights, "--enhanced_dir", d]
    if problem == "missing":
        (d / "2.png").unlink()
        needle = "no image named 2.* for the pair"
    elif problem == "size":
        write_rgb(d / "2.png", 20, 20, seed=0)
        needle = f"{d / '2.png'} is 20x20"
    elif problem == "not_a_folder":
        argv[-1], needle = tmp_path / "nope", "--enhanced_dir " + str(tmp_path / "nope")
    elif problem == "denoise":
        argv += ["--denoise", "1"]
        needle = "--denoise changes the enhancer's output"
    elif problem == "curve_scale":
        argv += ["--curve_scale", "4"]
        needle = "--curve_scale changes the enhancer's output"
    else:
        argv[1], needle = pairs / "low", "--enhanced_dir applies only to paired evaluation"
    lpips = [] if problem == "folder_mode" else ["--no_lpips"]
    code, lines, _ = run_cli_in_process(lowlight_test.main, [*map(str, argv), "--device", "cpu", *lpips])
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "res" / "results.csv").exists()

"""evaluation.py: one evaluation path; each method's 8-bit conversion is the reference test script's; paired
evaluation quantised and named as the reference test script."""
from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation import TEST, evaluate_paired
from helpers import write_rgb
from metrics import quantise
from network.memory import ExternalMemory


#: the reference's conversions of an (H, W, 3) float32 array in [0, 1]: ori truncated, mem np.round (ties
#: to even), the GT-mean oracle np.round as its memory validation
REFERENCE = {"ori": lambda a: (a * 255.0).astype(np.uint8),
             "mem": lambda a: np.round(a * 255.0).astype(np.uint8),
             "gt_mean_oracle": lambda a: np.round(a * 255.0).astype(np.uint8)}


@pytest.mark.parametrize("method", sorted(REFERENCE))
def test_each_method_is_converted_as_the_reference(method):
    ties = (torch.tensor([0.5, 1.5, 2.5, 127.5, 254.5]) / 255).view(1, 1, 5).expand(3, 1, 5)
    expected = {"ori": [0, 1, 2, 127, 254], "mem": [0, 2, 2, 128, 254], "gt_mean_oracle": [0, 2, 2, 128, 254]}
    assert quantise(ties, TEST.quantise[method])[0, :, 0].tolist() == expected[method]
    torch.manual_seed(0)
    y = torch.rand(3, 6, 5)
    ref = REFERENCE[method](y.numpy().transpose(1, 2, 0))
    assert np.array_equal(quantise(y, TEST.quantise[method]), ref)


class _BlackPairs:
    """One pair whose low image and ground truth are black; the 'enhancer' adds a constant."""

    gt_names = ["1.png"]

    def __init__(self, h=8, w=9):
        self.gt = torch.zeros(3, h, w)

    def __len__(self):
        return 1

    def load(self, i):
        return self.gt.clone(), self.gt


class _Add(torch.nn.Module):
    def __init__(self, v):
        super().__init__()
        self.v = v

    def forward(self, x):
        return x + self.v


def test_one_path_serves_the_test_protocol_and_both_validations():
    """0.5/255 is 0 rounded half to even (validation) and truncated (test), 1 with save_image's rounding;
    the enhancer validation takes PSNR on the float image (20·log10(255/0.5)); figures by hand."""
    import math

    from evaluation import ENHANCER_VALIDATION, TEST, VALIDATION, evaluate, mean_psnr_ssim

    pairs = _BlackPairs()
    tie, above = _Add(0.5 / 255), _Add(1.5 / 255)
    assert mean_psnr_ssim(evaluate(tie, pairs, policy=VALIDATION), "ori")[0] == math.inf
    assert mean_psnr_ssim(evaluate(above, pairs, policy=VALIDATION), "ori")[0] == pytest.approx(20 * math.log10(255 / 2))
    assert mean_psnr_ssim(evaluate(above, pairs, policy=TEST), "ori")[0] == pytest.approx(20 * math.log10(255))
    p, s = mean_psnr_ssim(evaluate(tie, pairs, policy=ENHANCER_VALIDATION), "ori")
    assert p == pytest.approx(20 * math.log10(255 / 0.5), abs=1e-4) and s == pytest.approx(1.0)
    raw = [torch.full((1, 3, 8, 9), 1.5 / 255)]  # given outputs are used as they are, the model is not run
    assert mean_psnr_ssim(evaluate(None, pairs, policy=VALIDATION, raw=raw), "ori")[0] == pytest.approx(
        20 * math.log10(255 / 2))


class _SizedPairs:
    """Grey ground truths (8-bit level 100) of the given (H, W) sizes."""

    def __init__(self, *sizes):
        self.gts = [torch.full((3, h, w), 100 / 255) for h, w in sizes]
        self.gt_names = [f"{h}x{w}.png" for h, w in sizes]

    def __len__(self):
        return len(self.gts)

    def load(self, i):
        return self.gts[i].clone(), self.gts[i]


def test_pairs_smaller_than_ssim_or_lpips_need_are_scored_without_them_and_named(capsys):
    """3x2: PSNR only; 20x40: no LPIPS (AlexNet needs 31 pixels); 32x33: everything. Ten levels too bright:
    PSNR 10·log10(255²/10²) by hand, whatever the size."""
    import math

    from evaluation import TEST, evaluate
    from metrics import build_lpips

    pairs = _SizedPairs((3, 2), (20, 40), (32, 33))
    raw = [(g + 10.3 / 255)[None] for g in pairs.gts]  # truncated to level 110
    acc = evaluate(None, pairs, policy=TEST, raw=raw, lpips=build_lpips(pretrained=False))["ori"]
    assert acc.values["psnr"] == [pytest.approx(10 * math.log10(255 ** 2 / 100))] * 3
    ssim, lp = acc.values["ssim"], acc.values["lpips"]
    assert math.isnan(ssim[0]) and not math.isnan(ssim[1]) and not math.isnan(ssim[2])
    assert math.isnan(lp[0]) and math.isnan(lp[1]) and not math.isnan(lp[2])
    assert acc.mean()["lpips"] == lp[2] and acc.mean()["ssim"] == pytest.approx((ssim[1] + ssim[2]) / 2)
    notes = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert notes == ["note: 3x2.png is 2x3, too small for SSIM and LPIPS (SSIM needs 7, LPIPS needs 31 pixels a "
                     "side): not computed for this pair",
                     "note: 20x40.png is 40x20, too small for LPIPS (LPIPS needs 31 pixels a side): not computed "
                     "for this pair"]
    assert list(evaluate(None, _SizedPairs((3, 2)), policy=TEST, raw=raw[:1])["ori"].names) == ["psnr"]


def test_the_memory_refines_and_the_oracle_rescales_with_the_ground_truth():
    """A memory whose one value is the GT's mean: refine and oracle reach the GT of a flat image exactly."""
    from evaluation import VALIDATION, evaluate
    from network.memory import ExternalMemory

    class Flat(_BlackPairs):
        def load(self, i):
            return torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.4)

    mem = ExternalMemory(mem_size=1, key_dim=4, value_dim=3)
    mem.value.fill_(0.4)
    acc = evaluate(_Add(0.1), Flat(), mem, VALIDATION, queries=torch.ones(1, 4), oracle=True)
    assert sorted(acc) == ["gt_mean_oracle", "mem", "ori"]
    assert acc["gt_mean_oracle"].mean()["psnr"] == float("inf")
    assert acc["ori"].mean()["psnr"] == pytest.approx(20 * math.log10(255 / 51))  # 0.2 against 0.4
    with pytest.raises(ValueError, match="queries or query_net"):
        evaluate(_Add(0.1), Flat(), mem)


class _Gain(torch.nn.Module):
    """A stand-in enhancer whose output exceeds 1 on bright pixels: r = 6·x."""

    arch = "dce"

    def forward(self, x):
        return 6.0 * x


def test_evaluation_quantises_and_names_outputs_as_the_reference_test_script(tmp_path, fake_torch_home):
    """issue 6.4: ori truncated, mem rounded (metrics on those arrays), memory pooling the unclamped output,
    outputs named after the ground-truth files (LOL-v2 real), pooling read from the memory file."""
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

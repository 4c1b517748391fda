"""evaluation.py: paired evaluation quantised and named as the reference test script."""
from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation import evaluate_paired
from helpers import write_rgb
from network.memory import ExternalMemory


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

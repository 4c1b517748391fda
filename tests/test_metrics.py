"""Metrics (SPEC §7): 8-bit PSNR/SSIM as scikit-image, save_image rounding, LPIPS from cached AlexNet, SSIM loss."""
import math
import os

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from metrics import (MetricAccumulator, build_lpips, lpips_available, lpips_distance, psnr, ssim, ssim_loss,
                     )
from utils.image_io import to_uint8
from utils.errors import UserError


def test_to_uint8_rounding_matches_save_image_formula():
    x = torch.tensor([0.0, 1 / 510 - 1e-4, 1 / 510 + 1e-4, 0.5, 0.998, 1.0, 1.2, -0.1]).view(1, 1, 8).expand(3, 1, 8)
    out = to_uint8(x)
    assert out.shape == (1, 8, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 0, 1, 128, 254, 255, 255, 0]
    torch.manual_seed(0)
    img = torch.rand(3, 5, 7)
    ref = img.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    assert np.array_equal(to_uint8(img), ref)
    assert np.array_equal(to_uint8(img.unsqueeze(0)), ref)


def test_psnr_ssim_equal_skimage():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b) == peak_signal_noise_ratio(a, b, data_range=255)
    assert ssim(a, b) == structural_similarity(a, b, channel_axis=-1, data_range=255)
    assert ssim(a, a) == pytest.approx(1.0)
    # float tensors are quantised first
    t = torch.from_numpy(a).permute(2, 0, 1).float() / 255
    assert psnr(t, b) == psnr(a, b)


def test_psnr_hand_computed():
    a = np.zeros((10, 10, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 30                                    # MSE = 900 / 300 = 3
    assert psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 3), abs=1e-10)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        psnr(a.astype(np.float32), b)


def test_lpips_with_fake_alexnet(fake_torch_home):
    assert lpips_available()
    model = build_lpips("cpu", pretrained=True)
    state = torch.load(fake_torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth", weights_only=True)
    trunk = model.net
    pairs = {"slice1.0": 0, "slice2.3": 3, "slice3.6": 6, "slice4.8": 8, "slice5.10": 10}
    for name, idx in pairs.items():
        for t in ("weight", "bias"):
            assert torch.equal(trunk.get_submodule(name).get_parameter(t), state[f"features.{idx}.{t}"])
    # calibrated linear layers from the lpips package's file
    import lpips
    shipped = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "alex.pth"),
                         map_location="cpu", weights_only=True)
    assert torch.equal(model.lin0.model[1].weight, shipped["lin0.model.1.weight"])
    assert not any(p.requires_grad for p in model.parameters())
    torch.nn.Sequential(model).train()
    assert not model.training and all(not m.training for m in model.modules())

    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        d_same = lpips_distance(model, a, a)
        d_ab, d_ba = lpips_distance(model, a, b), lpips_distance(model, b, a)
        d_single = lpips_distance(model, a[0], b[0])
    assert d_same.shape == (2,) and torch.all(d_same.abs() < 1e-7)
    assert torch.allclose(d_ab, d_ba, atol=1e-6) and torch.all(d_ab > 0)
    assert torch.allclose(d_single, d_ab[:1], atol=1e-6)
    # usable as a loss: gradients reach the input
    x = a[:1].clone().requires_grad_(True)
    lpips_distance(model, x, b[:1]).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_lpips_missing_alexnet():
    assert not lpips_available()
    with pytest.raises(UserError, match="alexnet-owt-7be5be79.pth"):
        build_lpips("cpu")
    model = build_lpips("cpu", pretrained=False)           # random trunk needs no file
    assert not model.training


def test_ssim_loss():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    y = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = ssim_loss(x, y)
    assert loss.dim() == 0 and loss.item() > 0.5
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_metric_accumulator():
    acc = MetricAccumulator(["psnr", "ssim"])
    acc.add("1.png", psnr=20.0, ssim=0.5)
    acc.add("2.png", psnr=30.0, ssim=0.7, lpips=0.1)
    assert len(acc) == 2
    m = acc.mean()
    assert m["psnr"] == 25.0 and m["ssim"] == pytest.approx(0.6) and m["lpips"] == pytest.approx(0.1)
    assert math.isnan(acc.rows()[0]["lpips"])
    text = acc.format()
    assert text.splitlines()[-1].startswith("mean  psnr=25.0000 ssim=0.6000")

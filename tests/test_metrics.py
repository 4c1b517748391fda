"""The metrics package: 8-bit PSNR/SSIM as scikit-image, save_image rounding, LPIPS from cached AlexNet (image,
lpips), the colour and exposure metrics of real photos (colour, exposure), streaming mIoU (segmentation)."""
import math
import os

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from metrics import (MetricAccumulator, StreamSegMetrics, brightness, build_lpips, clipped_fraction, colour_shift,
                     lpips_available, lpips_distance, noise_sigma, pixel_colour_shift, pixel_proportions,
                     proportion_shift, proportions, psnr, psnr_float, quantise, ssim, tone_shift)
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


def test_quantise_truncates_or_rounds():
    y = torch.tensor([0.0, 0.5, 0.999, 1.2, -0.1, 3.5 / 255]).view(1, 1, 6).expand(3, 1, 6)
    assert quantise(y, "trunc")[0, :, 0].tolist() == [0, 127, 254, 255, 0, 3]
    assert quantise(y, "round")[0, :, 0].tolist() == [0, 128, 255, 255, 0, 4]
    torch.manual_seed(1)
    y = torch.rand(1, 3, 5, 7) * 1.2 - 0.1
    ref = (torch.clamp(y, 0, 1).numpy().squeeze().transpose((1, 2, 0)) * 255.0).astype(np.uint8)  # the reference
    assert np.array_equal(quantise(y, "trunc"), ref)


def test_quantise_round_half_even_as_numpy():
    """Issue 22.11: the reference's np.round(y·255) rounds ties to even; "round" (save_image) rounds them up."""
    ties = (torch.arange(255, dtype=torch.float32) + 0.5) / 255  # y·255 is exactly k + 0.5 in float32
    y = ties.view(1, 1, 255).expand(3, 1, 255)
    even = quantise(y, "round_half_even")[0, :, 0].tolist()
    assert even[:6] == [0, 2, 2, 4, 4, 6] and even[-2:] == [254, 254]  # 0.5→0, 1.5→2, 2.5→2, ..., 254.5→254
    assert quantise(y, "round")[0, :, 0].tolist()[:6] == [1, 2, 3, 4, 5, 6]
    torch.manual_seed(2)
    y = torch.rand(1, 3, 5, 7) * 1.2 - 0.1
    mem = torch.clamp(y, 0, 1).numpy().squeeze().transpose((1, 2, 0))
    assert np.array_equal(quantise(y, "round_half_even"), np.round(mem * 255.0).astype(np.uint8))  # the reference
    # 8-bit ground truth read as k/255 comes back exactly, whatever the mode (the reference truncates it)
    gt = (torch.arange(256, dtype=torch.float32) / 255).view(1, 1, 256).expand(3, 1, 256)
    for mode in ("round", "round_half_even", "trunc"):
        assert quantise(gt, mode)[0, :, 0].tolist() == list(range(256)), mode
    with pytest.raises(ValueError, match="round_half_even"):
        quantise(y, "nearest")


def test_psnr_float_hand_computed():
    a = torch.zeros(3, 4, 5)
    assert psnr_float(a, a + 0.1) == pytest.approx(20.0)
    assert psnr_float(a, a) == math.inf


def test_lpips_normalize_flag():
    model = build_lpips("cpu", pretrained=False)
    torch.manual_seed(2)
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        raw = lpips_distance(model, a, b, normalize=False)
        assert torch.allclose(raw, model(a, b).reshape(2))                       # [0, 1] as they are
        assert torch.allclose(lpips_distance(model, a, b), model(2 * a - 1, 2 * b - 1).reshape(2), atol=1e-6)
        assert (raw - lpips_distance(model, a, b)).abs().max() > 1e-4


# colour and exposure of real photos (metrics.colour, metrics.exposure) -----------------------------

def test_proportions_and_shift_in_torch_hand_values_eps_and_black():
    """The one definition the numpy metrics and L_balance share: x / (Σx + eps) along ``dim``, 1/C where
    that is 0, and Σ|p_out − p_in|."""
    m = torch.tensor([[2.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert proportions(m).tolist() == [[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]
    assert proportions(m, eps=4.0).tolist() == [[0.25, 0.125, 0.125], [0.0, 0.0, 0.0]]
    assert proportions(m.T, dim=0)[:, 0].tolist() == [0.5, 0.25, 0.25]
    assert proportion_shift(proportions(m)[1], proportions(m)[0]).item() == pytest.approx(1 / 6 + 1 / 12 + 1 / 12)
    assert proportion_shift(proportions(m), proportions(m.flip(0)), dim=1).shape == (2,)


def test_brightness_is_the_mean_in_unit_range():
    img = np.array([[[0, 255, 51]], [[102, 0, 0]]], np.uint8)
    assert brightness(img) == pytest.approx((255 + 51 + 102) / 6 / 255)


def test_clipped_fraction_counts_pixels_with_any_channel_at_254():
    img = np.zeros((4, 5, 3), np.uint8)
    img[0, 0] = (254, 0, 0)      # counts (one channel is enough)
    img[0, 1] = (255, 255, 255)  # counts once, not three times
    img[1, 1] = (253, 253, 253)  # does not count
    assert clipped_fraction(img) == pytest.approx(2 / 20)


def test_colour_shift_by_hand():
    grey = np.full((2, 2, 3), 100, np.uint8)
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    assert colour_shift(grey, grey * 2) == 0.0  # brightening keeps the proportions
    assert colour_shift(grey, red) == pytest.approx(4 / 3)  # |1/3-1| + 1/3 + 1/3
    warm = np.zeros((1, 1, 3), np.uint8) + np.array([120, 60, 20], np.uint8)  # proportions .6 .3 .1
    assert colour_shift(warm, grey[:1, :1]) == pytest.approx(abs(0.6 - 1 / 3) + abs(0.3 - 1 / 3) + abs(0.1 - 1 / 3))


def test_pixel_colour_shift_by_hand_and_against_the_image_level_shift():
    """Per pixel: a gain keeps it 0; a pixel turned grey counts its own distance; black pixels are grey.
    Brightening the dark one of two differently coloured pixels moves the image-level proportions but
    no pixel's colour."""
    warm = np.array([[[120, 60, 20], [30, 30, 30]]], np.uint8)  # (.6 .3 .1) and grey
    assert pixel_colour_shift(warm, warm * 2) == 0.0  # a gain: every pixel keeps its proportions
    grey = np.array([[[60, 60, 60], [30, 30, 30]]], np.uint8)
    d = abs(0.6 - 1 / 3) + abs(0.3 - 1 / 3) + abs(0.1 - 1 / 3)
    assert pixel_colour_shift(warm, grey) == pytest.approx(d / 2)  # one of two pixels changed
    black = np.zeros((1, 2, 3), np.uint8)
    assert pixel_colour_shift(black, grey) == 0.0
    lifted = np.array([[[120, 60, 20], [150, 150, 150]]], np.uint8)  # the grey pixel ×5, the warm one kept
    assert pixel_colour_shift(warm, lifted) == 0.0
    # image level: (150,90,50)/290 against (270,210,170)/650
    expected = sum(abs(a / 290 - b / 650) for a, b in ((150, 270), (90, 210), (50, 170)))
    assert colour_shift(warm, lifted) == pytest.approx(expected) and expected > 0.1
    assert tone_shift(warm, lifted) == pytest.approx(expected)  # all of it comes from the tone
    orange = np.array([[[90, 60, 30], [30, 30, 30]]], np.uint8)  # → grey keeps each pixel's sum: no tone part
    assert tone_shift(orange, grey) == pytest.approx(0.0, abs=1e-12) and colour_shift(orange, grey) > 0.1
    half = np.array([[[120, 60, 20], [15, 15, 15]]], np.uint8)  # grey pixel darker: (150,90,50) → (135,75,35)
    assert tone_shift(warm, half) == pytest.approx(
        sum(abs(a / 290 - b / 245) for a, b in ((150, 135), (90, 75), (50, 35))))
    q = pixel_proportions(warm)  # what score_real passes once per photo
    assert tone_shift(warm, half, q) == tone_shift(warm, half)
    assert pixel_colour_shift(warm, grey, q) == pixel_colour_shift(warm, grey)


def test_noise_sigma_recovers_gaussian_noise_and_ignores_flat_and_ramp():
    rng = np.random.default_rng(0)
    flat = np.full((200, 200, 3), 128.0)
    assert noise_sigma(flat.astype(np.uint8)) == 0.0
    ramp = np.broadcast_to(np.arange(200, dtype=np.float64)[None, :, None], (200, 200, 3)).astype(np.uint8)
    assert noise_sigma(ramp) == pytest.approx(0.0, abs=1e-9)  # M annihilates linear ramps
    noisy = np.clip(flat + rng.normal(0, 5.0, (200, 200, 1)), 0, 255).astype(np.uint8)  # same noise in R, G, B
    assert noise_sigma(noisy) == pytest.approx(5.0, rel=0.08)


# streaming mIoU (metrics.segmentation) ------------------------------------------------------------

def test_stream_seg_metrics_hand_computed():
    metric = StreamSegMetrics(n_classes=3)
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])  # predictions on 255 pixels are ignored
    metric.update(label[None], pred[None])
    metric.update(torch.tensor([[255, 1]]), torch.tensor([[1, 1]]))  # tensors too; one more correct class-1 pixel
    # confusion (rows = truth): class0 [1,1,0], class1 [0,3,0], class2 [1,0,1]
    assert metric.confusion_matrix.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    res = metric.get_results()
    iou = [1 / (2 + 2 - 1), 3 / (3 + 4 - 3), 1 / (2 + 1 - 1)]
    assert res["Class IoU"] == pytest.approx(dict(enumerate(iou)))
    assert res["Mean IoU"] == pytest.approx(sum(iou) / 3)
    assert res["Overall Acc"] == pytest.approx(5 / 7)
    assert res["Mean Acc"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    metric.reset()
    assert metric.confusion_matrix.sum() == 0


def test_stream_seg_metrics_ignores_absent_classes_in_mean():
    metric = StreamSegMetrics(n_classes=19)
    metric.update(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 4, dtype=torch.long))
    res = metric.get_results()
    assert res["Mean IoU"] == 1.0 and np.isnan(res["Class IoU"][5])


# (6) model names and flags --------------------------------------------------------------------------

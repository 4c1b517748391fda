"""losses.py, the training objectives: SCLLoss (SCL-LLE's total) and SupervisedLoss (EMNet's supervised stage)."""
from __future__ import annotations

import pytest
import torch

from helpers import fit_fixed_batch
from losses import LOSS_WEIGHTS, SCLLoss, SupervisedLoss
from lowlight_model import build_enhancer, enhance, enhance_net_nopool, weights_init


@pytest.mark.parametrize("arch", ["dce", "emnet"])
def test_supervised_loss_decreases_on_a_fixed_batch(fake_torch_home, arch):
    crit = SupervisedLoss(ssim=1.0, lpips=1.0)
    torch.manual_seed(0)
    gt = torch.rand(2, 3, 32, 32) * 0.6 + 0.2
    low = gt * 0.2
    totals = fit_fixed_batch(build_enhancer(arch, 8), lambda m: crit(enhance(m, low), gt), {"ssim", "lpips"}, 12)
    assert totals[-1] < totals[0] * 0.9, totals


def test_supervised_loss_clamps_the_output_and_feeds_lpips_unscaled_images(fake_torch_home):
    """As the reference (issue 6.2): clamp to [0,1] before the loss (no gradient outside); LPIPS on the
    [0,1] images (lpips normalize=False) unless --lpips_normalize."""
    y = torch.full((1, 3, 4, 4), 0.5)
    y[..., 0, 0], y[..., 0, 1] = 1.5, -0.3
    y.requires_grad_(True)
    gt = torch.full((1, 3, 4, 4), 0.6)
    l1 = SupervisedLoss(ssim=0, lpips=0, l1=1.0)(y, gt)["l1"]
    assert l1.item() == pytest.approx((14 * 0.1 + 0.4 + 0.6) / 16)  # |1 − 0.6|, |0 − 0.6| after the clamp
    l1.backward()
    expected = torch.full((1, 3, 4, 4), -1 / 48)
    expected[..., 0, 0] = expected[..., 0, 1] = 0.0
    assert torch.allclose(y.grad, expected)

    torch.manual_seed(0)
    y, gt = torch.rand(2, 3, 32, 32) * 1.4 - 0.2, torch.rand(2, 3, 32, 32)
    for normalize in (False, True):
        crit = SupervisedLoss(ssim=0, lpips=1.0, lpips_normalize=normalize)
        with torch.no_grad():
            got = crit(y, gt)["lpips"]
            scale = (lambda t: 2 * t - 1) if normalize else (lambda t: t)
            assert got.item() == pytest.approx(crit.lpips(scale(y.clamp(0, 1)), scale(gt)).mean().item(), rel=1e-5)


def test_full_loss_decreases_on_a_fixed_batch(scl_data):
    from network.modeling import build_segmentation_model
    from utils.checkpoint import load_weights

    tmp, city, contrast, ckpt = scl_data
    from datasets.cityscapes import Cityscapes
    from datasets.contrast import ContrastSet

    torch.manual_seed(0)
    ds = Cityscapes(str(city), crop_size=32)
    images, labels = map(torch.stack, zip(*[ds[0], ds[1]]))
    P, Q, _ = ContrastSet(str(contrast), crop_size=32).sample(2, torch.Generator().manual_seed(0))
    seg = load_weights(build_segmentation_model("deeplabv3plus_mobilenet", 19, 16, False), str(ckpt))
    crit = SCLLoss({k: v for k, (v, _) in LOSS_WEIGHTS.items()}, seg_net=seg)
    model = enhance_net_nopool()
    model.apply(weights_init)

    def terms(m):
        _, E, A = m(images)
        return crit(images, E, A, labels, P, Q)

    totals = fit_fixed_batch(model, terms, {"tv", "color", "con", "feat", "percep", "segexp", "seg"}, 15)
    assert totals[-1] < totals[0] * 0.9, totals


def test_segmentation_gradient_reaches_enhancer_unless_detached(scl_data):
    from network.modeling import build_segmentation_model
    from utils.checkpoint import load_weights

    _, _, _, ckpt = scl_data
    seg = load_weights(build_segmentation_model("deeplabv3plus_mobilenet", 19, 16, False), str(ckpt))
    x = torch.rand(2, 3, 32, 32)
    y = torch.randint(0, 19, (2, 32, 32))
    for detach, expect in ((False, True), (True, False)):
        model = enhance_net_nopool()
        crit = SCLLoss({"seg": 1.0}, seg_net=seg, seg_detach=detach)
        _, E, A = model(x)
        loss = crit(x, E, A, y)["seg"]
        if loss.requires_grad:
            loss.backward()
        got = model.e_conv7.weight.grad is not None and model.e_conv7.weight.grad.abs().sum() > 0
        assert got == expect
        assert not seg.training


def test_channels_last_scl_step_matches_the_contiguous_reference_within_1e5(fake_torch_home):
    weights = {"tv": 200, "color": 8, "con": 10, "feat": 5, "percep": 1}
    g = torch.Generator().manual_seed(0)
    I, P, Q = (torch.rand(2, 3, 48, 48, generator=g) * s for s in (0.3, 1.0, 1.0))
    torch.manual_seed(0)
    model = enhance_net_nopool()
    model.apply(weights_init)
    crit = SCLLoss(weights)
    totals = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        model.to(memory_format=fmt)
        crit.vgg.to(memory_format=fmt)
        _, E, A = model(I.to(memory_format=fmt))
        terms = crit(I.to(memory_format=fmt), E, A, None, P.to(memory_format=fmt), Q.to(memory_format=fmt))
        totals[fmt] = {k: v.item() for k, v in terms.items()}
    crit.vgg.to(memory_format=torch.contiguous_format)
    ref, cl = totals[torch.contiguous_format], totals[torch.channels_last]
    assert set(ref) == set(weights)
    for k in ref:
        assert cl[k] == pytest.approx(ref[k], rel=1e-5, abs=1e-9), k

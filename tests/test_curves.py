"""network/curves.py and the curve control of Enhancer (--strength, --exposure)."""
from __future__ import annotations

import glob

import numpy as np
import pytest
import torch

from helpers import ROOT, SHARED, random_dce, requires_shared
from lowlight_model import enhance, load_enhancer
from metrics import brightness
from network.curves import apply_curves, solve_strength
from network.enhancer import Enhancer
from utils.errors import UserError
from utils.image_io import read_image_uint8, to_uint8


def _le_by_hand(x, r, s):
    """The eight LE steps written out, each map scaled by s and clamped to [-1, 1]."""
    y = x.clone()
    for i in range(8):
        a = (s * r[:, 3 * i:3 * i + 3]).clamp(-1, 1)
        y = y + a * (y ** 2 - y)
    return y


def test_apply_curves_matches_the_le_steps_and_the_network():
    torch.manual_seed(0)
    x, r = torch.rand(2, 3, 8, 9), torch.rand(2, 24, 8, 9) * 2 - 1
    for s in (0.0, 0.5, 1.0, 2.5):
        assert torch.allclose(apply_curves(x, r, torch.tensor([s, s])), _le_by_hand(x, r, s), atol=1e-6)
    assert torch.equal(apply_curves(x, r, 0.0), x)  # s = 0: the input
    net = random_dce()
    with torch.no_grad():
        assert torch.allclose(apply_curves(x, net.curve_maps(x)), net(x)[1], atol=1e-6)


def test_strength_one_is_bit_identical_and_strength_orders_brightness():
    torch.manual_seed(1)
    net = random_dce(std=0.2)
    x = torch.rand(1, 3, 32, 40) * 0.3
    with torch.no_grad():
        base = enhance(net, x)
        assert torch.equal(enhance(net, x, strength=1.0), base)
        e = Enhancer(net).set_curve_control(1.0)
        assert not e.controlled and torch.equal(e(x), base)
        outs = [enhance(net, x, strength=s) for s in (0.0, 0.5, 1.5)]
    assert torch.equal(outs[0], x)
    r = net.curve_maps(x).detach()
    assert torch.allclose(outs[1], _le_by_hand(x, r, 0.5), atol=1e-5)  # fused maps: within 1e-6 before the steps


def test_solve_strength_reaches_the_target_on_a_brightening_map():
    torch.manual_seed(2)
    x = torch.rand(3, 3, 64, 64) * 0.2
    r = -(torch.rand(3, 24, 64, 64) * 0.5 + 0.2)  # y + r(y² − y) with r < 0 brightens: brightness grows with s
    for target in (0.15, 0.3, 0.45):
        s = solve_strength(x, r, target)
        got = apply_curves(x, r, s).clamp(0, 1).mean(dim=(1, 2, 3))
        assert torch.allclose(got, torch.full_like(got, target), atol=2e-3)


def test_control_is_refused_for_emnet_and_bad_values():
    from network.emnet import EMNet

    with pytest.raises(UserError, match="EMNet has none"):
        Enhancer(EMNet(dim=2)).set_curve_control(exposure=0.4)
    with pytest.raises(UserError, match="--exposure 1.2"):
        Enhancer(random_dce()).set_curve_control(exposure=1.2)
    with pytest.raises(UserError, match="--strength -1"):
        Enhancer(random_dce()).set_curve_control(strength=-1)


@pytest.mark.slow
@requires_shared
def test_exposure_reaches_e_on_every_lime_photo_and_is_monotone():
    model = load_enhancer("auto", str(ROOT / "checkpoints" / "LLE_model.pth"), "cpu")
    photos = sorted(glob.glob(str(SHARED / "data" / "LIME" / "*")))
    assert len(photos) == 9
    for i, path in enumerate(photos):
        x = torch.from_numpy(read_image_uint8(path).transpose(2, 0, 1).copy()).float().div(255)[None]
        levels = (0.3, 0.4, 0.5, 0.6) if i == 0 else (0.3, 0.5)
        with torch.no_grad():
            got = [brightness(to_uint8(enhance(model, x, exposure=e)[0].clamp(0, 1))) for e in levels]
        assert np.allclose(got, levels, atol=0.01), (path, got)
        assert all(a < b for a, b in zip(got, got[1:])), (path, got)

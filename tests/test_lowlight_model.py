"""DCE-Net against an independent evaluation of the curve formula, and the official checkpoints."""
import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import COMPAT, requires_shared
from helpers import random_dce
from lowlight_model import build_enhancer, enhance, enhance_net_nopool, load_enhancer
from utils.errors import UserError


def _reference_curve(model, x):
    """Curve maps and curve iterations written out independently with F.conv2d."""
    p = {k: v for k, v in model.state_dict().items()}

    def conv(i, t):
        return F.conv2d(t, p[f"e_conv{i}.weight"], p[f"e_conv{i}.bias"], padding=1)

    x1 = conv(1, x).clamp_min(0)
    x2 = conv(2, x1).clamp_min(0)
    x3 = conv(3, x2).clamp_min(0)
    x4 = conv(4, x3).clamp_min(0)
    x5 = conv(5, torch.cat([x3, x4], 1)).clamp_min(0)
    x6 = conv(6, torch.cat([x2, x5], 1)).clamp_min(0)
    r = torch.tanh(conv(7, torch.cat([x1, x6], 1)))
    y = x.clone()
    outs = []
    for i in range(8):
        ri = r[:, 3 * i:3 * i + 3]
        y = y + ri * (y ** 2 - y)
        outs.append(y)
    return outs[3], outs[7], r


def test_parameter_count_and_keys():
    m = enhance_net_nopool()
    assert sum(p.numel() for p in m.parameters()) == 79416
    assert list(m.state_dict()) == [f"e_conv{i}.{t}" for i in range(1, 8) for t in ("weight", "bias")]


def test_forward_equals_curve_formula():
    m = random_dce()
    x = torch.rand(2, 3, 17, 23)
    with torch.no_grad():
        got = m(x)
        ref = _reference_curve(m, x)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-5)


def test_constant_curve_by_hand():
    """All weights 0 and conv7 bias atanh(0.5): every curve map is 0.5, so x -> x + 0.5(x² - x) eight times."""
    m = enhance_net_nopool()
    for p in m.parameters():
        p.data.zero_()
    m.e_conv7.bias.data.fill_(math.atanh(0.5))
    # by hand from x = 0.2: 0.12, 0.0672, 0.03585792, 0.018571855..., then four more steps
    expect, v = [], 0.2
    for _ in range(8):
        v = v + 0.5 * (v * v - v)
        expect.append(v)
    assert expect[:3] == pytest.approx([0.12, 0.0672, 0.03585792])
    with torch.no_grad():
        e1, e, r = m(torch.full((1, 3, 4, 5), 0.2))
    assert torch.allclose(r, torch.full_like(r, 0.5))
    assert torch.allclose(e1, torch.full_like(e1, expect[3])) and torch.allclose(e, torch.full_like(e, expect[7]))


@requires_shared
@pytest.mark.parametrize("name,sha", [("SCL-LLE.pth", "fc5aa74a"), ("Zero-DCE-Epoch99.pth", "a4395acb")])
def test_official_checkpoints_load(name, sha):
    path = COMPAT / name
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith(sha)
    m = load_enhancer("dce", str(path), torch.device("cpu"))
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(m.e_conv7.weight, raw["e_conv7.weight"])


@requires_shared
def test_official_scl_lle_outputs_match_golden():
    g = torch.load(COMPAT / "golden_vectors.pt")["dce_scl_lle"]
    m = load_enhancer("dce", str(COMPAT / "SCL-LLE.pth"), torch.device("cpu"))
    with torch.no_grad():
        e1, e, r = m(g["input"])
    torch.testing.assert_close(e1, g["enhance_image_1"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(e, g["enhance_image"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r, g["r"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(enhance(m, g["input"]), g["enhance_image"], atol=1e-5, rtol=1e-5)


def test_enhance_pads_and_crops():
    class Shape(torch.nn.Module):
        def forward(self, x):
            assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0
            return x * 2

    x = torch.rand(1, 3, 13, 21)
    torch.testing.assert_close(enhance(Shape(), x, multiple=8), x * 2)


def test_unknown_arch_lists_choices():
    with pytest.raises(UserError, match="dce, emnet"):
        build_enhancer("unet")


def test_load_enhancer_recognises_the_architecture(tmp_path):
    from network.emnet import EMNet

    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in EMNet(dim=8).state_dict().items()}},
               tmp_path / "e.pth")
    torch.save(enhance_net_nopool().state_dict(), tmp_path / "d.pth")
    m = load_enhancer("auto", str(tmp_path / "e.pth"), torch.device("cpu"))
    assert m.arch == "emnet" and m.patch_embed.proj.weight.shape[0] == 8
    assert load_enhancer("auto", str(tmp_path / "d.pth"), torch.device("cpu")).arch == "dce"
    with pytest.raises(UserError, match="missing keys"):
        load_enhancer("emnet", str(tmp_path / "d.pth"), torch.device("cpu"))
    torch.save({"x.weight": torch.zeros(1)}, tmp_path / "x.pth")
    with pytest.raises(UserError, match="not a checkpoint of a known enhancer"):
        load_enhancer("auto", str(tmp_path / "x.pth"), torch.device("cpu"))


def test_tiled_enhancement_equals_whole_image():
    from lowlight_model import enhance_tiled

    m = random_dce()
    x = torch.rand(1, 3, 45, 70)
    with torch.no_grad():
        whole = enhance(m, x)
        for tile in (16, 23, 64):
            torch.testing.assert_close(enhance_tiled(m, x, tile), whole, atol=1e-5, rtol=1e-5)  # float rounding only
        # too little context is not exact: the test can tell
        assert (enhance_tiled(m, x, 16, overlap=2) - whole).abs().max() > 1e-4

"""DCE-Net against an independent evaluation of the curve formula, and the official checkpoints."""
import copy
import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import COMPAT, random_dce, requires_shared
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
    assert torch.equal(m.net.e_conv7.weight, raw["e_conv7.weight"]) and m.state_dict().keys() == raw.keys()


@requires_shared
def test_official_scl_lle_outputs_match_golden():
    g = torch.load(COMPAT / "golden_vectors.pt")["dce_scl_lle"]
    m = load_enhancer("dce", str(COMPAT / "SCL-LLE.pth"), torch.device("cpu"))
    with torch.no_grad():
        e1, e, r = m.net(g["input"])
    torch.testing.assert_close(e1, g["enhance_image_1"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(e, g["enhance_image"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r, g["r"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(enhance(m, g["input"]), g["enhance_image"], atol=1e-5, rtol=1e-5)


def test_unknown_arch_lists_choices():
    with pytest.raises(UserError, match="dce, emnet"):
        build_enhancer("unet")


def test_load_enhancer_recognises_the_architecture(tmp_path):
    from network.emnet import EMNet

    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in EMNet(dim=8).state_dict().items()}},
               tmp_path / "e.pth")
    torch.save(enhance_net_nopool().state_dict(), tmp_path / "d.pth")
    m = load_enhancer("auto", str(tmp_path / "e.pth"), torch.device("cpu"))
    assert m.arch == "emnet" and m.net.patch_embed.proj.weight.shape[0] == 8
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


def test_uint8_input_is_enhanced_as_its_float_image_window_by_window(monkeypatch):
    """enhance/enhance_tiled on uint8 x give exactly the result for x / 255 in float32; tiled, only the
    windows are converted (enhance sees uint8 windows)."""
    import lowlight_model
    from network.enhancer import Enhancer

    m = random_dce()
    u = torch.randint(0, 256, (1, 3, 45, 70), dtype=torch.uint8)
    x = u.float() / 255
    seen, real = [], Enhancer.forward
    monkeypatch.setattr(Enhancer, "forward", lambda self, t: seen.append(t.dtype) or real(self, t))
    with torch.no_grad():
        assert torch.equal(lowlight_model.enhance(m, u), lowlight_model.enhance(m, x))
    seen.clear()
    with torch.no_grad():
        assert torch.equal(lowlight_model.enhance_tiled(m, u, 16), lowlight_model.enhance_tiled(m, x, 16))
    assert seen == [torch.uint8] * 15 + [torch.float32] * 15


def test_tiles_split_each_side_evenly_into_windows_of_one_shape(monkeypatch):
    """45x70 with tile 16: rows 3 tiles of 15, columns 5 tiles of 14, every window 31x30 (edge windows
    moved inwards, not cut), 15 windows; the result still equals the whole image."""
    import lowlight_model
    from network.enhancer import Enhancer

    m = random_dce()
    x = torch.rand(1, 3, 45, 70)
    shapes, real = [], Enhancer.forward
    monkeypatch.setattr(Enhancer, "forward", lambda self, t: shapes.append(tuple(t.shape[-2:])) or real(self, t))
    with torch.no_grad():
        out = lowlight_model.enhance_tiled(m, x, 16)
        whole = lowlight_model.enhance(m, x)
    shapes.pop()
    torch.testing.assert_close(out, whole, atol=1e-5, rtol=1e-5)
    assert shapes == [(31, 30)] * 15


def test_the_registry_owns_each_architectures_facts():
    """Issue 22 item 2: one record per architecture; enhance() pads to the record's multiple, widths follow it."""
    from network.registry import ARCHS, get_spec, spec_from_state, spec_of
    from utils.errors import UserError

    dce, emnet = get_spec("dce"), get_spec("emnet")
    assert (dce.size_multiple, dce.receptive_radius, dce.tileable, dce.channels_last) == (1, 7, True, True)
    assert (emnet.size_multiple, emnet.receptive_radius, emnet.tileable, emnet.channels_last) == (8, None, False, False)
    assert dce.curve_maps and not emnet.curve_maps and sorted(ARCHS) == ["dce", "emnet"]
    assert dce.build(16).e_conv1.out_channels == 16  # the width is honoured (it used to be ignored)
    assert spec_from_state(dce.build(16).state_dict()) == (dce, 16)
    assert spec_from_state(emnet.build(4).state_dict()) == (emnet, 4)
    assert spec_from_state({"foo.weight": torch.zeros(1)}) is None
    assert spec_of(emnet.build(4)) is emnet and spec_of(enhance_net_nopool()) is dce
    with pytest.raises(UserError, match="even width"):
        emnet.build(5)
    with pytest.raises(UserError, match="unknown enhancer 'x'"):
        get_spec("x")
    x = torch.rand(1, 3, 13, 21)
    m = emnet.build(4).eval()
    with torch.no_grad():  # padded to the multiple of 8, cropped back; EMNet alone refuses 13x21
        assert enhance(m, x).shape == x.shape
        with pytest.raises(ValueError, match="multiples of 8"):
            m(x)


def test_receptive_radius_is_exact():
    """Changing one pixel moves outputs exactly within receptive_radius of it, and no further."""
    m = random_dce(std=0.05).eval()  # small enough that tanh does not saturate
    m.relu = torch.nn.Identity()  # no dead units, so every path through the seven convolutions carries
    m.double()  # float64: the small change at the edge of the field stays above rounding
    x = torch.rand(1, 3, 31, 31, dtype=torch.float64)
    x2 = x.clone()
    x2[..., 15, 15] += 0.5
    with torch.no_grad():
        d = (m(x2)[1] - m(x)[1]).abs().amax(dim=(0, 1))
    from network.registry import get_spec

    r = get_spec("dce").receptive_radius
    rows, cols = torch.nonzero(d > 0, as_tuple=True)
    assert rows.min() == 15 - r and rows.max() == 15 + r and cols.min() == 15 - r and cols.max() == 15 + r


def test_final_image_equals_the_forward_up_to_float_rounding(monkeypatch):
    """The inference path (fused conv+activation on the CPU, e_conv5/6 split into two convolutions, e_conv7
    padded to 32 outputs, in-place curve steps in channels-last layout)
    does the same arithmetic: the curve maps agree with the reference layers to float rounding, the
    curve steps bit for bit, and unsupported dtypes fall back to the plain layers."""
    m = random_dce(std=0.05).eval()
    x = torch.rand(2, 3, 23, 37)
    with torch.inference_mode():
        ref, r_ref = m(x)[1], m.curve_maps(x)
        fused = m._fused_curve_maps(x)
        assert fused is not None and fused.shape == r_ref.shape and (fused - r_ref).abs().max() <= 1e-6
        assert (m._fused_curve_maps(x, split=False) - r_ref).abs().max() <= 1e-6  # concatenations kept
        assert (m.final_image(x) - ref).abs().max() <= 1e-6
        mc = copy.deepcopy(m).to(memory_format=torch.channels_last)
        fast = mc.final_image(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", torch.bfloat16):
            half = m.final_image(x)
        assert random_dce(std=0.05).double()._fused_curve_maps(x.double()) is None  # float64: the plain layers
        monkeypatch.setattr("network.dce._HAS_FUSED_CONV", False)
        assert torch.equal(m.final_image(x), ref)  # without the fused kernel: bit for bit
    assert (fast - ref).abs().max() <= 1e-6  # channels-last convolutions: float rounding at most
    assert half.dtype == torch.float32 and (half - ref).abs().max() <= 4e-3  # bf16 convolutions
    g = torch.rand(1, 3, 8, 8, requires_grad=True)
    m.final_image(g).sum().backward()  # with gradients it is the plain forward
    assert g.grad is not None


def test_messages_name_no_command_line_flags():
    from network.registry import get_spec

    with pytest.raises(UserError) as e:
        build_enhancer("unet")
    assert "--" not in str(e.value)
    with pytest.raises(UserError, match="--crop_size 100 is not a multiple of 8") as e:
        get_spec("emnet").check_crop(100, "--crop_size")
    assert "--arch" not in str(e.value)
    with pytest.raises(UserError, match="width 0: EMNet needs an even width"):
        build_enhancer("emnet", 0)


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    sd = enhance_net_nopool().state_dict()
    sd["e_conv7.bias"][3] = float("inf")
    torch.save(sd, tmp_path / "inf.pth")
    with pytest.raises(UserError, match="e_conv7.bias"):
        load_enhancer("auto", str(tmp_path / "inf.pth"), torch.device("cpu"))


def test_a_checkpoint_missing_its_signature_key_is_named_as_its_architecture(tmp_path):
    """probe ckpt_missingkey: a DCE-Net file without e_conv1.weight was 'not a checkpoint of a known
    enhancer; name --arch'; it is recognised by its other keys and the missing key is named."""
    sd = enhance_net_nopool().state_dict()
    del sd["e_conv1.weight"]
    torch.save(sd, tmp_path / "m.pth")
    with pytest.raises(UserError, match=r"does not match enhance_net_nopool: missing keys \[e_conv1.weight\]"):
        load_enhancer("auto", str(tmp_path / "m.pth"), torch.device("cpu"))
    torch.save({"x.weight": torch.zeros(1), "e_conv1.bias": torch.zeros(32)}, tmp_path / "y.pth")  # half: unknown
    with pytest.raises(UserError, match="not a checkpoint of a known enhancer"):
        load_enhancer("auto", str(tmp_path / "y.pth"), torch.device("cpu"))

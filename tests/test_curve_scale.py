"""network/curve_scale.py (--curve_scale): S = 1 unchanged, S > 1 against Zero-DCE++'s computation written
by hand, bands and tiles against one piece, the flag, the hub and the exporters against enhance()."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lowlight_test
from helpers import ROOT, random_dce, run_cli_in_process, write_rgb
from inference import _plan, enhance_batch
from lowlight_model import enhance
from network import curve_scale as cs
from network.enhancer import Enhancer
from utils.errors import UserError


def _x(n: int = 2, h: int = 37, w: int = 53, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 0.4


def _by_hand(net, x: torch.Tensor, scale: float, strength: float = 1.0) -> torch.Tensor:
    """Zero-DCE++'s steps written out: bilinear downscale by 1/S (align_corners=False), the network's
    plain forward for the maps, bilinear upsampling to the input size (align_corners=True, its
    UpsamplingBilinear2d), each map scaled and clamped, the eight curve steps."""
    small = F.interpolate(x, scale_factor=1 / scale, mode="bilinear", align_corners=False)
    r = net(small)[2]
    r = F.interpolate(r, size=x.shape[-2:], mode="bilinear", align_corners=True)
    y = x
    for i in range(8):
        a = (strength * r[:, 3 * i:3 * i + 3]).clamp(-1, 1)
        y = y + a * (y * y - y)
    return y


def test_scale_one_is_the_full_resolution_path_bit_for_bit(monkeypatch):
    net, x = random_dce(std=0.2), _x()
    with torch.inference_mode():
        base, tiled = enhance(net, x), Enhancer(net).enhance(x, 16)
        monkeypatch.setattr(cs, "enhance_scaled", lambda *a, **k: pytest.fail("S = 1 went through curve_scale"))
        assert torch.equal(enhance(net, x, curve_scale=1.0), base)
        e = Enhancer(net).set_curve_control(curve_scale=1)
        assert torch.equal(e(x), base) and torch.equal(e.enhance(x, 16), tiled)
        assert torch.equal(enhance_batch(e, x), enhance_batch(Enhancer(net), x))


@pytest.mark.parametrize("scale, h, w", [(2, 37, 53), (3.0, 45, 71), (8, 64, 96), (2.5, 40, 30), (12, 24, 200)])
def test_scaled_equals_the_hand_written_reference(scale, h, w):
    net, x = random_dce(std=0.2, seed=1), _x(2, h, w)
    with torch.no_grad():
        ref = _by_hand(net, x, scale)
    with torch.inference_mode():
        got = enhance(net, x, curve_scale=scale)
        u8 = (x * 255).round().to(torch.uint8)
        got_u8 = Enhancer(net).set_curve_control(curve_scale=scale)(u8)
        stronger = enhance(net, x, strength=1.7, curve_scale=scale)
    assert got.shape == x.shape
    assert (got - ref).abs().max() < 5e-5  # fused convolutions, lerp: float rounding only
    assert (got - enhance(net, x)).abs().max() > 1e-3  # and not the full-resolution result
    with torch.no_grad():
        assert (got_u8 - _by_hand(net, u8.float() / 255, scale)).abs().max() < 5e-5
        assert (stronger - _by_hand(net, x, scale, 1.7)).abs().max() < 5e-5
        assert (Enhancer(net).set_curve_control(curve_scale=scale)(x) - ref).abs().max() < 5e-5  # grad mode: traced form


def test_downscale_is_zero_dce_plus_plus_resampling():
    x = _x(1, 101, 67)
    for scale in (2, 3, 8, 2.5):
        ref = F.interpolate(x, scale_factor=1 / scale, mode="bilinear", align_corners=False)
        got = cs.downscale(x, scale)
        assert got.shape == ref.shape and (got - ref).abs().max() < 1e-6
        assert torch.equal(cs.downscale(x, scale, chunk_pixels=67 * 6), got)  # chunks of rows: the same values
    assert cs.downscale(x, 200).shape[-2:] == (1, 1)  # capped at the shorter side


def test_bands_and_tiles_give_the_one_piece_result():
    net, x = random_dce(std=0.2, seed=2), _x(2, 90, 70)
    with torch.inference_mode():
        xs = cs.downscale(x, 4)
        r = cs.small_maps(net, xs)
        whole = cs.apply_upsampled(x, r, chunk_pixels=10 ** 9)  # every source row in one chunk
        for chunk in (70 * 2, 70 * 5, 70 * 9):
            assert torch.equal(cs.apply_upsampled(x, r, chunk_pixels=chunk), whole)
        assert (cs.small_maps(net, xs, tile=8) - r).abs().max() < 1e-6  # network tiles of the downscaled image
        e = Enhancer(net).set_curve_control(curve_scale=4)
        assert (e.enhance(x, tile=8) - whole).abs().max() < 1e-5
        assert torch.equal(e(x), whole)


def test_memory_plan_sizes_the_downscaled_image():
    e = Enhancer(random_dce()).set_curve_control(curve_scale=8)
    # 500x750 at 1200 B/pixel (450 MB) after the 288 MB float output: tiles of it
    assert 0 < _plan(e, 1, 4000, 6000, torch.float32, 0.4e9, 0)[1] < 300
    assert _plan(e, 1, 4000, 6000, torch.float32, 0.8e9, 0) == (1, 0)
    assert _plan(Enhancer(random_dce()), 1, 4000, 6000, torch.float32, 1e9, 0)[1] > 0


@pytest.mark.parametrize("value, message", [("0.5", "--curve_scale 0.5: must be >= 1"),
                                            ("abc", "--curve_scale abc: must be a number"),
                                            ("inf", "--curve_scale inf: must be >= 1 and <= 64")])
def test_bad_curve_scale_is_one_line(tmp_path, value, message):
    write_rgb(tmp_path / "in" / "a.png", 8, 8, seed=1)
    code, lines, _ = run_cli_in_process(lowlight_test.main, ["--input_dir", str(tmp_path / "in"), "--output_dir",
                                                             str(tmp_path / "out"), "--curve_scale", value])
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}")


def test_curve_scale_is_refused_for_emnet():
    from network.emnet import EMNet

    with pytest.raises(UserError, match="--curve_scale acts on curve maps, and EMNet has none"):
        Enhancer(EMNet(dim=2)).set_curve_control(curve_scale=4)


def test_folder_mode_writes_the_scaled_result(tmp_path):
    from utils.image_io import read_image_tensor, to_uint8

    write_rgb(tmp_path / "in" / "a.png", 48, 64, seed=3, scale=0.3)
    code, lines, _ = run_cli_in_process(lowlight_test.main, ["--input_dir", str(tmp_path / "in"), "--output_dir",
                                                             str(tmp_path / "out"), "--curve_scale", "4",
                                                             "--exposure", "off"])  # the card's exposure: off
    assert code == 0 and any("curve maps estimated at 1/4" in line for line in lines)
    from lowlight_model import load_enhancer

    model = load_enhancer("auto", str(ROOT / "checkpoints" / "LLE_model.pth"), "cpu")
    x = read_image_tensor(str(tmp_path / "in" / "a.png"))[None]
    with torch.inference_mode():
        want = to_uint8(enhance(model, x, curve_scale=4)[0].clamp(0, 1))
    got = read_image_tensor(str(tmp_path / "out" / "a.png"))
    assert (torch.from_numpy(want).permute(2, 0, 1).float() / 255 - got).abs().max() <= 1.5 / 255


def test_hub_dce_net_takes_the_curve_controls():
    x = _x(2, 40, 56)
    hub = torch.hub.load(str(ROOT), "dce_net", source="local", strength=0.8, curve_scale=4)
    plain = torch.hub.load(str(ROOT), "dce_net", source="local", exposure="off")  # without the card's exposure
    with torch.inference_mode():
        assert torch.equal(hub(x), enhance(plain, x, strength=0.8, curve_scale=4))
        exposed = torch.hub.load(str(ROOT), "dce_net", source="local", exposure=0.45)
        assert torch.equal(exposed(x), enhance(plain, x, exposure=0.45))
        assert not torch.equal(exposed(x), plain(x))
    with pytest.raises(UserError, match=r"^dce_net: curve_scale 0.5: must be >= 1"):
        torch.hub.load(str(ROOT), "dce_net", source="local", curve_scale=0.5)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_curve_controls_match_enhance(tmp_path, fmt):
    from tools import export as ex

    path = tmp_path / f"m.{fmt}"
    weights = str(ROOT / "checkpoints" / "LLE_model.pth")
    ex.main(["--weights", weights, "--format", fmt, "--out", str(path), "--strength", "1.3", "--curve_scale", "4"])
    from lowlight_model import load_enhancer

    model = load_enhancer("auto", weights, "cpu")
    x = _x(3, 61, 83, seed=4)
    with torch.inference_mode():
        want = enhance(model, x, strength=1.3, curve_scale=4)
    assert (ex.run_exported(str(path), fmt, x) - want).abs().max() < 1e-4
    assert (want - enhance(model, x)).abs().max() > 1e-2  # the controls are in the graph


def test_export_refuses_exposure_in_one_line(tmp_path):
    from tools import export as ex

    code, lines, _ = run_cli_in_process(ex.main, ["--weights", str(ROOT / "checkpoints" / "LLE_model.pth"),
                                                  "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                                                  "--exposure", "0.4"])
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: --exposure cannot be exported")
    assert not list(tmp_path.iterdir())

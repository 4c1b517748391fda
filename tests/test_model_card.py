"""--highlight_guard (network.curves.solve_strength's guard) and a checkpoint's card of inference defaults
(utils.model_card) in lowlight_test.py, the hub and the quality benchmark."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import lowlight_test
from helpers import ROOT, random_dce, write_rgb
from lowlight_model import enhance
from network.curves import apply_curves, clipped_share, solve_strength
from network.enhancer import Enhancer
from utils.errors import UserError
from utils.image_io import read_image_tensor, to_uint8
from utils.model_card import inference_defaults


def _lamp_scene():
    """A dark scene (0.05) with a lamp region (0.9) on 4 % of its pixels, and maps that brighten (r < 0)."""
    x = torch.full((1, 3, 50, 50), 0.05)
    x[..., :10, :10] = 0.9
    r = torch.full((1, 24, 50, 50), -0.1)
    return x, r


def test_clipped_share_counts_pixels_at_254_after_rounding():
    y = torch.zeros(1, 3, 2, 2)
    y[0, 1, 0, 0] = 253.5 / 255  # rounds to 254 in one channel: clipped
    y[0, :, 1, 1] = 253.4 / 255  # rounds to 253: not
    assert clipped_share(y).tolist() == [0.25]


def test_guard_stops_brightening_where_clipping_would_grow():
    x, r = _lamp_scene()
    c1 = clipped_share(apply_curves(x, r, 1.0).clamp(0, 1)).item()
    s = solve_strength(x, r, 0.45)  # the dark 96 % need a strong scale: the lamp saturates
    assert s.item() > 1 and clipped_share(apply_curves(x, r, s).clamp(0, 1)).item() > c1 + 0.01
    g = solve_strength(x, r, 0.45, guard=0.0)  # no more clipping than the model's own output
    assert 1.0 <= g.item() < s.item()
    assert clipped_share(apply_curves(x, r, g).clamp(0, 1)).item() <= c1
    assert clipped_share(apply_curves(x, r, g * 1.01).clamp(0, 1)).item() > c1  # the largest such scale
    assert torch.equal(solve_strength(x, r, 0.45, guard=1.0), s)  # a guard of every pixel: no limit
    low = solve_strength(x, r, 0.06, guard=0.0)  # a target reached below s = 1: the guard changes nothing
    assert low.item() < 1 and torch.equal(low, solve_strength(x, r, 0.06))


def test_guard_needs_exposure_and_a_share():
    net = random_dce()
    with pytest.raises(UserError, match="--highlight_guard 50: applies to --exposure"):
        Enhancer(net).set_curve_control(highlight_guard=50)
    with pytest.raises(UserError, match="between 0 and 100"):
        Enhancer(net).set_curve_control(exposure=0.4, highlight_guard=150)


def _card(weights, inference):
    path = weights.with_suffix(".json")
    path.write_text(json.dumps({"inference": inference}))
    return path


def test_card_errors_name_the_file(tmp_path):
    w = tmp_path / "m.pth"
    assert inference_defaults(str(w)) == {}
    _card(w, {"exposure": 0.35, "highlight_guard": 0.5})
    assert inference_defaults(str(w)) == {"exposure": 0.35, "highlight_guard": 0.5}
    for bad, message in (({"exposure": "high"}, "inference default 'exposure' must be a number"),
                         ({"exposur": 0.3}, "unknown inference default 'exposur'")):
        _card(w, bad)
        with pytest.raises(UserError, match=f"m.json: {message}"):
            inference_defaults(str(w))
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(UserError, match="m.json: cannot read the checkpoint's card"):
        inference_defaults(str(w))


@pytest.fixture
def carded(tmp_path):
    torch.manual_seed(0)
    net = random_dce(std=0.05)
    weights = tmp_path / "w.pth"
    torch.save(net.state_dict(), weights)
    src = tmp_path / "in"
    write_rgb(src / "a.png", 40, 48, seed=3, scale=0.2)
    write_rgb(src / "b.png", 40, 48, seed=4, scale=0.4)
    return weights, net.eval(), src


def _run(src, out, weights, *extra):
    assert lowlight_test.main(["--input_dir", str(src), "--output_dir", str(out), "--weights", str(weights),
                               "--device", "cpu", "--workers", "0", *extra]) == 0
    return {p.name: np.asarray(Image.open(p)) for p in sorted(out.iterdir())}


def test_lowlight_test_uses_the_card_and_says_so(tmp_path, carded, capsys):
    weights, net, src = carded
    own = _run(src, tmp_path / "own", weights)
    _card(weights, {"exposure": 0.45, "highlight_guard": 0.5})
    got = _run(src, tmp_path / "card", weights)
    assert "--exposure 0.45 --highlight_guard 0.5 from its card" in capsys.readouterr().err
    flags = _run(src, tmp_path / "flags", weights, "--exposure", "0.45", "--highlight_guard", "0.5")
    for name, y in got.items():
        x = read_image_tensor(str(src / name))[None]
        with torch.no_grad():
            want = to_uint8(Enhancer(net).set_curve_control(exposure=0.45, highlight_guard=0.5)(x)[0].clamp(0, 1))
        assert np.array_equal(y, want) and np.array_equal(flags[name], want), name
        assert not np.array_equal(y, own[name])
    off = _run(src, tmp_path / "off", weights, "--exposure", "off")
    assert all(np.array_equal(off[n], own[n]) for n in own)  # off: the network's own output, bit for bit
    strength = _run(src, tmp_path / "s", weights, "--strength", "0.5")  # a brightness flag: the card is not read
    for name, y in strength.items():
        with torch.no_grad():
            want = to_uint8(enhance(net, read_image_tensor(str(src / name))[None], strength=0.5)[0].clamp(0, 1))
        assert np.array_equal(y, want)
    with pytest.raises(UserError, match="--exposure off turns it off"):
        _run(src, tmp_path / "both", weights, "--exposure", "off", "--highlight_guard", "1")
    _card(weights, {"exposure": 2})
    with pytest.raises(UserError, match="--exposure 2"):
        _run(src, tmp_path / "bad", weights)


def test_quality_benchmark_adds_the_card_row(tmp_path, carded):
    from benchmarks.quality import build_methods

    weights, net, src = carded
    _card(weights, {"exposure": 0.45, "highlight_guard": 0.5})
    methods = build_methods([("w", str(weights))], torch.device("cpu"), baselines=False)
    assert list(methods) == ["w", "w with its card (--exposure 0.45 --highlight_guard 0.5)"]
    x = np.asarray(Image.open(src / "a.png").convert("RGB"))
    t = torch.from_numpy(x.transpose(2, 0, 1).copy()).float().div(255)[None]
    with torch.no_grad():
        want = to_uint8(Enhancer(net).set_curve_control(exposure=0.45, highlight_guard=0.5)(t)[0].clamp(0, 1))
    assert np.array_equal(methods["w with its card (--exposure 0.45 --highlight_guard 0.5)"](x), want)


def test_shipped_checkpoint_card_in_the_hub():
    card = inference_defaults(str(ROOT / "checkpoints" / "LLE_model.pth"))
    assert set(card) == {"exposure", "highlight_guard"}
    torch.manual_seed(5)
    x = torch.rand(1, 3, 40, 48) * 0.2
    shipped = torch.hub.load(str(ROOT), "dce_net", source="local")
    own = torch.hub.load(str(ROOT), "dce_net", source="local", exposure="off")
    assert shipped.exposure == card["exposure"] and shipped.highlight_guard == card["highlight_guard"]
    assert own.exposure is None and not own.controlled
    with torch.no_grad():
        assert abs(shipped(x).clamp(0, 1).mean().item() - card["exposure"]) < 0.01


@pytest.mark.parametrize("guard", [None, 0.0])
@pytest.mark.parametrize("keep_maps", [True, False])
def test_exposure_in_tiles_equals_the_whole_image(guard, keep_maps, monkeypatch):
    """A large image under --exposure is enhanced in tiles (the memory budget holds): the scale comes from the
    tiles' maps sampled where the whole image's solve samples them, so the output matches the whole image's."""
    import network.enhancer

    if not keep_maps:  # a large image: the tiles' maps are recomputed in a second pass
        monkeypatch.setattr(network.enhancer, "KEEP_MAPS_BYTES", 0)
    torch.manual_seed(3)
    net = random_dce(std=0.05)
    with torch.no_grad():
        net.e_conv7.bias.fill_(-0.3)  # brightening maps (r < 0): the output's brightness grows with the scale
    x = torch.rand(2, 3, 600, 410) * 0.15  # above SOLVE_PIXELS: the solve samples every 2nd row and column
    x[0, :, :40, :50] = 0.8  # a lamp, which the scale for 0.5 would clip
    e = Enhancer(net).set_curve_control(exposure=0.5, highlight_guard=guard)
    with torch.no_grad():
        whole, tiled = e.enhance(x, tile=0), e.enhance(x, tile=128)
    assert (whole - tiled).abs().max().item() < 1e-4
    mean = tiled.clamp(0, 1).mean(dim=(1, 2, 3))
    assert abs(mean[1].item() - 0.5) < 0.005  # the target reached (no lamp: the guard does not act)
    if guard is None:
        assert abs(mean[0].item() - 0.5) < 0.005
    else:  # the guard stopped the lamp's image short of 0.5, clipping (almost) no more than the network's own
        assert mean[0].item() < 0.47  # output: it is solved on the sample, so a few other pixels may clip
        own = clipped_share(Enhancer(net)(x[:1]).clamp(0, 1)).item()
        assert clipped_share(tiled[:1].clamp(0, 1)).item() <= own + 1e-3

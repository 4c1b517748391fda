"""datasets/synthesis.py (physically based low light) and the photo-level split of datasets/prepare_demo.py."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from datasets.prepare_demo import build_demo, load_photo
from datasets.synthesis import (LIGHT_COLOURS, LightConfig, LowLightConfig, draw_params, expose_linear, glare,
                                light_map, quantize8, rng_for, synthesize_lowlight, synthesize_overexposed,
                                synthesize_pair, wb_gains)
from utils.colour import linear_to_srgb, srgb_to_linear


def test_quantize8_rounds_to_the_nearest_level():
    levels = np.arange(256, dtype=np.float32) / 255
    assert np.array_equal(quantize8(levels + 0.49 / 255), levels)
    assert np.array_equal(quantize8(levels - 0.49 / 255), levels)


def test_flat_patch_noise_matches_the_model():
    """Linear light: mean s·lin, variance K·mean + σ_r²; after sRGB + 8 bits: σ scaled by the curve's slope."""
    x = np.full((256, 256, 3), 0.8, np.float32)
    p = {"exposure": 0.1, "gain": 1e-3, "read_sigma": 2e-3, "wb_t": 0.0, "wb_g": 0.0}
    y = expose_linear(srgb_to_linear(x), p, np.random.default_rng(0)).astype(np.float64)
    mean = 0.1 * 0.603827  # srgb_to_linear(0.8) = 0.603827
    var = 1e-3 * mean + 2e-3 ** 2
    n = y.size
    assert abs(y.mean() - mean) < 4 * math.sqrt(var / n)
    assert y.var() == pytest.approx(var, rel=0.02)
    low, _ = synthesize_lowlight(x, np.random.default_rng(1), params=p)
    slope = 1.055 / 2.4 * mean ** (1 / 2.4 - 1)  # d sRGB / d lin at the mean
    expected_levels = math.sqrt((255 * slope) ** 2 * var + 1 / 12)  # + uniform quantisation noise
    assert (255 * low).std() == pytest.approx(expected_levels, rel=0.05)
    assert (255 * low).mean() == pytest.approx(255 * linear_to_srgb(np.float32(mean)), abs=0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exposure_and_white_balance_recovered_from_a_pair(seed):
    x = load_photo("astronaut").astype(np.float32) / 255
    low, p = synthesize_lowlight(x, rng_for(seed, "pair"))
    per_channel = srgb_to_linear(low).reshape(-1, 3).sum(0) / srgb_to_linear(x).reshape(-1, 3).sum(0)
    np.testing.assert_allclose(per_channel, p["exposure"] * wb_gains(p), rtol=0.04)
    assert 1 / 50 <= p["exposure"] <= 1 / 3 and 1e-4 <= p["gain"] <= 2e-3


def test_deterministic_per_seed_and_key():
    x = load_photo("coffee")[:64, :64].astype(np.float32) / 255
    a, pa = synthesize_lowlight(x, rng_for(5, "a/b.png"))
    b, pb = synthesize_lowlight(x, rng_for(5, "a/b.png"))
    c, _ = synthesize_lowlight(x, rng_for(6, "a/b.png"))
    d, _ = synthesize_lowlight(x, rng_for(5, "a/c.png"))
    assert np.array_equal(a, b) and pa == pb
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert np.array_equal(a, quantize8(a))  # already on 8-bit levels


def test_parameter_ranges_are_log_uniform():
    cfg = LowLightConfig()
    rng = np.random.default_rng(0)
    s = np.array([draw_params(rng, cfg)["exposure"] for _ in range(4000)])
    assert s.min() >= 1 / 50 and s.max() <= 1 / 3
    # log-uniform: the geometric midpoint splits the draws in half
    assert np.mean(s < math.sqrt(1 / 50 / 3)) == pytest.approx(0.5, abs=0.03)


def test_overexposed_negative_in_linear_light():
    x = np.full((8, 8, 3), 0.2, np.float32)
    x[:, 4:] = 0.9
    q, p = synthesize_overexposed(x, rng_for(0, "neg"))
    assert 2.5 <= p["over_gain"] <= 8
    expected = quantize8(linear_to_srgb(np.float32(min(1.0, srgb_to_linear(np.float32(0.2)) * p["over_gain"]))))
    assert q[0, 0, 0] == pytest.approx(float(expected), abs=1e-6)
    assert np.all(q[:, 4:] == 1.0)  # 0.9 (linear 0.787) times ≥ 2.5 clips


def test_glare_profile_by_hand():
    # core radius 3, halo width 2: 1 on the core, (1 + 1)^-2 one width out, (1 + 4²)^-2 four widths out
    np.testing.assert_allclose(glare(np.array([0.0, 2.0, 3.0, 5.0, 11.0]), 3.0, 2.0), [1, 1, 1, 0.25, 1 / 289])


@pytest.mark.parametrize("bad", [{"prob": 1.5}, {"max_count": 0}, {"radius_min": 0.0}, {"peak_min": 40.0},
                                 {"pool_prob": -0.1}, {"pool_min": 0.0}, {"pool_min": 4.0}])
def test_light_config_refuses_out_of_range_fields(bad):
    with pytest.raises(ValueError, match="need"):
        LightConfig(**bad)


def test_light_sources_share_and_saturation():
    # one lamp: its core is P/s (P in [peak_min, peak_max]) in one palette colour, falling off around it
    cfg = LightConfig(prob=1.0, max_count=1)
    m, n = light_map((96, 128), rng_for(0, "lamp"), 0.05, cfg)
    assert n == 1 and m.dtype == np.float32
    peak = m.max(axis=(0, 1))
    assert 2.0 / 0.05 <= peak.max() <= 30.0 / 0.05 + 1e-3
    lum = m.max(axis=-1)
    assert np.abs(LIGHT_COLOURS - peak / peak.max()).sum(1).min() < 1e-5  # the core has one palette colour
    assert lum.min() < lum.max() * 0.25
    # the share of images that get lights follows prob; prob 0 draws nothing and keeps the plain pair
    draws = [light_map((8, 8), rng_for(1, f"k{i}"), 0.1, LightConfig(prob=0.3))[1] > 0 for i in range(2000)]
    assert np.mean(draws) == pytest.approx(0.3, abs=0.035)
    x = load_photo("astronaut")[:96, :128].astype(np.float32) / 255
    low, high, p = synthesize_pair(x, rng_for(2, "plain"), lights=LightConfig(prob=0.0, pool_prob=0.0))
    assert high is x and np.array_equal(low, synthesize_lowlight(x, rng_for(2, "plain"))[0]) and "lights" not in p
    # lit pools alone: the dark image's pool centre is ≥ 0.3 x the normal exposure, so far above the rest
    low, high, p = synthesize_pair(x, rng_for(4, "pool"), lights=LightConfig(prob=0.0, pool_prob=1.0))
    plain = synthesize_lowlight(x, rng_for(4, "pool"))[0]
    assert p["pools"] >= 1 and p["lights"] == 0 and srgb_to_linear(low).max() > 0.3 * srgb_to_linear(x).max()
    assert srgb_to_linear(low).mean() > srgb_to_linear(plain).mean() and (high >= x - 1e-6).all()
    # with lights: the cores clip in the dark image, and the normal exposure clips a superset of them
    low, high, p = synthesize_pair(x, rng_for(3, "lamps"), lights=LightConfig(prob=1.0, pool_prob=0.0))
    sat_low, sat_high = (low >= 254 / 255).any(-1), (high >= 254 / 255).any(-1)
    assert p["lights"] >= 1 and sat_low.any() and not (sat_low & ~sat_high).any()
    assert sat_high.mean() < 0.5 and np.array_equal(high, quantize8(high))
    again = synthesize_pair(x, rng_for(3, "lamps"), lights=LightConfig(prob=1.0, pool_prob=0.0))
    assert np.array_equal(again[0], low) and np.array_equal(again[1], high)


def _photo_dir(tmp_path, n=6):
    """n flat photos, photo k of grey level 20·(k+1) (no two share a level), 96x128."""
    d = tmp_path / "photos"
    d.mkdir()
    for k in range(n):
        Image.fromarray(np.full((96, 128, 3), 20 * (k + 1), np.uint8)).save(d / f"flat{k}.png")
    return d


def test_prepare_demo_splits_by_photo(tmp_path):
    d = _photo_dir(tmp_path)
    out = tmp_path / "data"
    m = build_demo(str(out), None, seed=0, n_crops=20, crop=32, eval_per_photo=2, max_side=64,
                   photo_dirs=[str(d)], val_fraction=0.34)
    held = [n for n in m["held_out_photos"] if n.startswith("flat")]
    train = [n for n in m["train_photos"] if n.startswith("flat")]
    assert len(held) == 2 and len(train) == 4 and not set(held) & set(train)
    held_levels = {20 * (int(n[4:]) + 1) for n in held}
    for rel, info in m["files"].items():
        if "eval15" in rel:
            assert info["photo"] in m["held_out_photos"]
            continue
        assert info["photo"] in m["train_photos"]
        if rel.startswith(("LOL-demo/our485/high", "Contrast/GT")) and info["photo"].startswith("flat"):
            level = int(np.asarray(Image.open(out / rel))[0, 0, 0])
            assert level not in held_levels  # not even a crop of a held-out photo
    assert json.loads((out / "demo_manifest.json").read_text())["synthesis"]["exposure_min"] == pytest.approx(0.02)
    # the same seed gives the same split; the skimage samples do not depend on --photos
    again = build_demo(str(tmp_path / "again"), None, seed=0, n_crops=2, crop=32, eval_per_photo=2, max_side=64,
                       photo_dirs=[str(d)], val_fraction=0.34)
    assert again["held_out_photos"] == m["held_out_photos"]
    plain = tmp_path / "plain"
    build_demo(str(plain), None, seed=0, n_crops=2, crop=32, eval_per_photo=2, max_side=64)
    for name in ("chelsea_0.png", "coffee_1.png"):
        rel = f"LOL-demo/eval15/low/{name}"
        assert (plain / rel).read_bytes() == (out / rel).read_bytes()

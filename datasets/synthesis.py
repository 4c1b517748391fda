"""Physically based low-light synthesis from normal-light 8-bit sRGB photos.

The model is the one restoration papers use to make low-light training data from clean photos
(e.g. Brooks et al., *Unprocessing Images for Learned Raw Denoising*, CVPR 2019; Lv et al., *MBLLEN*;
Wei et al., *Physics-based noise formation*, CVPR 2020), applied to display-referred sRGB photos:

1. **Linearise**: undo the sRGB transfer curve (IEC 61966-2-1):
   ``lin = c/12.92`` for ``c <= 0.04045``, else ``((c + 0.055)/1.055)^2.4``.
2. **White balance** (optional, ``wb_shift``): per-channel gains ``(e^{+t}, e^{g}, e^{-t})`` with
   ``t ~ U[-wb_shift, wb_shift]`` (a colour-temperature shift: red against blue) and
   ``g ~ U[-wb_shift/2, wb_shift/2]`` (a small green/magenta tint).
3. **Exposure**: ``lin *= s`` with ``s`` log-uniform in ``[exposure_min, exposure_max]`` (1/50 … 1/3).
4. **Shot noise** (photon counting, signal dependent): ``y = K · Poisson(lin / K)``; ``K`` is the
   gain in full-scale units per photo-electron (``1/K`` electrons fill the 8-bit range), log-uniform
   in ``[gain_min, gain_max]``; a larger ``K`` stands for a higher ISO. Variance ``K · lin``.
5. **Read noise**: ``y += N(0, σ_r²)`` with ``log σ_r² = 2.18 · log K + 1.2 + N(0, 0.26²)`` — the
   shot/read relation Brooks et al. fitted on real sensors — so a higher gain also means more read noise.
6. **Re-encode**: clip to ``[0, 1]``, apply the sRGB curve, quantise to 8 bits with
   ``floor(255·v + 0.5) / 255`` (torchvision's ``save_image`` rounding).

**Light sources** (optional, :class:`LightConfig`, training inputs only): real night photos hold lamps and
lit windows that stay saturated however short the exposure; a darkened daylight photo holds none, so a
model trained on it learns to brighten every pixel and blows highlights out. With probability ``prob`` an
image gets ``1 + Binomial(max_count - 1, 1/2)`` sources added to the linear scene before step 2: each a
disk of radius ``r0`` (log-uniform in ``[radius_min, radius_max]`` x the short side) with a glare halo
``(1 + ((r - r0)/w)^2)^(-2)``, ``w = r0 · U[0.3, 1.5]``; its peak is ``P / s`` in scene units, ``P``
log-uniform in ``[peak_min, peak_max]`` (the core is ``P`` times full scale *after* the exposure ``s``, so
it clips in the dark image too); its colour is one of sodium, tungsten, white LED or cool white.
Independently, with probability ``pool_prob``, 1–2 *lit pools* (the light a lamp casts on a room or a
street) multiply the scene by ``1 + Σ A_k g_k c_k``: ``g_k`` a Gaussian of σ = U[0.08, 0.25] x the short
side, ``c_k`` a palette colour, ``A_k = U/s − 1`` with ``U`` log-uniform in ``[pool_min, pool_max]``, so a
pool's centre reaches 0.3–3 x the normal exposure in the dark image (lit, often saturated, colours
beside dark shadows). The ground truth of such a pair is ``sRGB(clip(lin · pools + lamps))``: the same
scene at the normal exposure.

Over-exposed negatives are made in linear light too: ``clip(s · lin, 0, 1)`` with ``s`` log-uniform
in ``[over_min, over_max]`` (2.5 … 8), re-encoded and quantised (no noise: a bright exposure is clean).

Every function takes a :class:`numpy.random.Generator`; :func:`rng_for` derives one from a seed and a
string key (e.g. a file's relative path), so each output depends only on (seed, key) and never on the
order or the process in which files are made. Images are float32 ``(H, W, 3)`` arrays in ``[0, 1]``.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np

from utils.colour import linear_to_srgb, srgb_to_linear

# Brooks et al. 2019: log(read variance) = 2.18·log(shot variance per unit signal) + 1.2 + N(0, 0.26²).
READ_SLOPE, READ_OFFSET, READ_JITTER = 2.18, 1.2, 0.26


@dataclass(frozen=True)
class LowLightConfig:
    """Ranges of the random draws (all documented in the module docstring)."""

    exposure_min: float = 1.0 / 50.0
    exposure_max: float = 1.0 / 3.0
    gain_min: float = 1e-4      # K: 10,000 electrons fill the range (low ISO)
    gain_max: float = 2e-3      # 500 electrons fill the range (high ISO)
    wb_shift: float = 0.05      # max |log gain| of red/blue; 0 turns the white-balance shift off
    over_min: float = 2.5       # over-exposed negatives: linear gain range
    over_max: float = 8.0

    def __post_init__(self) -> None:
        if not 0 < self.exposure_min <= self.exposure_max:
            raise ValueError("need 0 < exposure_min <= exposure_max")
        if not 0 < self.gain_min <= self.gain_max:
            raise ValueError("need 0 < gain_min <= gain_max")
        if self.wb_shift < 0 or not 1 <= self.over_min <= self.over_max:
            raise ValueError("need wb_shift >= 0 and 1 <= over_min <= over_max")


DEFAULT = LowLightConfig()

# Linear-light colours of the light sources (max channel 1): sodium, tungsten, white LED, cool white.
LIGHT_COLOURS = np.array([[1.0, 0.55, 0.18], [1.0, 0.72, 0.42], [1.0, 0.97, 0.92], [0.82, 0.9, 1.0]], dtype=np.float32)


@dataclass(frozen=True)
class LightConfig:
    """Light sources added to training scenes (see the module docstring)."""

    prob: float = 0.3           # share of images that get light sources; 0 turns them off
    max_count: int = 3
    radius_min: float = 0.004   # core radius, fraction of the short side
    radius_max: float = 0.04
    peak_min: float = 2.0       # core brightness after the exposure, multiples of full scale
    peak_max: float = 30.0
    pool_prob: float = 0.3      # share of images that get lit pools; 0 turns them off
    pool_min: float = 0.3       # pool centre brightness after the exposure, multiples of the normal exposure
    pool_max: float = 3.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0 or self.max_count < 1:
            raise ValueError("need 0 <= prob <= 1 and max_count >= 1")
        if not 0 < self.radius_min <= self.radius_max or not 0 < self.peak_min <= self.peak_max:
            raise ValueError("need 0 < radius_min <= radius_max and 0 < peak_min <= peak_max")
        if not 0.0 <= self.pool_prob <= 1.0 or not 0 < self.pool_min <= self.pool_max:
            raise ValueError("need 0 <= pool_prob <= 1 and 0 < pool_min <= pool_max")


def rng_for(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``(seed, key)`` (sha256 of the key; stable across runs/processes)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *words])


def quantize8(x: np.ndarray) -> np.ndarray:
    """Round to 8-bit levels as torchvision's ``save_image`` does: ``floor(255·x + 0.5)/255``, float32."""
    return (np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5) / 255.0).astype(np.float32)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def draw_params(rng: np.random.Generator, cfg: LowLightConfig = DEFAULT) -> dict[str, float]:
    """Draw one image's parameters, in a fixed order: exposure, gain K, read σ, WB t, WB g."""
    exposure = _log_uniform(rng, cfg.exposure_min, cfg.exposure_max)
    gain = _log_uniform(rng, cfg.gain_min, cfg.gain_max)
    read_var = math.exp(READ_SLOPE * math.log(gain) + READ_OFFSET + rng.normal(0.0, READ_JITTER))
    t = rng.uniform(-cfg.wb_shift, cfg.wb_shift) if cfg.wb_shift else 0.0
    g = rng.uniform(-cfg.wb_shift / 2, cfg.wb_shift / 2) if cfg.wb_shift else 0.0
    return {"exposure": exposure, "gain": gain, "read_sigma": math.sqrt(read_var), "wb_t": float(t), "wb_g": float(g)}


def wb_gains(params: dict[str, float]) -> np.ndarray:
    """Per-channel linear gains ``(e^t, e^g, e^-t)`` of the white-balance shift, float32 (3,)."""
    t, g = params.get("wb_t", 0.0), params.get("wb_g", 0.0)
    return np.array([math.exp(t), math.exp(g), math.exp(-t)], dtype=np.float32)


def expose_linear(lin: np.ndarray, params: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Steps 2–5 in linear light: WB, exposure, Poisson shot noise, Gaussian read noise; not clipped.

    ``lin`` float (H, W, 3) in [0, 1] → float32 (H, W, 3); mean ``s·gains·lin``, variance ``K·mean + σ_r²``.
    """
    mean = np.clip(lin * wb_gains(params) * np.float32(params["exposure"]), 0.0, None).astype(np.float64)
    k = params["gain"]
    y = rng.poisson(mean / k).astype(np.float64) * k
    y += rng.normal(0.0, params["read_sigma"], size=y.shape)
    return y.astype(np.float32)


def synthesize_lowlight(x: np.ndarray, rng: np.random.Generator, cfg: LowLightConfig = DEFAULT,
                        params: dict[str, float] | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """A normal-light sRGB image (H, W, 3) in [0, 1] → (8-bit-quantised low-light float32 image, params).

    ``params`` (from :func:`draw_params`) may be given to reuse a draw; otherwise they are drawn from
    ``rng`` first, then the noise.
    """
    params = draw_params(rng, cfg) if params is None else params
    return quantize8(linear_to_srgb(expose_linear(srgb_to_linear(x), params, rng))), params


def glare(dist: np.ndarray, r0: float, width: float) -> np.ndarray:
    """A lamp's profile: 1 on the core (``dist <= r0``), then ``(1 + ((dist − r0)/width)²)^-2``."""
    d = np.maximum(dist - r0, 0.0) / max(width, 1e-3)
    return np.power(1.0 + d * d, -2.0)


def _spot(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Offsets ``(dy, dx)`` (pixels, float (H, W)) of every pixel from a centre drawn uniformly over the image."""
    h, w = shape
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy - cy, xx - cx


def _colour(rng: np.random.Generator) -> np.ndarray:
    return LIGHT_COLOURS[int(rng.integers(len(LIGHT_COLOURS)))]


def light_map(shape: tuple[int, int], rng: np.random.Generator, exposure: float,
              cfg: LightConfig) -> tuple[np.ndarray | None, int]:
    """Linear-light lamps of one image, in scene units: ``(float32 (H, W, 3) or None, count)``."""
    if cfg.prob <= 0 or rng.random() >= cfg.prob:
        return None, 0
    n = 1 + int(rng.binomial(cfg.max_count - 1, 0.5)) if cfg.max_count > 1 else 1
    out = np.zeros((*shape, 3), dtype=np.float32)
    for _ in range(n):
        dist = np.hypot(*_spot(rng, shape))
        r0 = _log_uniform(rng, cfg.radius_min, cfg.radius_max) * min(shape)
        width = r0 * rng.uniform(0.3, 1.5)
        peak = _log_uniform(rng, cfg.peak_min, cfg.peak_max) / exposure
        out += (peak * glare(dist, r0, width))[..., None] * _colour(rng)
    return out, n


def pool_gain(shape: tuple[int, int], rng: np.random.Generator, exposure: float,
              cfg: LightConfig) -> tuple[np.ndarray | None, int]:
    """Per-pixel illumination gain ``1 + Σ A_k g_k c_k`` of lit pools: ``(float32 (H, W, 3) or None, count)``."""
    if cfg.pool_prob <= 0 or rng.random() >= cfg.pool_prob:
        return None, 0
    n = 1 + int(rng.integers(2))
    gain = np.ones((*shape, 3), dtype=np.float32)
    for _ in range(n):
        dy, dx = _spot(rng, shape)
        sigma = rng.uniform(0.08, 0.25) * min(shape)
        amp = max(_log_uniform(rng, cfg.pool_min, cfg.pool_max) / exposure - 1.0, 0.0)
        gain += (amp * np.exp(-(dy ** 2 + dx ** 2) / (2 * sigma * sigma)))[..., None] * _colour(rng)
    return gain, n


def synthesize_pair(x: np.ndarray, rng: np.random.Generator, cfg: LowLightConfig = DEFAULT,
                    lights: LightConfig | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """A normal-light photo → ``(low, ground truth, params)``, both 8-bit-quantised float32 (H, W, 3).

    Without lights (``lights`` None, or none drawn) the ground truth is ``x`` and the low image equals
    :func:`synthesize_lowlight`'s for the same generator state; with them both images hold them.
    """
    params = draw_params(rng, cfg)
    lamps, n_lamps = light_map(x.shape[:2], rng, params["exposure"], lights) if lights else (None, 0)
    gain, n_pools = pool_gain(x.shape[:2], rng, params["exposure"], lights) if lights else (None, 0)
    if lamps is None and gain is None:
        return synthesize_lowlight(x, rng, cfg, params)[0], x, params
    lin = srgb_to_linear(x) * (1.0 if gain is None else gain) + (0.0 if lamps is None else lamps)
    low = quantize8(linear_to_srgb(expose_linear(lin, params, rng)))
    return low, quantize8(linear_to_srgb(lin)), {**params, "lights": n_lamps, "pools": n_pools}


def synthesize_overexposed(x: np.ndarray, rng: np.random.Generator,
                           cfg: LowLightConfig = DEFAULT) -> tuple[np.ndarray, dict[str, float]]:
    """Over-exposed negative: ``sRGB(clip(s·lin, 0, 1))``, s log-uniform in [over_min, over_max], quantised."""
    s = _log_uniform(rng, cfg.over_min, cfg.over_max)
    return quantize8(linear_to_srgb(srgb_to_linear(x) * np.float32(s))), {"over_gain": s}


def config_dict(cfg: LowLightConfig = DEFAULT) -> dict[str, float]:
    """The configuration as a plain dict (for manifests)."""
    return {**asdict(cfg), "read_slope": READ_SLOPE, "read_offset": READ_OFFSET, "read_jitter": READ_JITTER}

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


def rng_for(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``(seed, key)`` (sha256 of the key; stable across runs/processes)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *words])


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] → linear light in [0, 1] (IEC 61966-2-1), float32."""
    c = np.asarray(c, dtype=np.float32)
    return np.where(c <= 0.04045, c / 12.92, np.power((np.maximum(c, 0.04045) + 0.055) / 1.055, 2.4)).astype(np.float32)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] → sRGB-encoded values in [0, 1], float32 (inverse of :func:`srgb_to_linear`)."""
    lin = np.clip(np.asarray(lin, dtype=np.float32), 0.0, 1.0)
    hi = 1.055 * np.power(np.maximum(lin, 0.0031308), 1.0 / 2.4) - 0.055
    return np.where(lin <= 0.0031308, 12.92 * lin, hi).astype(np.float32)


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
    y = expose_linear(srgb_to_linear(x), params, rng)
    return quantize8(linear_to_srgb(np.clip(y, 0.0, 1.0))), params


def synthesize_overexposed(x: np.ndarray, rng: np.random.Generator,
                           cfg: LowLightConfig = DEFAULT) -> tuple[np.ndarray, dict[str, float]]:
    """Over-exposed negative: ``sRGB(clip(s·lin, 0, 1))``, s log-uniform in [over_min, over_max], quantised."""
    s = _log_uniform(rng, cfg.over_min, cfg.over_max)
    return quantize8(linear_to_srgb(np.clip(srgb_to_linear(x) * np.float32(s), 0.0, 1.0))), {"over_gain": s}


def config_dict(cfg: LowLightConfig = DEFAULT) -> dict[str, float]:
    """The configuration as a plain dict (for manifests)."""
    return {**asdict(cfg), "read_slope": READ_SLOPE, "read_offset": READ_OFFSET, "read_jitter": READ_JITTER}

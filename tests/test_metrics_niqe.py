"""metrics/niqe.py: NIQE against BasicSR's (= MATLAB's) figures, and its parts on hand-computed inputs."""
import json
import os

import numpy as np
import pytest

from metrics import niqe
from metrics.niqe import PARAMS, aggd_fit, imresize, luminance, pristine_model, resize_matrix
from utils.image_io import read_image_uint8

from helpers import COMPAT, ROOT, SHARED

GOLDEN = COMPAT / "niqe_golden.json"


@pytest.mark.skipif(not GOLDEN.is_file(), reason="../shared/compat/niqe_golden.json is not present")
def test_golden_values_of_the_matlab_release():
    """LIME and Kodak photos: BasicSR's figures (Y channel, no crop) to ±0.001."""
    golden = json.loads(GOLDEN.read_text())["niqe"]
    assert len(golden) == 13
    for rel, expected in golden.items():
        assert niqe(read_image_uint8(str(SHARED / rel))) == pytest.approx(expected, abs=1e-3), rel


def test_parameters_ship_inside_the_repository():
    assert os.path.dirname(PARAMS) == str(ROOT / "metrics" / "data") and os.path.getsize(PARAMS) < 16_000
    mu, cov, window = pristine_model()
    assert mu.shape == (36,) and cov.shape == (36, 36) and np.allclose(cov, cov.T)
    assert window.shape == (7, 7) and window.sum() == pytest.approx(1.0) and window[3, 3] == window.max()


def test_luminance_is_matlab_rgb2ycbcr_y_rounded():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 50, 200]]], np.uint8)
    # 16 + (65.481 R + 128.553 G + 24.966 B) / 255, rounded
    assert luminance(img).tolist() == [[16, 235, 81, 145, 41, 86]]  # 25.68 + 25.21 + 19.58 + 16 = 86.47


def test_resize_matrix_is_matlab_bicubic_with_antialiasing():
    m = resize_matrix(16, 0.5)
    assert m.shape == (8, 16) and np.allclose(m.sum(axis=1), 1)
    ramp = np.arange(16, dtype=np.float64)
    # output pixel i (1-based) is centred at input 2i − 0.5 (1-based); the symmetric kernel keeps a ramp
    # exactly where it does not reach the border (kernel width 8: outputs 3..6)
    assert np.allclose((m @ ramp)[2:6], [2 * i - 1.5 for i in range(3, 7)])
    # at the border the padding mirrors with the edge pixel repeated (inputs 0, −1, −2 read 0, 1, 2): the first
    # output, centred at 1.5, weighs 2, 1, 0 | 0, 1, 2, 3, 4 by 0.5·cubic(0.5·d) for d = 3.5 … −3.5:
    # 0.5 · (2·(−.0234375) − .0703125 + .8671875 + 2·.2265625 − 3·.0703125 − 4·.0234375) = 115 / 256
    assert (m @ ramp)[0] == pytest.approx(115 / 256, abs=1e-12)
    # the stretched kernel: weight of input 2i−1 and 2i (the two nearest) equal, 0.5·cubic(0.25) each before
    # normalisation; the normalisation of an interior row is 1 (the kernel's samples sum to 1/scale · scale)
    row = m[3]
    assert row[6] == pytest.approx(row[7]) and row[6] == pytest.approx(0.5 * (1.5 * 0.25 ** 3 - 2.5 * 0.25 ** 2 + 1))
    flat = np.full((10, 14), 7.0)
    assert imresize(flat, 0.5).shape == (5, 7) and np.allclose(imresize(flat, 0.5), 7.0)


def test_aggd_fit_recovers_a_gaussian_and_its_asymmetry():
    x = np.random.default_rng(0).normal(0, 2.0, 200_000)
    shape, left, right = aggd_fit(x)
    # shape 2 is a Gaussian; the spreads are the AGGD scales β = σ·sqrt(Γ(1/α)/Γ(3/α)) = σ·√2
    assert shape == pytest.approx(2.0, abs=0.05)
    assert left == pytest.approx(2.0 * 2 ** 0.5, rel=0.02) and right == pytest.approx(2.0 * 2 ** 0.5, rel=0.02)
    shape, left, right = aggd_fit(np.where(x < 0, 0.5 * x, x))  # left half squeezed
    assert left / right == pytest.approx(0.5, rel=0.01)  # the two spreads share the shape's factor
    lap = np.random.default_rng(1).laplace(0, 1.0, 200_000)
    assert aggd_fit(lap)[0] == pytest.approx(1.0, abs=0.05)  # Laplacian: shape 1


def test_aggd_fit_of_a_one_sided_block_is_the_release_s():
    """No negative value: the release's NaN left spread, shape at the grid's first value 0.2, and the right
    spread still measured with that shape: sqrt(mean(x²)) · sqrt(Γ(5)/Γ(15))."""
    from scipy.special import gamma
    x = np.array([0.0, 1.0, 2.0, 2.0])
    shape, left, right = aggd_fit(x)
    assert shape == pytest.approx(0.2) and np.isnan(left)
    assert right == pytest.approx(np.sqrt(3.0) * np.sqrt(gamma(5.0) / gamma(15.0)), rel=1e-9)


def test_dark_flat_image_still_has_a_finite_niqe():
    """Blocks of one value (black) give NaN features; they are left out, not fatal, and warn nothing."""
    rng = np.random.default_rng(0)
    img = np.zeros((192, 288, 3), np.uint8)
    img[:, 96:] = rng.integers(20, 200, (192, 192, 3))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(niqe(img))


def test_noise_makes_an_image_less_natural():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:192, 0:288]
    smooth = (120 + 60 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None] * np.ones(3)).astype(np.uint8)
    noisy = np.clip(smooth + rng.normal(0, 25, smooth.shape), 0, 255).astype(np.uint8)
    assert niqe(noisy) > niqe(smooth) + 1


@pytest.mark.parametrize("bad", [np.zeros((192, 192), np.uint8), np.zeros((192, 192, 3), np.float32),
                                 np.zeros((96, 150, 3), np.uint8)])
def test_rejects_what_it_cannot_measure(bad):
    with pytest.raises(ValueError, match="niqe: image must"):
        niqe(bad)

"""EMNet's supervised loss terms (losses.supervised): the SSIM loss is piq's SSIM as the reference uses it."""
import pytest
import torch
import torch.nn.functional as F

from losses import ssim_loss


def test_ssim_loss():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    y = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = ssim_loss(x, y)
    assert loss.dim() == 0 and loss.item() > 0.5
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def _gaussian_ssim(x, y, pool):
    """SSIM from its definition: average-pool by ``pool``, 11x11 Gaussian σ 1.5, no padding, c1 = 0.01²,
    c2 = 0.03², mean over pixels and channels, then over the batch (the reference's piq formula)."""
    if pool > 1:
        x, y = F.avg_pool2d(x, pool), F.avg_pool2d(y, pool)
    r = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-r ** 2 / (2 * 1.5 ** 2))
    k = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, 11, 11)
    x, y = x.double(), y.double()

    def blur(t):
        return F.conv2d(t, k, groups=3)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).mean()


@pytest.mark.parametrize("shape,pool", [((4, 3, 128, 128), 1), ((1, 3, 400, 600), 2)])
def test_ssim_loss_is_the_references_piq_ssim(shape, pool):
    """128 crops: no pooling; a 600x400 image: average-pooled by round(400/256) = 2 first (issue 6.2)."""
    torch.manual_seed(0)
    y = F.interpolate(torch.rand(shape[0], 3, shape[2] // 16, shape[3] // 16), size=shape[2:], mode="bilinear")
    x = (y + 0.1 * torch.randn(shape)).clamp(0, 1)  # smooth image + noise: pooling matters
    close = pytest.approx(1 - _gaussian_ssim(x, y, pool).item(), abs=1e-5)
    assert ssim_loss(x, y).item() == close
    if pool > 1:  # without the pooling the value is clearly different
        assert abs((1 - _gaussian_ssim(x, y, 1).item()) - ssim_loss(x, y).item()) > 1e-2


def test_ssim_loss_of_a_nonfinite_image_is_nan_not_an_assertion():
    """A diverging run's NaN output must reach the training NaN guard as a NaN term."""
    x = torch.rand(1, 3, 16, 16)
    y = x.clone()
    y[0, 0, 0, 0] = float("nan")
    assert torch.isnan(ssim_loss(y, x)) and torch.isnan(ssim_loss(x, y))
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)

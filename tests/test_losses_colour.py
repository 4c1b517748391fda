"""This project's colour terms (losses.colour): L_chroma and L_balance by hand, L_balance against the colour-shift
metric, and their options through SCLLoss and the scl stage's flags."""
import numpy as np
import pytest
import torch

from losses import L_balance, L_chroma, SCLLoss
from metrics import colour_shift
from utils.colour import linear_to_srgb


def close(a, b, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                               rtol=rtol, atol=atol)


def test_chroma_hand_and_invariance():
    """L_chroma: 0 for a brightened copy (same chromaticity), hand value for a colour change."""
    I = torch.zeros(1, 3, 4, 4)
    I[:, 0], I[:, 1], I[:, 2] = 0.02, 0.04, 0.02          # chromaticity (0.25, 0.5, 0.25)
    close(L_chroma(4, eps=0)(I, I * 10), 0.0, atol=1e-7)
    E = torch.full((1, 3, 4, 4), 0.5)                      # grey: (1/3, 1/3, 1/3)
    close(L_chroma(4, eps=0)(I, E), (1 / 12 + 1 / 6 + 1 / 12) / 3, rtol=1e-6)
    E.requires_grad_(True)
    I.requires_grad_(True)
    L_chroma(4)(I, E).backward()
    assert I.grad is None or float(I.grad.abs().sum()) == 0.0  # the input is a fixed target
    assert float(E.grad.abs().sum()) > 0


def test_chroma_brightness_weighting_hand_value():
    """Two cells: one keeps its grey (output 0.2, weight 0.6/1.8), one turns red (0.6, 0.3, 0.3; weight
    1.2/1.8, error 1/6 + 1/12 + 1/12): uniform mean 1/18, weighted (2/3 · 1/3) / 3 channels = 2/27."""
    I = torch.full((1, 3, 4, 8), 0.2)
    E = I.clone()
    E[:, 0, :, 4:], E[:, 1:, :, 4:] = 0.6, 0.3
    close(L_chroma(4, eps=0)(I, E), 1 / 18, rtol=1e-6)
    close(L_chroma(4, eps=0, weighting="brightness")(I, E), 2 / 27, rtol=1e-6)
    close(L_chroma(4, eps=0, weighting="brightness")(I, I * 3), 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="weighting"):
        L_chroma(weighting="bright")


def test_chroma_linear_space():
    """space="linear": 0 for a longer exposure (linear light ×k, re-encoded in sRGB), which the sRGB
    space penalises; hand value on a flat cell."""
    lin = torch.zeros(1, 3, 4, 4)
    lin[:, 0], lin[:, 1], lin[:, 2] = 0.002, 0.004, 0.001     # a dark pixel on the sRGB toe
    I = torch.from_numpy(linear_to_srgb(lin.numpy()))
    E = torch.from_numpy(linear_to_srgb(lin.numpy() * 40))       # the same scene, 40× the exposure
    close(L_chroma(4, eps=0, space="linear")(I, E), 0.0, atol=1e-6)
    assert float(L_chroma(4, eps=0)(I, E)) > 0.01                # sRGB proportions do change
    # flat cells: linear chromaticity (2/7, 4/7, 1/7) against a grey output (1/3 each)
    G = torch.full((1, 3, 4, 4), 0.5)
    close(L_chroma(4, eps=0, space="linear")(I, G), (abs(2 / 7 - 1 / 3) + abs(4 / 7 - 1 / 3) + abs(1 / 7 - 1 / 3)) / 3,
          rtol=1e-5)
    with pytest.raises(ValueError, match="space"):
        L_chroma(space="lab")


def test_chroma_linear_share_mixes_the_two_spaces():
    """linear_share t: t · (linear term) + (1 − t) · (sRGB term), on a hand case and on random data; t = 1
    is the linear loss, and the share is ignored in sRGB space; t outside [0, 1] is refused."""
    # one 4x4 cell: input grey 0.02 (linear 0.02/12.92, in the toe), output (0.5, 0.25, 0.25) both spaces
    I = torch.full((1, 3, 4, 4), 0.02)
    E = torch.tensor([0.5, 0.25, 0.25]).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    def err(i: float, e: list[float]) -> float:  # mean |c(E) − c(I)| over channels, eps 1e-4 in both sums
        return sum(abs(v / (sum(e) + 1e-4) - i / (3 * i + 1e-4)) for v in e) / 3

    srgb = err(0.02, [0.5, 0.25, 0.25])  # about 1/9
    linear = err(0.02 / 12.92, [((v + 0.055) / 1.055) ** 2.4 for v in (0.5, 0.25, 0.25)])
    assert abs(srgb - 1 / 9) < 1e-3 and linear > 0.2
    for t in (0.0, 0.25, 0.7, 1.0):
        close(L_chroma(space="linear", linear_share=t)(I, E), torch.tensor(t * linear + (1 - t) * srgb), rtol=1e-5)
    g = torch.Generator().manual_seed(3)
    I, E = torch.rand(2, 3, 8, 8, generator=g) * 0.1, torch.rand(2, 3, 8, 8, generator=g)
    a, b = L_chroma(space="linear")(I, E), L_chroma(space="srgb")(I, E)
    close(L_chroma(space="linear", linear_share=0.3)(I, E), 0.3 * a + 0.7 * b, rtol=1e-6)
    assert torch.equal(L_chroma(space="linear", linear_share=1.0)(I, E), a)
    assert torch.equal(L_chroma(space="srgb", linear_share=0.3)(I, E), b)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="linear_share"):
            L_chroma(space="linear", linear_share=bad)


def test_scl_loss_passes_chroma_options():
    """SCLLoss builds L_chroma with the stage's --chroma_weighting / --chroma_space: its term is w · the loss."""
    g = torch.Generator().manual_seed(0)
    I, E = torch.rand(2, 3, 8, 8, generator=g) * 0.1, torch.rand(2, 3, 8, 8, generator=g)
    A = torch.zeros(2, 24, 8, 8)
    for space in ("srgb", "linear"):
        for weighting in ("uniform", "brightness"):
            t = SCLLoss({"chroma": 7.0}, chroma_space=space, chroma_weighting=weighting)(I, E, A)
            close(t["chroma"], 7.0 * L_chroma(space=space, weighting=weighting)(I, E), rtol=1e-6)
    assert not torch.isclose(SCLLoss({"chroma": 1.0}, chroma_space="linear")(I, E, A)["chroma"],
                             SCLLoss({"chroma": 1.0})(I, E, A)["chroma"])
    t = SCLLoss({"chroma": 7.0}, chroma_space="linear", chroma_linear_share=0.4)(I, E, A)
    close(t["chroma"], 7.0 * L_chroma(space="linear", linear_share=0.4)(I, E), rtol=1e-6)


def test_balance_hand_value_counts_the_tone_curve_and_matches_the_benchmark():
    """L_balance: image-level proportions. A dark green half brightened 10× next to an unchanged grey
    half keeps every pixel's colour (L_chroma 0) but moves the image's channel means: means
    (0.26, 0.27, 0.26) → (0.35, 0.45, 0.35). Equal to metrics.colour_shift on random images."""
    I = torch.zeros(1, 3, 4, 8)
    I[:, 0, :, :4], I[:, 1, :, :4], I[:, 2, :, :4] = 0.02, 0.04, 0.02
    I[:, :, :, 4:] = 0.5
    E = I.clone()
    E[:, :, :, :4] *= 10
    close(L_chroma(4, eps=0)(I, E), 0.0, atol=1e-7)
    hand = 2 * abs(0.26 / 0.79 - 0.35 / 1.15) + abs(0.27 / 0.79 - 0.45 / 1.15)
    close(L_balance(eps=0)(I, E), hand, rtol=1e-5)
    close(L_balance(eps=0)(I, I * 3), 0.0, atol=1e-7)
    g = torch.Generator().manual_seed(5)
    I, E = torch.rand(3, 3, 6, 5, generator=g), torch.rand(3, 3, 6, 5, generator=g)
    ref = np.mean([colour_shift(i.permute(1, 2, 0).numpy(), e.permute(1, 2, 0).numpy()) for i, e in zip(I, E)])
    close(L_balance(eps=0)(I, E), float(ref), rtol=1e-5)
    E.requires_grad_(True)
    I.requires_grad_(True)
    L_balance()(I, E).backward()
    assert I.grad is None or float(I.grad.abs().sum()) == 0.0  # the input is a fixed target
    assert float(E.grad.abs().sum()) > 0


def test_scl_loss_balance_term_is_its_weight_times_the_loss():
    g = torch.Generator().manual_seed(1)
    I, E = torch.rand(2, 3, 8, 8, generator=g) * 0.1, torch.rand(2, 3, 8, 8, generator=g)
    t = SCLLoss({"balance": 3.0, "chroma": 0.0})(I, E, torch.zeros(2, 24, 8, 8))
    assert set(t) == {"balance"}
    close(t["balance"], 3.0 * L_balance()(I, E), rtol=1e-6)


def test_balance_colour_only_has_the_same_value_and_no_gradient_through_brightness():
    """colour_only: the value is unchanged, but scaling a pixel's three channels alike (its brightness)
    gets no gradient, while a channel of its own does."""
    g = torch.Generator().manual_seed(2)
    I, E = torch.rand(2, 3, 5, 5, generator=g), torch.rand(2, 3, 5, 5, generator=g)
    close(L_balance(eps=0, colour_only=True)(I, E), L_balance(eps=0)(I, E), rtol=1e-6)
    k = torch.ones(2, 1, 5, 5, requires_grad=True)
    L_balance(eps=0, colour_only=True)(I, E * k).backward()
    close(k.grad, torch.zeros_like(k), atol=1e-6)
    k.grad = None
    L_balance(eps=0)(I, E * k).backward()
    assert float(k.grad.abs().sum()) > 1e-3
    r = torch.ones(2, 3, 5, 5, requires_grad=True)
    L_balance(eps=0, colour_only=True)(I, E * r).backward()
    assert float(r.grad.abs().sum()) > 1e-3


def test_chroma_linear_fade_gives_dark_cells_the_share_and_bright_cells_srgb():
    """linear_fade=(0.2, 0.6), t = 0.5: a cell whose input's brightest channel is 0.1 gets share 0.5, one at
    0.4 (halfway) 0.25, one at 0.8 share 0; the loss is the mean of the three cells' own losses."""
    def cell(rgb_in, rgb_out):
        i = torch.tensor(rgb_in).view(1, 3, 1, 1).expand(1, 3, 4, 4)
        return i.contiguous(), torch.tensor(rgb_out).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()

    cells = [cell([0.1, 0.05, 0.02], [0.5, 0.4, 0.3]), cell([0.4, 0.2, 0.1], [0.7, 0.5, 0.2]),
             cell([0.8, 0.3, 0.3], [0.9, 0.5, 0.3])]
    I, E = torch.cat([c[0] for c in cells], dim=3), torch.cat([c[1] for c in cells], dim=3)
    faded = L_chroma(space="linear", linear_share=0.5, linear_fade=(0.2, 0.6))(I, E)
    own = [L_chroma(space="linear", linear_share=s)(i, e) for s, (i, e) in zip((0.5, 0.25, 0.0), cells)]
    close(faded, sum(own) / 3, rtol=1e-5)
    assert abs(float(faded) - float(L_chroma(space="linear", linear_share=0.5)(I, E))) > 1e-3  # the fade matters
    for kwargs in ({"space": "srgb"}, {"space": "linear", "weighting": "brightness"}):
        with pytest.raises(ValueError, match="linear_fade"):
            L_chroma(linear_fade=(0.2, 0.6), **kwargs)
    with pytest.raises(ValueError, match="a < b"):
        L_chroma(space="linear", linear_fade=(0.6, 0.2))


def test_scl_stage_passes_the_fade_and_balance_flags_to_its_loss():
    """train.py --stage scl flags reach SCLLoss: --chroma_linear_fade, --balance_colour_only, --w_balance."""
    import argparse

    from stages import scl

    p = argparse.ArgumentParser()
    scl.add_arguments(p)
    args = p.parse_args(["--w_seg", "0", "--w_feat", "0", "--w_percep", "0", "--w_chroma", "2", "--chroma_space",
                         "linear", "--chroma_linear_share", "0.5", "--chroma_linear_fade", "0.2", "0.6",
                         "--w_balance", "3", "--balance_colour_only"])
    crit = scl._criterion(args, scl.check_arguments(args), torch.device("cpu"))
    assert crit.chroma.fade == (0.2, 0.6) and crit.chroma.linear_share == 0.5
    assert crit.balance.colour_only and crit.w["balance"] == 3.0

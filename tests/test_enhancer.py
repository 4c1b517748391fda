"""network/enhancer.py: the Enhancer owns padding, 8-bit in/out, tiling and the output of every architecture."""
from __future__ import annotations

import pytest
import torch

from helpers import random_dce
from network.emnet import EMNet
from network.enhancer import Enhancer, as_enhancer, load_enhancer, pad_to_multiple, reflect_pad
from utils.errors import UserError
from utils.image_io import to_uint8


def _tiny_emnet() -> EMNet:
    torch.manual_seed(0)
    return EMNet(dim=4, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).eval()


def test_checkpoints_are_the_networks(tmp_path):
    """No ``net.`` prefix: an Enhancer's state dict is the reference network's and loads back into one."""
    net = random_dce(seed=1)
    e = Enhancer(net)
    assert list(e.state_dict()) == list(net.state_dict()) and e.arch == "dce"
    torch.save(e.state_dict(), tmp_path / "e.pth")
    back = load_enhancer("auto", str(tmp_path / "e.pth"))
    assert isinstance(back, Enhancer) and not back.training
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), net.state_dict().values()))
    other = Enhancer(random_dce(seed=2))
    other.load_state_dict(net.state_dict())
    assert torch.equal(other.net.e_conv7.bias, net.e_conv7.bias)


def test_output_is_the_final_image_of_the_triple_and_8bit_rounds_like_save_image():
    net = random_dce(seed=3).eval()
    e = Enhancer(net)
    x = torch.rand(2, 3, 19, 23)
    with torch.no_grad():
        y = e(x)
        torch.testing.assert_close(y, net(x)[1], atol=2e-6, rtol=0)  # fused kernels: float rounding
    y8 = e.enhance_8bit((x * 255).round().to(torch.uint8))
    assert y8.dtype == torch.uint8 and y8.shape == x.shape
    with torch.no_grad():
        ref = e((x * 255).round().to(torch.uint8))
    for k in range(2):  # the 8-bit image is what save_image writes of the float result
        assert torch.equal(y8[k].permute(1, 2, 0), torch.from_numpy(to_uint8(ref[k].clamp(0, 1))))


def test_padding_to_the_architectures_multiple():
    """EMNet (multiple 8): 13x21 is padded by reflection (replicate where a side is shorter than its pad)
    and cropped back; the branch-free form used when tracing gives the same values where reflect applies."""
    m = _tiny_emnet()
    e = as_enhancer(m)
    x = torch.rand(1, 3, 13, 21)
    with torch.no_grad():
        y = e(x)
        padded, (h, w) = pad_to_multiple(x, 8)
        assert padded.shape[-2:] == (16, 24) and (h, w) == (13, 21)
        assert torch.equal(y, m(padded)[..., :13, :21])
    assert torch.equal(reflect_pad(x, 8), padded)
    tiny = torch.rand(1, 3, 3, 5)  # sides shorter than their pads: replicate
    p, _ = pad_to_multiple(tiny, 8)
    assert p.shape[-2:] == (8, 8) and torch.equal(p[..., 7, :5], tiny[..., 2, :])


def test_tiles_are_refused_where_they_would_change_the_output():
    e = as_enhancer(_tiny_emnet())
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad(), pytest.raises(UserError, match="tile 16: EMNet attends to the whole image"):
        e.enhance(x, tile=16)
    with torch.no_grad():  # an image that fits the tile is one piece
        assert torch.equal(e.enhance(x, tile=64), e(x))

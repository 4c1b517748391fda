"""EMNet enhancer (SPEC §5): state-dict layout, golden output, padded forward, gradients, size."""
import math

import pytest
import torch

from helpers import COMPAT, requires_shared, set_golden_weights
from lowlight_model import enhance, pad_to_multiple
from network.emnet import EMNet

KEYS_FILE = COMPAT / "emnet_enhancer_dim32.keys.txt"


def _listing():
    """[(key, shape tuple)] from the compat listing."""
    out = []
    for line in KEYS_FILE.read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            out.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = EMNet()
    set_golden_weights(m)
    return m.eval()


@requires_shared
def test_state_dict_matches_compat_listing():
    got = [(k, tuple(v.shape)) for k, v in EMNet().state_dict().items()]
    assert got == _listing()


@requires_shared
def test_golden_output(model):
    golden = torch.load(COMPAT / "golden_vectors.pt")["emnet_enhancer_dim32"]
    with torch.no_grad():
        out = model(golden["input"])
    ref = golden["output"]
    assert out.shape == ref.shape
    max_abs = (out - ref).abs().max().item()
    rel = max_abs / ref.abs().max().item()
    print(f"\nEMNet golden: max abs err {max_abs:.3e}, max rel err (vs max |ref|) {rel:.3e}")
    assert rel < 1e-5
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_rejects_sizes_not_multiple_of_8(model):
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 3, 37, 45))


def test_pad_to_multiple_modes():
    x = torch.rand(2, 3, 37, 45)
    padded, (h, w) = pad_to_multiple(x)
    assert (h, w) == (37, 45) and padded.shape == (2, 3, 40, 48)
    assert torch.equal(padded[..., :37, :45], x)
    assert torch.equal(padded[..., 37, :45], x[..., 35, :])  # reflect: row 37 mirrors row 35
    same, size = pad_to_multiple(torch.ones(1, 3, 16, 24) * 0.5)
    assert size == (16, 24) and same.shape == (1, 3, 16, 24)
    tiny, size = pad_to_multiple(torch.rand(1, 3, 3, 9))  # pad 5 >= 3 rows: replicate on H
    assert size == (3, 9) and tiny.shape == (1, 3, 8, 16)
    assert torch.equal(tiny[..., 7, :9], tiny[..., 2, :9])


def test_padded_forward(model):
    torch.manual_seed(1)
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        y = enhance(model, x)
        assert y.shape == (1, 3, 37, 45)
        assert torch.isfinite(y).all()
        padded, _ = pad_to_multiple(x)
        assert torch.equal(model(padded)[..., :37, :45], y)
        x8 = torch.rand(1, 3, 32, 40)  # already a multiple of 8: padding is a no-op
        assert torch.equal(enhance(model, x8), model(x8))


def test_backward_finite_gradients():
    torch.manual_seed(2)
    m = EMNet().train()
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape
    (y - x.detach()).abs().mean().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(x.grad).all()
    assert any(g.abs().sum() > 0 for g in grads)


@requires_shared
def test_parameter_count():
    expected = sum(math.prod(shape) for _, shape in _listing())
    got = sum(p.numel() for p in EMNet().parameters())
    print(f"\nEMNet parameters: {got:,} (listing: {expected:,})")
    assert got == expected

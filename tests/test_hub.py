"""hubconf.py through torch.hub (source="local"): the entry points, their weights, their errors."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from helpers import COMPAT, ROOT, make_deeplab_checkpoint, random_dce, requires_shared, set_golden_weights
from lowlight_model import enhance, load_enhancer
from network.emnet import EMNet
from network.modeling import deeplabv3plus_mobilenet
from utils.checkpoint import load_weights
from utils.errors import UserError
from utils.model_card import inference_defaults

REPO = str(ROOT)
ENTRIES = ["dce_net", "deeplabv3plus_mobilenet", "emnet"]


def hub(entry: str, **kwargs) -> torch.nn.Module:
    return torch.hub.load(REPO, entry, source="local", **kwargs)


def _x(h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 0.4


def test_list_and_help(monkeypatch):
    """torch.hub.list/help take only GitHub names: their download step is replaced by this clone."""
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *a, **k: REPO)
    assert sorted(torch.hub.list("owner/repo")) == ENTRIES
    assert "DCE-Net" in torch.hub.help("owner/repo", "dce_net")
    assert "output_stride" in torch.hub.help("owner/repo", "deeplabv3plus_mobilenet")


def test_dce_net_shipped_equals_direct_load():
    model = hub("dce_net", weights="shipped")
    direct = load_enhancer("auto", str(ROOT / "checkpoints" / "LLE_model.pth"), torch.device("cpu"))
    assert not model.training and model.arch == "dce"
    x = _x()
    card = inference_defaults(str(ROOT / "checkpoints" / "LLE_model.pth"))  # the shipped card's exposure
    with torch.inference_mode():
        got, ref = model(x), enhance(direct, x, **card)
        own = hub("dce_net", weights="shipped", exposure="off")(x)
        assert torch.equal(own, enhance(direct, x))
    assert (got - ref).abs().max() <= 1e-6  # enhance() fuses the activations on the CPU: float rounding
    assert (got - x).abs().max() > 0.05  # a trained model, not an identity
    assert hub("dce_net").state_dict().keys() == direct.state_dict().keys()  # "shipped" is the default


def test_dce_net_path_and_random(tmp_path):
    ref_model = random_dce(seed=3)
    path = tmp_path / "Epoch9.pth"
    torch.save(ref_model.state_dict(), path)
    model = hub("dce_net", weights=str(path), map_location="cpu")
    x = _x(seed=1)
    with torch.inference_mode():
        assert torch.equal(model.net(x)[1], ref_model(x)[1])
        torch.testing.assert_close(model(x), ref_model(x)[1], atol=1e-6, rtol=0)  # the fused inference path
    rand = hub("dce_net", weights=None)
    assert not rand.training
    w = rand.net.e_conv2.weight
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002  # the reference init
    assert not torch.equal(rand.net.e_conv1.weight, model.net.e_conv1.weight)


@requires_shared
def test_dce_net_official_checkpoint_golden():
    model = hub("dce_net", weights=str(COMPAT / "SCL-LLE.pth"))
    golden = torch.load(COMPAT / "golden_vectors.pt", map_location="cpu", weights_only=True)["dce_scl_lle"]
    with torch.inference_mode():
        out = model.net(golden["input"])
    torch.testing.assert_close(out[1], golden["enhance_image"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[2], golden["r"], atol=1e-5, rtol=1e-5)


def test_emnet_checkpoint_and_width(tmp_path):
    torch.manual_seed(2)
    direct = EMNet(dim=8).eval()
    path = tmp_path / "model_best.pth"
    torch.save({"epoch": 4, "state_dict": {f"module.{k}": v for k, v in direct.state_dict().items()}}, path)
    model = hub("emnet", weights=str(path), embed_dim=8)
    assert not model.training and model.arch == "emnet"
    x = _x(16, 24, seed=2)
    with torch.inference_mode():
        assert torch.equal(model(x), direct(x))
        y = _x(20, 29, seed=4)  # other sizes: padded to multiples of 8 inside, cropped back
        h, w = y.shape[-2:]
        padded = direct(torch.nn.functional.pad(y, (0, -w % 8, 0, -h % 8), mode="reflect"))[..., :h, :w]
        assert model(y).shape == y.shape and torch.equal(model(y), padded)
    with pytest.raises(UserError, match="embed dim 8; pass embed_dim=8"):
        hub("emnet", weights=str(path), embed_dim=32)
    assert hub("emnet", embed_dim=8).net.patch_embed.proj.out_channels == 8
    assert hub("emnet", weights=str(path)).net.patch_embed.proj.out_channels == 8  # the checkpoint's width


def test_deeplab_checkpoint_equals_direct(tmp_path):
    path = make_deeplab_checkpoint(tmp_path / "best_deeplabv3plus_mobilenet_cityscapes_os16.pth")
    model = hub("deeplabv3plus_mobilenet", weights=str(path))
    direct = load_weights(deeplabv3plus_mobilenet(), str(path)).eval()
    assert not model.training
    x = _x(33, 41, seed=3)
    with torch.inference_mode():
        out = model(x)
        assert out.shape == (2, 19, 33, 41)
        assert torch.equal(out, direct(x))
    assert hub("deeplabv3plus_mobilenet", num_classes=5, output_stride=8)(x[:1]).shape == (1, 5, 33, 41)


@requires_shared
def test_deeplab_golden_weights(tmp_path):
    """The public port's numerics through the hub entry point: the golden output of compat/README.md."""
    path = tmp_path / "golden.pth"
    torch.save({"model_state": set_golden_weights(deeplabv3plus_mobilenet()).state_dict()}, path)
    model = hub("deeplabv3plus_mobilenet", weights=str(path))
    golden = torch.load(COMPAT / "golden_vectors.pt", map_location="cpu", weights_only=True)
    g = golden["deeplabv3plus_mobilenet_os16"]
    with torch.inference_mode():
        torch.testing.assert_close(model(g["input"]), g["output"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("entry, kwargs, match", [
    ("dce_net", {"weights": "shiped"}, r"dce_net\(weights='shiped'\): no such file; pass a checkpoint path, 'shipped'"),
    ("emnet", {"weights": "shipped"}, r"no checkpoint ships for emnet"),
    ("deeplabv3plus_mobilenet", {"weights": "missing.pth"}, r"no such file"),
    ("dce_net", {"weights": 3}, r"pass None, a checkpoint path or 'shipped'"),
    ("dce_net", {"map_location": "tpu"}, r"map_location='tpu'"),
])
def test_bad_arguments_one_line(entry, kwargs, match):
    with pytest.raises(UserError, match=match) as e:
        hub(entry, **kwargs)
    assert "\n" not in str(e.value)


def test_wrong_checkpoint_kind(tmp_path):
    dce_path = tmp_path / "dce.pth"
    torch.save(random_dce().state_dict(), dce_path)
    with pytest.raises(UserError, match="holds an enhancer of arch 'dce', not EMNet; use .*dce_net"):
        hub("emnet", weights=str(dce_path))
    em_path = tmp_path / "em.pth"
    torch.save(EMNet(dim=8).state_dict(), em_path)
    with pytest.raises(UserError, match="holds an enhancer of arch 'emnet', not DCE-Net; use .*emnet"):
        hub("dce_net", weights=str(em_path))
    with pytest.raises(UserError, match="does not match DeepLabV3"):
        hub("deeplabv3plus_mobilenet", weights=str(dce_path))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        hub("dce_net", weights=str(bad))


def test_load_from_another_folder(tmp_path):
    """A fresh interpreter outside the repository: torch.hub puts the clone on sys.path itself."""
    code = (f"import torch; m = torch.hub.load({REPO!r}, 'dce_net', source='local', exposure='off'); "
            "x = torch.full((1, 3, 8, 8), 0.2); print(type(m.net).__name__, round(m(x).mean().item(), 6))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    model = load_enhancer("auto", str(ROOT / "checkpoints" / "LLE_model.pth"), torch.device("cpu"))
    with torch.inference_mode():
        ref = model(torch.full((1, 3, 8, 8), 0.2)).mean().item()
    assert r.stdout.split() == ["enhance_net_nopool", str(round(ref, 6))]

"""network/: DeepLabV3/V3+ layout and numerics of the public port, checkpoints, ImageNet init."""

import numpy as np
import pytest
import torch

from network import SEGMENTATION_MODELS, build_segmentation_model
from network.modeling import deeplabv3plus_mobilenet
from helpers import COMPAT, make_deeplab_checkpoint, requires_shared, save_as_numpy1, set_golden_weights
from utils.checkpoint import load_weights, read_checkpoint
from utils.errors import UserError

GOLDEN_VARIANTS = ["deeplabv3plus_mobilenet_os16", "deeplabv3_mobilenet_os16",
                   "deeplabv3plus_resnet50_os16", "deeplabv3plus_mobilenet_os8"]


def _split(variant: str) -> tuple[str, int]:
    name, stride = variant.rsplit("_os", 1)
    return name, int(stride)


@pytest.fixture(scope="module")
def golden():
    return torch.load(COMPAT / "golden_vectors.pt")


# (1) state-dict layout -------------------------------------------------------------------------

@requires_shared
@pytest.mark.parametrize("name", list(SEGMENTATION_MODELS))
def test_state_dict_matches_public_port(name):
    lines = (COMPAT / f"{name}_os16_19cls.keys.txt").read_text().splitlines()
    expected = [tuple(line.split("\t")) for line in lines if line.strip()]
    state = SEGMENTATION_MODELS[name](num_classes=19, output_stride=16).state_dict()
    got = [(k, str(tuple(v.shape))) for k, v in state.items()]
    assert got == expected


# (2) numerics against the public port ------------------------------------------------------------

@requires_shared
@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_golden_outputs(golden, variant):
    name, stride = _split(variant)
    model = set_golden_weights(build_segmentation_model(name, 19, stride)).eval()
    x, ref = golden[variant]["input"], golden[variant]["output"]
    with torch.no_grad():
        y = model(x)
    assert y.shape == ref.shape
    if "resnet" in name:  # large outputs (random statistics compound): relative to the output scale
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
    else:  # measured max abs error ~5e-5 for outputs up to ~10 (float32 round-off)
        torch.testing.assert_close(y, ref, rtol=0, atol=3e-4)


@pytest.mark.parametrize("name", ["deeplabv3_mobilenet", "deeplabv3plus_mobilenet",
                                  "deeplabv3_resnet50", "deeplabv3plus_resnet50"])
@pytest.mark.parametrize("stride", [8, 16])
def test_output_shape_and_dilation(name, stride):
    model = build_segmentation_model(name, num_classes=5, output_stride=stride).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 37, 45))
    assert y.shape == (1, 5, 37, 45)
    if "resnet" in name:
        assert model.backbone.layer4[0].conv2.stride == (1, 1)
        assert model.backbone.layer3[0].conv2.stride == ((1, 1) if stride == 8 else (2, 2))
        feats = model.backbone(torch.rand(1, 3, 64, 64))
        assert feats["out"].shape[-2:] == (64 // stride, 64 // stride)


# (3) checkpoints of the public port ---------------------------------------------------------------

@pytest.mark.parametrize("numpy1", [True, False])
def test_port_checkpoint_loads_strict(tmp_path, numpy1):
    """The real file's layout: numpy.float64 best_score, optimizer and scheduler states (issue 6.1)."""
    path = make_deeplab_checkpoint(tmp_path / "best_deeplabv3plus_mobilenet_cityscapes_os16.pth", numpy1=numpy1)
    ck = read_checkpoint(str(path))
    assert isinstance(ck["best_score"], np.float64) and ck["cur_itrs"] == 30000
    assert {"optimizer_state", "scheduler_state"} <= set(ck)
    src = set_golden_weights(deeplabv3plus_mobilenet()).eval()
    state = {k: v for k, v in ck.items() if k != "model_state"}
    path = tmp_path / "golden.pth"
    save_as_numpy1({**state, "model_state": src.state_dict()}, path)
    x = torch.rand(1, 3, 33, 41)
    with torch.no_grad():
        ref = src(x)
    dst = load_weights(deeplabv3plus_mobilenet(), str(path), "cpu").eval()
    with torch.no_grad():
        assert torch.equal(dst(x), ref)
    with pytest.raises(UserError, match="missing keys"):
        load_weights(build_segmentation_model("deeplabv3_mobilenet"), str(path))


# (4) ImageNet backbone init, never downloaded ------------------------------------------------------

def test_pretrained_mobilenet_copies_imagenet_features(fake_torch_home):
    fake = torch.load(fake_torch_home / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth")
    model = deeplabv3plus_mobilenet(pretrained_backbone=True)
    bb = model.backbone
    assert torch.equal(bb.low_level_features[0][0].weight, fake["features.0.0.weight"])
    assert torch.equal(bb.high_level_features[-1].conv[2].weight, fake["features.17.conv.2.weight"])
    # every backbone tensor comes from features.0..17 of the ImageNet file, in order
    source = [v for k, v in fake.items() if k.startswith("features.") and int(k.split(".")[1]) < 18]
    target = list(bb.state_dict().values())
    assert len(source) == len(target)
    assert all(torch.equal(a, b) for a, b in zip(source, target))


def test_pretrained_backbone_missing_file_is_user_error():
    with pytest.raises(UserError, match="mobilenet_v2-b0353104.pth"):
        deeplabv3plus_mobilenet(pretrained_backbone=True)
    with pytest.raises(UserError, match="resnet50-0676ba61.pth"):
        build_segmentation_model("deeplabv3plus_resnet50", pretrained_backbone=True)


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(UserError) as e:
        build_segmentation_model("deeplabv3plus_xception")
    msg = str(e.value)
    assert "deeplabv3plus_xception" in msg and "\n" not in msg
    assert all(name in msg for name in SEGMENTATION_MODELS)


def test_unsupported_output_stride_is_user_error():
    with pytest.raises(UserError, match="output stride 32"):
        build_segmentation_model("deeplabv3plus_mobilenet", output_stride=32)

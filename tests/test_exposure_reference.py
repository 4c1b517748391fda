"""Exposure references of the real brackets in the SCL data (``reference/`` beside ``leftImg8bit/``), the
``L_exp_ref`` term they feed (``--w_expref``), and ``--init_weights`` of the SCL stage."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import train
from helpers import make_cityscapes, make_contrast
from lowlight_model import enhance_net_nopool
from losses.zero_dce import L_exp_ref
from stages.runlog import read_losses
from utils.errors import UserError


def _with_references(root, names=("city0/city0_000000_000019",)):
    """Give the named images of ``make_cityscapes`` a reference: 255 − the image (so ref = 1 − image)."""
    for name in names:
        img = np.asarray(Image.open(root / "leftImg8bit" / "train" / f"{name}_leftImg8bit.png"))
        ref = root / "reference" / "train" / f"{name}_leftImg8bit.png"
        ref.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - img).save(ref)
    return root


def test_l_exp_ref_by_hand():
    x = torch.full((2, 3, 8, 8), 0.3, requires_grad=True)
    ref = torch.stack([torch.full((3, 8, 8), 0.5), torch.full((3, 8, 8), -1.0)])
    ref[0, :, :4, :4] = 0.2  # one patch of four at 0.2: (0.3 − 0.2)² there, (0.3 − 0.5)² in the other three
    loss = L_exp_ref(4)(x, ref)
    want = (0.01 + 3 * 0.04) / 4 / 2  # item 1 (no reference) adds 0 and counts in the batch mean
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    assert torch.all(x.grad[1] == 0) and torch.all(x.grad[0] != 0)
    assert L_exp_ref(4)(torch.full((1, 3, 8, 8), 0.5), torch.full((1, 3, 8, 8), 0.5)).item() == 0


def test_cityscapes_items_carry_aligned_references(tmp_path):
    from datasets.cityscapes import NO_REFERENCE, Cityscapes

    root = _with_references(make_cityscapes(tmp_path / "cs", n=2, labels=False))
    plain = Cityscapes(str(root), crop_size=16, require_labels=False)
    assert len(plain[0]) == 2  # without references=True nothing changes
    ds = Cityscapes(str(root), crop_size=16, require_labels=False, references=True)
    have = {os.path.basename(p): r is not None for (p, _), r in zip(ds.files, ds.references)}
    assert have == {"city0_000000_000019_leftImg8bit.png": True, "city1_000001_000019_leftImg8bit.png": False}
    k = [r is not None for r in ds.references].index(True)
    for seed in range(6):  # random crops and flips: the reference follows the image
        torch.manual_seed(seed)
        image, _, ref = ds[k]
        assert image.shape == ref.shape == (3, 16, 16)
        assert torch.allclose(ref, 1 - image, atol=1e-6)
        _, _, none = ds[1 - k]
        assert torch.all(none == NO_REFERENCE)


def test_reference_errors_name_the_file(tmp_path):
    from datasets.cityscapes import Cityscapes

    root = make_cityscapes(tmp_path / "cs", n=2, labels=False)
    with pytest.raises(UserError, match=r"reference/train: folder of exposure references not found.*--scl_into"):
        Cityscapes(str(root), require_labels=False, references=True)
    (root / "reference" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="no image of .* has a reference"):
        Cityscapes(str(root), require_labels=False, references=True)
    bad = root / "reference" / "train" / "city0" / "city0_000000_000019_leftImg8bit.png"
    bad.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(bad)
    ds = Cityscapes(str(root), crop_size=16, require_labels=False, references=True)
    with pytest.raises(UserError, match=r"city0_000000_000019_leftImg8bit.png: reference is 12x10 but image .* is 64x48"):
        ds.stored(0)


def _scl_args(tmp_path, city, *extra):
    contrast = make_contrast(tmp_path / "Contrast")
    return ["--stage", "scl", "--data_root", str(city), "--contrast_dir", str(contrast), "--crop_size", "32",
            "--batch_size", "2", "--num_workers", "0", "--device", "cpu", "--log_every", "1", "--random_seed", "3",
            "--w_seg", "0", "--w_segexp", "0", "--w_feat", "0", "--w_percep", "0", *extra]


def test_scl_stage_trains_with_the_reference_term(tmp_path):
    city = _with_references(make_cityscapes(tmp_path / "cs", n=2, labels=False))
    out = tmp_path / "snap"
    train.main(_scl_args(tmp_path, city, "--w_expref", "5", "--total_itrs", "4", "--snapshots_folder", str(out)))
    rows = read_losses(str(out / "losses.jsonl"))
    assert all("expref" in r for r in rows)
    # batches of the two images: the referenced one is in every batch, so the term is never 0
    assert all(r["expref"] > 0 for r in rows)
    bare = make_cityscapes(tmp_path / "bare", n=2, labels=False)
    with pytest.raises(UserError, match="exposure references not found"):
        train.main(_scl_args(tmp_path, bare, "--w_expref", "5", "--total_itrs", "1",
                             "--snapshots_folder", str(tmp_path / "s2")))


def test_scl_init_weights_starts_from_the_given_weights(tmp_path):
    city = make_cityscapes(tmp_path / "cs", n=2, labels=False)
    start = enhance_net_nopool()
    torch.manual_seed(7)
    for p in start.parameters():
        p.data.normal_(0, 0.01)
    torch.save(start.state_dict(), tmp_path / "start.pth")
    out = tmp_path / "snap"
    # one step at a rate too small to move a weight: the snapshot is the starting point
    train.main(_scl_args(tmp_path, city, "--init_weights", str(tmp_path / "start.pth"), "--total_itrs", "1",
                         "--snapshot_iter", "1", "--lowlight_lr", "1e-30", "--lowlight_weight_decay", "0",
                         "--snapshots_folder", str(out)))
    got = torch.load(out / "Epoch1.pth", map_location="cpu")
    for k, v in start.state_dict().items():
        assert torch.allclose(got[k], v, atol=1e-12), k
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(UserError, match="text.pth"):
        train.main(_scl_args(tmp_path, city, "--init_weights", str(tmp_path / "text.pth"), "--total_itrs", "1",
                             "--snapshots_folder", str(tmp_path / "s3")))


def test_exp_skip_referenced_leaves_the_referenced_images_to_l_exp_ref():
    from losses import SCLLoss
    from losses.zero_dce import L_exp

    E = torch.stack([torch.full((3, 8, 8), 0.3), torch.full((3, 8, 8), 0.7)])
    R = torch.stack([torch.full((3, 8, 8), 0.5), torch.full((3, 8, 8), -1.0)])
    # zero_dce variant, level 0.5: item 0 alone (0.04), item 1 alone (0.04), both (mean 0.04)
    assert L_exp(4, 0.5, "zero_dce")(E).item() == pytest.approx(0.04, rel=1e-5)
    assert L_exp(4, 0.5, "zero_dce")(E, torch.tensor([False, True])).item() == pytest.approx(0.02, rel=1e-5)
    # scl variant: (clamp(m, 0, .55) − .5)² + (clamp(m, .55, 1) − .5)², by hand for item 1 (m = 0.7)
    want_1 = (0.55 - 0.5) ** 2 + (0.7 - 0.5) ** 2
    assert L_exp(4, 0.5)(E, torch.tensor([False, True])).item() == pytest.approx(want_1 / 2, rel=1e-5)
    weights = {"exp": 2.0, "expref": 3.0}
    both = SCLLoss(weights, exp_patch=4, exp_level=0.5)(E, E, None, R=R)
    skip = SCLLoss(weights, exp_patch=4, exp_level=0.5, exp_skip_referenced=True)(E, E, None, R=R)
    assert both["expref"].item() == skip["expref"].item() == pytest.approx(3.0 * 0.04 / 2, rel=1e-5)
    want_0 = (0.3 - 0.5) ** 2 + (0.55 - 0.5) ** 2
    assert both["exp"].item() == pytest.approx(2.0 * (want_0 + want_1) / 2, rel=1e-5)
    assert skip["exp"].item() == pytest.approx(2.0 * want_1 / 2, rel=1e-5)


def test_exp_flags_need_their_terms(tmp_path):
    city = _with_references(make_cityscapes(tmp_path / "cs", n=2, labels=False))
    with pytest.raises(UserError, match="--expref_relative changes L_exp_ref: it needs --w_expref"):
        train.main(_scl_args(tmp_path, city, "--expref_relative", "--total_itrs", "1",
                             "--snapshots_folder", str(tmp_path / "s")))
    with pytest.raises(UserError, match="--exp_skip_referenced .* needs both --w_exp and --w_expref"):
        train.main(_scl_args(tmp_path, city, "--exp_skip_referenced", "--w_exp", "1", "--total_itrs", "1",
                             "--snapshots_folder", str(tmp_path / "s")))


def test_l_exp_ref_relative_compares_the_pattern_not_the_level():
    x = torch.full((1, 3, 4, 8), 0.2)
    ref = torch.full((1, 3, 4, 8), 0.1)
    ref[..., 4:] = 0.3  # patches 0.1 | 0.3: relative 0.5 | 1.5; the output's 0.2 | 0.2: 1 | 1
    assert L_exp_ref(4, relative=True)(x, ref).item() == pytest.approx(0.25, rel=1e-5)
    assert L_exp_ref(4)(x, ref).item() == pytest.approx(0.01, rel=1e-5)  # absolute: (0.1² + 0.1²) / 2
    x[..., 4:] = 0.6  # 0.2 | 0.6: the reference's pattern at twice its level
    assert L_exp_ref(4, relative=True)(x, ref).item() == pytest.approx(0.0, abs=1e-10)

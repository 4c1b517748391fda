"""datasets/sice.py: the fixed scene split of sice-pairs and its folders of links; real pairs as JPEG files
through datasets/lol.py and lowlight_test.py's paired mode."""
from __future__ import annotations

import csv
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.lol import PairedDataset
from datasets.sice import scene_groups, scene_of, split_scenes, write_split
from utils.errors import UserError

from helpers import SHARED, random_dce

SICE = SHARED / "data" / "sice-pairs"
# the validation part of ../shared/data/sice-pairs, as docs/training.md lists it
SICE_VAL = ("0050 0143 0200 0266 0329 0391 0433 0487 0546 0692 0697 1016 1096 1255 1341 1464 1530 1693 1767 "
            "1829 1996").split()


def write_jpeg_pairs(root, names, size=(24, 32), seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        high = (rng.random(size + (3,)) * 200 + 40).astype(np.uint8)
        for side, img in (("high", high), ("low", (high * 0.15).astype(np.uint8))):
            (root / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / side / name, quality=90)
    return root


def test_scene_of_is_the_stem():
    assert scene_of("0692.jpg") == "0692" and scene_of("/x/low/1996.png") == "1996"


def test_split_on_made_up_names_by_hand():
    names = [f"{n:04d}.jpg" for n in (10, 20, 30, 40, 50, 53, 70, 80, 90, 100, 110, 120)]
    # 50 and 53 are neighbours (less than 6 apart): one group; groups 10|20|30|40|50,53|70|80|90|100|110|120
    assert scene_groups(names) == [["0010"], ["0020"], ["0030"], ["0040"], ["0050", "0053"], ["0070"], ["0080"],
                                   ["0090"], ["0100"], ["0110"], ["0120"]]
    train, val = split_scenes(names)
    assert val == ["0030.jpg", "0080.jpg", "0120.jpg"]  # groups 2, 6, 10
    assert train == sorted(set(names) - set(val))
    _, val = split_scenes(["0030.jpg", "0050.jpg", "0053.jpg", "0040.jpg", "0070.jpg", "0056.jpg"])
    assert val == ["0050.jpg", "0053.jpg", "0056.jpg"]  # chained neighbours 50-53-56 stay together


def test_split_is_deterministic_disjoint_by_scene_and_about_three_to_one():
    rng = random.Random(0)
    numbers = sorted(rng.sample(range(0, 4000, 3), 200))
    names = [f"{n:04d}.jpg" for n in numbers] + [f"{n:04d}.png" for n in numbers[:20]]  # same scene, other files
    train, val = split_scenes(names)
    shuffled = names[:]
    rng.shuffle(shuffled)
    assert split_scenes(shuffled) == (train, val) and sorted(train + val) == sorted(names)
    train_scenes, val_scenes = {scene_of(n) for n in train}, {scene_of(n) for n in val}
    assert not train_scenes & val_scenes
    assert min(abs(int(a) - int(b)) for a in train_scenes for b in val_scenes) >= 6
    assert 0.2 < len(val_scenes) / (len(val_scenes) + len(train_scenes)) < 0.3


def test_bad_names_raise_naming_the_parameter():
    with pytest.raises(ValueError, match="split_scenes: scene 'abc'"):
        split_scenes(["abc.jpg"])


@pytest.mark.skipif(not SICE.is_dir(), reason="../shared/data/sice-pairs is not present")
def test_split_of_the_real_folder():
    names = sorted(os.listdir(SICE / "low"))
    train, val = split_scenes(names)
    assert len(names) == 83 and (len(train), len(val)) == (62, 21)
    assert [scene_of(n) for n in val] == SICE_VAL
    assert {"0692.jpg", "0697.jpg"} <= set(val)  # one place from two viewpoints: same side


def test_write_split_links_the_pairs_and_paired_data_reads_them(tmp_path):
    src = write_jpeg_pairs(tmp_path / "src", [f"{n:04d}.jpg" for n in range(10, 90, 10)])
    out = tmp_path / "split"
    parts = write_split(str(src), str(out))
    assert parts["val"] == ["0030.jpg", "0070.jpg"] and len(parts["train"]) == 6
    link = out / "val" / "high" / "0030.jpg"
    assert link.is_symlink() and os.readlink(link) == str((src / "high" / "0030.jpg").resolve())
    ds = PairedDataset(str(out / "train"))
    assert ds.names == parts["train"]
    low, high, name, _ = ds[0]
    assert name == "0010.jpg" and low.shape == (3, 24, 32)
    decoded = np.asarray(Image.open(src / "high" / "0010.jpg").convert("RGB"))
    assert np.array_equal((high.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), decoded)
    assert write_split(str(src), str(out)) == parts  # a second run keeps the links
    (out / "val" / "low" / "0030.jpg").unlink()
    (out / "val" / "low" / "0030.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="0030.jpg: already exists and is not a link"):
        write_split(str(src), str(out))


def test_paired_mode_reads_jpeg_pairs(tmp_path, fake_torch_home):
    import lowlight_test
    from benchmarks.quality import enhancer_method
    from metrics import psnr

    pairs = write_jpeg_pairs(tmp_path / "pairs", ["0001.jpg", "0002.jpg"], size=(32, 48))
    weights = tmp_path / "w.pth"
    torch.save(random_dce(std=0.05).state_dict(), weights)
    out = tmp_path / "res"
    lowlight_test.main(["--input_dir", str(pairs), "--result_dir", str(out), "--weights", str(weights),
                        "--device", "cpu", "--no_lpips"])
    rows = {r["image"]: r for r in csv.DictReader(open(out / "results.csv"))}
    run = enhancer_method(str(weights), torch.device("cpu"))
    for name in ("0001.jpg", "0002.jpg"):
        gt = np.asarray(Image.open(pairs / "high" / name).convert("RGB"))
        low = np.asarray(Image.open(pairs / "low" / name).convert("RGB"))
        assert float(rows[name]["ori_psnr"]) == pytest.approx(psnr(gt, run(low)), abs=0.05)
        assert float(rows[name]["ori_psnr"]) > psnr(gt, low) - 20  # scored against its own, decoded partner


def test_mismatched_jpeg_pair_is_one_line(tmp_path):
    root = write_jpeg_pairs(tmp_path / "p", ["0001.jpg"])
    Image.fromarray(np.zeros((20, 32, 3), np.uint8)).save(root / "high" / "0001.jpg")
    with pytest.raises(UserError, match=r"low/0001.jpg is 32x24 but .*high/0001.jpg is 32x20; a pair must"):
        PairedDataset(str(root))
    (root / "high" / "0001.jpg").rename(root / "high" / "0002.jpg")
    with pytest.raises(UserError, match="2 file\\(s\\) without a partner"):
        PairedDataset(str(root))


def test_add_to_scl_links_real_frames_into_the_scl_data(tmp_path):
    from datasets.cityscapes import Cityscapes
    from datasets.contrast import ContrastSet
    from datasets.sice import add_to_scl
    from helpers import make_cityscapes, make_contrast

    part = write_jpeg_pairs(tmp_path / "train", ["0010.jpg", "0020.jpg"], size=(40, 48))
    into = tmp_path / "scl"
    with pytest.raises(UserError, match="no cityscapes/ folder"):
        add_to_scl(str(part), str(into))
    make_cityscapes(into / "cityscapes", n=3, labels=False)
    make_contrast(into / "Contrast", n=3)
    assert add_to_scl(str(part), str(into), repeat=3) == 2
    frames = sorted(p.name for p in (into / "cityscapes" / "leftImg8bit" / "train" / "sice").iterdir())
    assert frames == [f"00{s}0_r{k}_leftImg8bit.jpg" for s in (1, 2) for k in range(3)]
    assert os.readlink(into / "Contrast" / "GT" / "sice_0010.jpg") == str((part / "high" / "0010.jpg").resolve())
    assert os.readlink(into / "Contrast" / "low" / "sice_0020.jpg") == str((part / "low" / "0020.jpg").resolve())
    train = Cityscapes(str(into / "cityscapes"), split="train", crop_size=32, train=True, require_labels=False)
    assert len(train) == 3 + 6  # the synthetic images and each real frame three times
    contrast = ContrastSet(str(into / "Contrast"), crop_size=32)
    assert len(contrast.positives) == 3 + 2 and len(contrast.negatives) == 3 + 2
    refs = sorted(p.name for p in (into / "cityscapes" / "reference" / "train" / "sice").iterdir())
    assert refs == frames  # each training link has its normally exposed frame as exposure reference
    assert os.readlink(into / "cityscapes" / "reference" / "train" / "sice" / "0020_r1_leftImg8bit.jpg") == \
        str((part / "high" / "0020.jpg").resolve())
    with_refs = Cityscapes(str(into / "cityscapes"), crop_size=32, require_labels=False, references=True)
    assert sum(r is not None for r in with_refs.references) == 6
    assert add_to_scl(str(part), str(into), repeat=3) == 2  # again: the links are kept
    with pytest.raises(UserError, match="--repeat 0"):
        add_to_scl(str(part), str(into), repeat=0)


def test_repeated_and_downscaled_parts(tmp_path):
    from datasets.sice import write_downscaled, write_repeated

    part = write_jpeg_pairs(tmp_path / "train", ["0010.jpg", "0020.jpg"], size=(40, 48))
    assert write_repeated(str(part), str(tmp_path / "x3"), 3) == 2
    ds = PairedDataset(str(tmp_path / "x3"))
    assert len(ds) == 6 and ds.names[:3] == ["0010_r0.jpg", "0010_r1.jpg", "0010_r2.jpg"]
    assert os.readlink(tmp_path / "x3" / "high" / "0020_r2.jpg") == str((part / "high" / "0020.jpg").resolve())
    assert write_downscaled(str(part), str(tmp_path / "s16"), 16) == 2
    low = np.asarray(Image.open(tmp_path / "s16" / "low" / "0010.png"))
    want = np.asarray(Image.open(part / "low" / "0010.jpg").convert("RGB").resize((16, 16), Image.Resampling.LANCZOS))
    assert low.shape == (16, 16, 3) and np.array_equal(low, want)

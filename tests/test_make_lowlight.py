"""datasets/make_lowlight.py on a tiny tree in the real Cityscapes layout."""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.cityscapes import Cityscapes
from datasets.contrast import ContrastSet
from datasets.make_lowlight import main, make_lowlight
from datasets.synthesis import draw_params, rng_for
from utils.errors import UserError

FILES = [("train", "aachen", "aachen_000000_000019"), ("train", "aachen", "aachen_000001_000019"),
         ("train", "bochum", "bochum_000000_000313"), ("val", "lindau", "lindau_000000_000019")]


def _tree(root: Path) -> Path:
    """root/cityscapes/{leftImg8bit,gtFine}/<split>/<city>/..., 48x64 images and label ids."""
    rng = np.random.default_rng(0)
    for split, city, base in FILES:
        img = root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png"
        lbl = root / "gtFine" / split / city / f"{base}_gtFine_labelIds.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        lbl.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((48, 64, 3)) * 200 + 40).astype(np.uint8)).save(img)
        Image.fromarray(rng.choice([7, 8, 11, 26, 0], size=(48, 64)).astype(np.uint8)).save(lbl)
    return root / "leftImg8bit"


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def test_darkened_twice_gives_identical_bytes_and_the_scl_layout(tmp_path):
    src = _tree(tmp_path / "orig")
    a, b = tmp_path / "a" / "cityscapes", tmp_path / "b" / "cityscapes"
    ca = make_lowlight(str(src), str(a / "leftImg8bit"), seed=0, workers=1, contrast=str(tmp_path / "a" / "Contrast"),
                       n_contrast=2, progress=False)
    cb = make_lowlight(str(src), str(b / "leftImg8bit"), seed=0, workers=1, contrast=str(tmp_path / "b" / "Contrast"),
                       n_contrast=2, progress=False)
    assert ca == cb == {"done": 4 + 4, "skipped": 0, "labels": 4}
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    # the SCL-LLE stage reads it: images darker than the originals, labels linked alongside
    ds = Cityscapes(str(a), split="train", crop_size=None, train=False)
    assert len(ds) == 3 and os.path.islink(a / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png")
    img, lbl = ds[0]
    orig = np.asarray(Image.open(src / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png")) / 255
    assert img.mean() < 0.7 * orig.mean() and set(lbl.unique().tolist()) <= {0, 1, 2, 13, 255}
    cs = ContrastSet(str(tmp_path / "a" / "Contrast"), crop_size=32)
    assert len(cs.positives) == 2 and len(cs.negatives) == 2
    names = sorted(os.listdir(tmp_path / "a" / "Contrast" / "low"))
    assert [n.split("_")[0] for n in names] == ["over", "under"]
    # the parameters file matches the per-file seeds
    rows = [json.loads(line) for line in (a / "lowlight_params.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    key = "lowlight/" + rows[0]["file"]
    assert rows[0]["exposure"] == pytest.approx(draw_params(rng_for(0, key))["exposure"], rel=1e-6)


def test_resumable_and_seeded_by_relative_path(tmp_path, capsys):
    src = _tree(tmp_path / "orig")
    dst = tmp_path / "out" / "leftImg8bit"
    main(["--src", str(src), "--dst", str(dst), "--workers", "1", "--labels", "copy"])
    before = _digest(dst)
    victim = dst / "train" / "bochum" / "bochum_000000_000313_leftImg8bit.png"
    victim.unlink()
    main(["--src", str(src), "--dst", str(dst), "--workers", "1", "--labels", "copy"])
    out = capsys.readouterr().out.strip().splitlines()
    assert "made 1 files, skipped 3 already done" in out[-1]
    assert _digest(dst) == before  # the regenerated file is identical
    assert not os.path.islink(dst.parent / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelIds.png")
    # another seed, or the same image under another name, gives other noise
    other = tmp_path / "other" / "leftImg8bit"
    make_lowlight(str(src), str(other), seed=1, workers=1, labels="none", progress=False)
    assert _digest(other) != before and not (other.parent / "gtFine").exists()
    with pytest.raises(UserError, match="--src"):
        make_lowlight(str(tmp_path / "nope"), str(other), progress=False)


def test_parallel_processes_write_the_same_bytes(tmp_path):
    src = _tree(tmp_path / "orig")
    one, two = tmp_path / "one" / "leftImg8bit", tmp_path / "two" / "leftImg8bit"
    make_lowlight(str(src), str(one), seed=0, workers=1, progress=False)
    make_lowlight(str(src), str(two), seed=0, workers=2, progress=False)  # spawned processes
    assert _digest(one) == _digest(two) and len(_digest(one)) == 4

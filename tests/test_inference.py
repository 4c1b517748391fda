"""inference.py: the memory plan (batch split, automatic tiles), output names, write failures."""
from __future__ import annotations

import os

import pytest
import torch

from network.registry import get_spec


def test_plan_keeps_the_estimate_under_the_budget():
    from inference import _plan
    from lowlight_model import enhance_net_nopool

    m = enhance_net_nopool()
    bpp = get_spec("dce").bytes_per_pixel[torch.float32]
    assert _plan(m, 4, 400, 600, torch.float32, 1e9, 0) == (3, 0)       # 3 x 288 MB fit in 1 GB: batch split
    per_pass, tile = _plan(m, 1, 3000, 4000, torch.float32, 1e9, 0)     # 14 GB whole: tiles
    assert per_pass == 1 and (tile + 16) ** 2 * bpp <= 1e9 < (tile + 18) ** 2 * bpp
    assert _plan(m, 1, 3000, 4000, torch.float32, 1e9, 512) == (2, 512)  # explicit tile: 2 x 335 MB per pass


def _folder(tmp_path, names):
    from datasets.folder import ImageFolder
    from PIL import Image

    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / n)
    return ImageFolder(str(tmp_path))


def test_output_names_resolve_collisions_deterministically(tmp_path):
    from inference import output_names

    data = _folder(tmp_path, ["a.png", "a.jpg", "b.jpeg", "c.bmp", "c.tif", "d/e.JPG"])
    rels = [data.relpath(i) for i in range(len(data))]
    assert output_names(data) == rels  # same: names never change
    assert dict(zip(rels, output_names(data, "png"))) == {
        "a.jpg": "a.jpg.png", "a.png": "a.png", "b.jpeg": "b.png", "c.bmp": "c.bmp.png", "c.tif": "c.tif.png",
        "d/e.JPG": "d/e.png"}
    assert dict(zip(rels, output_names(data, "jpg"))) == {
        "a.jpg": "a.jpg", "a.png": "a.png.jpg", "b.jpeg": "b.jpeg", "c.bmp": "c.bmp.jpg", "c.tif": "c.tif.jpg",
        "d/e.JPG": "d/e.JPG"}


def test_output_names_refuse_what_cannot_be_resolved(tmp_path):
    from inference import output_names
    from utils.errors import UserError

    data = _folder(tmp_path / "x", ["a.png", "a.jpg", "a.jpg.png"])
    with pytest.raises(UserError, match=r"a\.jpg and .*a\.jpg\.png would both be written to a\.jpg\.png"):
        output_names(data, "png")
    data = _folder(tmp_path / "y", ["a.png", "b.jpg"])
    with pytest.raises(UserError, match=r"--bit_depth 16: .*b\.jpg would be written as \.jpg"):
        output_names(data, "same", 16)
    assert output_names(data, "png", 16) == ["a.png", "b.png"]


def test_an_output_the_encoder_refuses_fails_that_image_only(tmp_path):
    """EXIF beyond JPEG's 64 KB: that image is reported (ImageFailed, naming the file and the way out)."""
    import numpy as np
    from PIL import Image

    from inference import ImageFailed, OutputFormat, _write

    im = Image.new("RGB", (4, 4))
    exif = im.getexif()
    exif[0x010E] = "x" * 70000
    im.save(tmp_path / "big.png", exif=exif.tobytes())
    with pytest.raises(ImageFailed, match=r"out\.jpg \(EXIF data is too long\); pass --strip_metadata"):
        _write(np.zeros((4, 4, 3), np.uint8), str(tmp_path / "out.jpg"), 0.0, OutputFormat(), str(tmp_path / "big.png"))
    assert os.listdir(tmp_path) == ["big.png"]  # nothing half-written
    _write(np.zeros((4, 4, 3), np.uint8), str(tmp_path / "out.jpg"), 0.0, OutputFormat(metadata=False),
           str(tmp_path / "big.png"))
    assert (tmp_path / "out.jpg").exists()

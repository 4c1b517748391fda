"""utils.image_io: decoding corner cases, exact rounding, atomic writes, grids."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
import torchvision.utils as tvu
from PIL import Image, ImageOps

from utils.errors import UserError
from utils import image_io
from utils.image_io import (apply_orientation, list_images, read_image, read_image_tensor, save_grid, save_grid_rows,
                            save_image, to_uint8)


def _load(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)


def _rgb(h=10, w=14, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_list_images(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.txt", ".hidden.png", "sub/d.tif", "sub/e.JPEG"]:
        p = tmp_path / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    assert [os.path.basename(p) for p in list_images(str(tmp_path))] == ["a.jpg", "b.PNG"]
    rel = [os.path.relpath(p, tmp_path) for p in list_images(str(tmp_path), recursive=True)]
    assert rel == ["a.jpg", "b.PNG", os.path.join("sub", "d.tif"), os.path.join("sub", "e.JPEG")]
    with pytest.raises(UserError, match="missing"):
        list_images(str(tmp_path / "missing"))


def test_rgb_png_exact(tmp_path):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "x.png")
    x = read_image(str(tmp_path / "x.png"))
    assert x.dtype == np.float32 and x.shape == (10, 14, 3)
    np.testing.assert_array_equal(x, a.astype(np.float32) / 255)
    t = read_image_tensor(str(tmp_path / "x.png"))
    assert t.shape == (3, 10, 14) and t.dtype == torch.float32


def test_grayscale_and_rgba_and_palette(tmp_path):
    g = _rgb()[..., 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    x = read_image(str(tmp_path / "g.png"))
    assert x.shape == (10, 14, 3)
    np.testing.assert_array_equal(x[..., 2], g / np.float32(255))
    assert (x[..., 0] == x[..., 1]).all()

    rgba = np.concatenate([_rgb(), np.zeros((10, 14, 1), np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = read_image(str(tmp_path / "a.png"))
    assert x.shape == (10, 14, 3)
    np.testing.assert_array_equal(x, rgba[..., :3] / np.float32(255))  # alpha dropped, not composited

    pal = Image.fromarray(_rgb()).quantize(colors=16)
    assert pal.mode == "P"
    pal.save(tmp_path / "p.png")
    x = read_image(str(tmp_path / "p.png"))
    np.testing.assert_array_equal(x, np.asarray(pal.convert("RGB")) / np.float32(255))
    pal.info["transparency"] = 0  # palette with a transparent entry: no warning, still RGB
    pal.save(tmp_path / "pt.png", transparency=0)
    assert read_image(str(tmp_path / "pt.png")).shape == (10, 14, 3)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit(tmp_path, ext):
    a = np.random.default_rng(1).integers(0, 65536, (6, 9, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / f"c{ext}"), a[..., ::-1])
    x = read_image(str(tmp_path / f"c{ext}"))
    np.testing.assert_allclose(x, a / 65535.0, atol=1e-7)
    cv2.imwrite(str(tmp_path / f"g{ext}"), a[..., 0])
    x = read_image(str(tmp_path / f"g{ext}"))
    np.testing.assert_allclose(x[..., 1], a[..., 0] / 65535.0, atol=1e-7)


def test_exif_orientation(tmp_path):
    a = _rgb(20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(tmp_path / "r.jpg", exif=exif, quality=100)
    x = read_image(str(tmp_path / "r.jpg"))
    assert x.shape == (40, 20, 3)  # rotated 90° clockwise


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pil(orientation):
    a = _rgb(5, 7)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(apply_orientation(a, orientation), expected)


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "bad.png"
    if content == "truncated":
        Image.fromarray(_rgb(64, 64)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(UserError) as ei:
        read_image(str(path))
    msg = str(ei.value)
    assert msg.startswith(f"{path}: cannot read image (") and msg.endswith("replace or remove it")
    assert "\n" not in msg and "Traceback" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_image(str(tmp_path / "nope.png"))


def test_to_uint8_rounding():
    vals = torch.tensor([0.0, 0.49 / 255, 0.5 / 255, 1.5 / 255, 0.5, 254.4 / 255, 254.5 / 255, 1.0, 1.7, -0.3])
    expected = [0, 0, 1, 2, 128, 254, 255, 255, 255, 0]
    x = vals.view(1, 1, -1).expand(3, 1, -1)
    assert to_uint8(x)[0, :, 0].tolist() == expected
    assert to_uint8(x.permute(1, 2, 0).numpy())[0, :, 0].tolist() == expected  # HxWx3 array
    assert to_uint8(x[None]).shape == (1, 10, 3)  # batch of one
    # identical to torchvision.utils.save_image's arithmetic on random data
    r = torch.rand(3, 17, 23) * 1.2 - 0.1
    ref = r.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    np.testing.assert_array_equal(to_uint8(r), ref)
    assert to_uint8(torch.full((3, 1, 1), float("nan")))[0, 0].tolist() == [0, 0, 0]


def test_to_uint8_in_row_blocks_gives_the_same_bytes(monkeypatch):
    x = torch.rand(3, 37, 29) * 1.2 - 0.1
    x[0, 5, 7] = float("nan")
    whole = to_uint8(x)
    monkeypatch.setattr(image_io, "_CHUNK", 29 * 3 * 4)  # blocks of 4 rows, the last one of 1
    np.testing.assert_array_equal(to_uint8(x), whole)
    np.testing.assert_array_equal(to_uint8(x.permute(1, 2, 0).numpy()), whole)
    ref = x.mul(255).nan_to_num(nan=0.0).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(whole, ref)


def test_save_image_matches_torchvision(tmp_path):
    r = torch.rand(3, 11, 13)
    save_image(r, str(tmp_path / "ours.png"))
    tvu.save_image(r, str(tmp_path / "tv.png"))
    np.testing.assert_array_equal(_load(tmp_path / "ours.png"),
                                  _load(tmp_path / "tv.png"))


def test_save_round_trip_and_atomic(tmp_path):
    a = _rgb(12, 16)
    x = _tensor(a)
    out = tmp_path / "deep" / "dir" / "y.png"
    save_image(x, str(out))
    np.testing.assert_array_equal(_load(out), a)
    np.testing.assert_array_equal(to_uint8(read_image(str(out))), a)
    save_image(a, str(out))  # overwrite with a uint8 array
    assert sorted(os.listdir(out.parent)) == ["y.png"]
    save_image(x, str(tmp_path / "z.jpg"))
    with Image.open(tmp_path / "z.jpg") as im:
        assert im.format == "JPEG"
    assert oct(os.stat(out).st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode
    with pytest.raises(UserError, match="extension"):
        save_image(x, str(tmp_path / "w.gif"))
    assert sorted(os.listdir(tmp_path)) == ["deep", "z.jpg"]


@pytest.mark.parametrize("where", ["encoder", "rename"])
def test_failed_save_leaves_no_temp(tmp_path, monkeypatch, where):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    if where == "encoder":  # Pillow's encoders (BMP; PNG without OpenCV) fail while writing the temporary file
        monkeypatch.setattr(Image.Image, "save", boom)
        name = "f.bmp"
    else:
        monkeypatch.setattr(os, "replace", boom)
        name = "f.png"
    with pytest.raises(RuntimeError):
        save_image(torch.rand(3, 4, 4), str(tmp_path / name))
    assert os.listdir(tmp_path) == []


def test_png_written_by_opencv_or_pillow_holds_the_same_pixels(tmp_path, monkeypatch):
    a = _rgb(33, 47)
    save_image(a, str(tmp_path / "cv.png"))
    monkeypatch.setattr(image_io, "_encode_png", lambda a: None)  # the Pillow fallback (no OpenCV)
    save_image(a, str(tmp_path / "pil.png"))
    for name in ("cv.png", "pil.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        np.testing.assert_array_equal(_load(tmp_path / name), a)
    assert (tmp_path / "cv.png").read_bytes() != (tmp_path / "pil.png").read_bytes()


def test_save_grid(tmp_path):
    a, b = torch.rand(3, 20, 10), _rgb(20, 15)
    grid = save_grid([a, b], str(tmp_path / "g.png"))
    assert grid.shape == (20, 10 + 4 + 15, 3)
    np.testing.assert_array_equal(grid[:, 14:], b)
    assert (grid[:, 10:14] == 255).all()
    grid = save_grid([a, b], str(tmp_path / "gl.png"), labels=["input", "output"], gap=0)
    assert grid.shape == (18 + 20, 25, 3)
    assert (grid[:18] < 128).any()  # some dark text in the strip
    np.testing.assert_array_equal(_load(tmp_path / "gl.png"), grid)
    tall = save_grid([a, _rgb(21, 5)], str(tmp_path / "tall.png"), gap=0)  # shorter images padded white
    assert tall.shape == (21, 15, 3) and (tall[20, :10] == 255).all()
    rows = save_grid_rows([[a], [a, b]], str(tmp_path / "rows.png"), gap=0)  # narrower rows padded white
    assert rows.shape == (40, 25, 3) and (rows[:20, 10:] == 255).all()
    np.testing.assert_array_equal(rows[20:, 10:], b)


def test_keep_8bit_returns_the_decoded_bytes_and_float_for_16bit(tmp_path):
    """keep_8bit: RGB, RGBA, grey and palette PNGs come back as uint8 whose v / 255 (float32) is exactly
    the float read; a 16-bit PNG stays float32."""
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "rgb.png")
    Image.fromarray(np.concatenate([a, a[..., :1]], axis=2), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(a[..., 1], "L").save(tmp_path / "g.png")
    Image.fromarray(a).quantize(colors=16).save(tmp_path / "p.png")
    for name in ("rgb.png", "rgba.png", "g.png", "p.png"):
        u = read_image(str(tmp_path / name), keep_8bit=True)
        assert u.dtype == np.uint8 and u.shape == (10, 14, 3) and u.flags.c_contiguous and u.flags.writeable, name
        np.testing.assert_array_equal(u.astype(np.float32) / 255, read_image(str(tmp_path / name)))
    np.testing.assert_array_equal(read_image(str(tmp_path / "rgb.png"), keep_8bit=True), a)
    cv2.imwrite(str(tmp_path / "c16.png"), np.full((4, 5, 3), 1000, np.uint16))
    x = read_image(str(tmp_path / "c16.png"), keep_8bit=True)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, 1000 / 65535, atol=1e-7)
    # read_image_uint8: the decoded bytes of an 8-bit image, to_uint8's rounding of a 16-bit one (1000/257 → 4)
    np.testing.assert_array_equal(image_io.read_image_uint8(str(tmp_path / "rgb.png")), a)
    np.testing.assert_array_equal(image_io.read_image_uint8(str(tmp_path / "c16.png")), np.full((4, 5, 3), 4, np.uint8))


@pytest.mark.parametrize("mode,values,needle", [("F", 40.0, "0..40 lie outside the float range 0..1"),
                                                ("I", 100000, "0..100000 lie outside the 16-bit range 0..65535")])
def test_tiff_values_beyond_the_range_are_refused_not_clipped_to_white(tmp_path, mode, values, needle):
    """probe float_tiff_0_255_range / int32_tiff_over_16bit: such files were clipped to all white, exit 0."""
    from PIL import Image

    a = np.zeros((6, 5), np.float32 if mode == "F" else np.int32)
    a[2, 3] = values
    path = tmp_path / "x.tif"
    Image.fromarray(a, mode).save(path)
    with pytest.raises(UserError, match=f"x.tif: cannot read image \\(pixel values {needle}"):
        read_image(str(path))
    ok = tmp_path / "ok.tif"
    Image.fromarray(np.full((6, 5), 0.25, np.float32), "F").save(ok)  # in range: read as it is
    assert np.allclose(read_image(str(ok)), 0.25)


def _icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _photo_with_metadata(path, orientation=6) -> np.ndarray:
    """An 8-bit photo with an ICC profile, a camera make and an EXIF orientation; returns its stored pixels."""
    a = _rgb(12, 20, seed=4)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112], exif[0x010F] = orientation, "TestCam"
    im.save(path, exif=exif.tobytes(), icc_profile=_icc())
    return a


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif"])
def test_metadata_survives_a_round_trip_with_orientation_reset(tmp_path, ext):
    src = tmp_path / "in.jpg"
    _photo_with_metadata(src, orientation=6)
    meta = image_io.read_metadata(str(src))
    upright = read_image(str(src))  # rotated by the orientation: 20x12
    assert upright.shape == (20, 12, 3)
    out = tmp_path / f"out.{ext}"
    save_image(upright, str(out), metadata=meta)
    with Image.open(out) as im:
        exif = im.getexif()
        assert im.info.get("icc_profile") == _icc()
        assert exif.get(0x0112) == 1 and exif.get(0x010F) == "TestCam"
        assert im.size == (12, 20)
    assert read_image(str(out)).shape == (20, 12, 3)  # not rotated a second time
    again = image_io.read_metadata(str(out))
    assert again.icc == meta.icc and Image.Exif().load(again.exif) is None  # a valid EXIF block


def test_save_without_metadata_is_unchanged(tmp_path):
    """metadata None or empty: the same bytes as before the option existed (OpenCV's PNG)."""
    a = _rgb()
    save_image(a, str(tmp_path / "plain.png"))
    save_image(a, str(tmp_path / "empty.png"), metadata=image_io.Metadata())
    assert (tmp_path / "plain.png").read_bytes() == (tmp_path / "empty.png").read_bytes()
    assert (tmp_path / "plain.png").read_bytes() == image_io._encode_png(a).tobytes()


def test_jpeg_quality_and_webp(tmp_path):
    a = np.asarray(Image.fromarray(_rgb(64, 64, seed=1)).resize((256, 256), Image.BILINEAR))
    save_image(a, str(tmp_path / "q50.jpg"), quality=50)
    save_image(a, str(tmp_path / "q95.jpg"), quality=95)
    assert os.path.getsize(tmp_path / "q50.jpg") < os.path.getsize(tmp_path / "q95.jpg")
    save_image(a, str(tmp_path / "x.webp"), quality=90)
    with Image.open(tmp_path / "x.webp") as im:
        assert im.format == "WEBP" and im.size == (256, 256)
        assert np.abs(np.asarray(im.convert("RGB")).astype(int) - a).mean() < 8


def test_to_uint16_rounds_half_up_and_16bit_png(tmp_path):
    x = np.random.default_rng(0).random((7, 9, 3)).astype(np.float32)
    x[0, 0] = [0.0, 1.0, np.nan]
    expect = np.floor(np.clip(np.nan_to_num(x.astype(np.float64)) * 65535 + 0.5, 0, 65535)).astype(np.uint16)
    assert np.array_equal(image_io.to_uint16(x), expect)
    assert np.array_equal(image_io.to_uint16(torch.from_numpy(x).permute(2, 0, 1)), expect)
    save_image(x, str(tmp_path / "deep.png"), bit_depth=16)
    got = cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert got.dtype == np.uint16 and np.array_equal(got, expect)
    with pytest.raises(UserError, match="8 bits"):
        save_image(x, str(tmp_path / "deep.jpg"), bit_depth=16)


def test_tiff_layout_tags_are_not_copied(tmp_path):
    """A TIFF's EXIF is its first IFD, with its own size/bits/strips: only the descriptive tags go on."""
    im = Image.fromarray((np.arange(80).reshape(8, 10) * 700).astype(np.uint16))
    exif = im.getexif()
    exif[0x010F] = "TestCam"
    im.save(tmp_path / "in.tif", exif=exif)
    meta = image_io.read_metadata(str(tmp_path / "in.tif"))
    kept = Image.Exif()
    kept.load(meta.exif)
    assert dict(kept) == {0x010F: "TestCam"}
    x = read_image(str(tmp_path / "in.tif"))
    save_image(x, str(tmp_path / "out.tif"), metadata=meta)  # with the input's layout tags it could not be read
    np.testing.assert_allclose(read_image(str(tmp_path / "out.tif")), x, atol=0.5 / 255 + 1e-6)
    with Image.open(tmp_path / "out.tif") as o:
        assert o.getexif().get(0x010F) == "TestCam"

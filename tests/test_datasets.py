"""datasets/: Cityscapes, ContrastSet, ImageFolder, paired LOL layouts, augmentations, prepare_demo."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import (Cityscapes, ContrastSet, ImageFolder, PairedDataset, augment, augment_inverse,
                      find_pairs, is_paired_dir)
from datasets.cityscapes import encode_labels
from datasets.prepare_demo import HELD_OUT_PHOTOS, TRAIN_PHOTOS, build_demo
from helpers import ROOT, write_rgb
from utils.errors import UserError

IDS = np.array([7, 26, 0, 8, 11, 33, 1], np.uint8)  # 7→0 road, 26→13 car, 0→255, 8→1, 11→2, 33→18, 1→255


def _png(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def _city_tree(root: Path, with_labels: bool = True, h: int = 48, w: int = 64) -> None:
    """Two cities; the red channel of each image equals its label id, so crop/flip mismatches show."""
    yy, xx = np.mgrid[0:h, 0:w]
    for c, city in enumerate(["aachen", "bremen"]):
        for k in range(2):
            ids = IDS[(xx // 5 + yy // 7 + 3 * c + k) % len(IDS)].astype(np.uint8)
            img = np.stack([ids, (xx * 3).astype(np.uint8), (yy * 5).astype(np.uint8)], axis=2)
            base = f"{city}_00000{k}_000019"
            _png(root / "leftImg8bit" / "train" / city / f"{base}_leftImg8bit.png", img)
            if with_labels:
                _png(root / "gtFine" / "train" / city / f"{base}_gtFine_labelIds.png", ids)


def _consistent(image: torch.Tensor, label: torch.Tensor) -> bool:
    red = torch.round(image[0] * 255).to(torch.int64).numpy()
    return bool((encode_labels(red) == label.numpy()).all())


def test_label_mapping():
    assert encode_labels(np.array([7, 26, 0, 8, 33, 255, 34, -1])).tolist() == [0, 13, 255, 1, 18, 255, 255, 255]


def test_cityscapes_eval(tmp_path):
    _city_tree(tmp_path)
    ds = Cityscapes(str(tmp_path), split="train", train=False)
    assert len(ds) == 4 and "aachen" in ds.files[0][0] and "bremen" in ds.files[3][0]
    img, lbl = ds[0]
    assert img.shape == (3, 48, 64) and img.dtype == torch.float32 and lbl.shape == (48, 64)
    assert lbl.dtype == torch.int64 and set(lbl.unique().tolist()) == {0, 1, 2, 13, 18, 255}
    assert _consistent(img, lbl)
    assert lbl[0, 0] == 0 and lbl[0, 5] == 13 and lbl[0, 10] == 255  # ids 7, 26, 0


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_cityscapes_label_takes_the_image_exif_orientation(tmp_path, orientation):
    """Issue 22.11: the image is read upright; its label (a map of the stored pixels, here its red channel)
    must turn with it (before, orientation 3 misaligned them silently and 6/8 stopped on the sizes)."""
    _city_tree(tmp_path)
    ds = Cityscapes(str(tmp_path), split="train", train=False)
    path = ds.files[1][0]
    stored = np.asarray(Image.open(path))
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif)
    img, lbl = ds[1]
    turn = {3: lambda a: a[::-1, ::-1], 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}[orientation]
    assert np.array_equal(torch.round(img * 255).to(torch.uint8).permute(1, 2, 0).numpy(), turn(stored))
    assert lbl.shape == img.shape[1:] and _consistent(img, lbl)
    assert np.array_equal(lbl.numpy(), turn(encode_labels(stored[..., 0])))
    # a label drawn on the upright image of a transposing orientation does not fit the stored image
    if orientation != 3:
        _png(Path(ds.files[1][1]), np.ascontiguousarray(turn(stored[..., 0])))
        message = rf"label is 48x64 but .* is 64x48 as stored \(before its EXIF orientation {orientation}\)"
        with pytest.raises(UserError, match=message):
            ds.load(1)


def test_cityscapes_train_crop_flip_joint(tmp_path):
    _city_tree(tmp_path)
    ds = Cityscapes(str(tmp_path), crop_size=32)
    torch.manual_seed(0)
    seen_flip = set()
    for i in range(24):
        img, lbl = ds[i % 4]
        assert img.shape == (3, 32, 32) and lbl.shape == (32, 32)
        assert _consistent(img, lbl)
        seen_flip.add(bool(img[1, 0, 0] > img[1, 0, -1]))  # green = 3·x grows left→right unless flipped
    assert seen_flip == {True, False}
    torch.manual_seed(5)
    a = [ds[1] for _ in range(3)]
    torch.manual_seed(5)
    b = [ds[1] for _ in range(3)]
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_cityscapes_pads_small_images(tmp_path):
    _city_tree(tmp_path)
    img, lbl = Cityscapes(str(tmp_path), crop_size=80)[0]
    assert img.shape == (3, 80, 80) and lbl.shape == (80, 80)
    assert (lbl == 255).sum() >= 80 * 80 - 48 * 64 and _consistent(img, lbl)  # padding: image 0, label 255


def test_cityscapes_errors(tmp_path):
    with pytest.raises(UserError, match="leftImg8bit"):
        Cityscapes(str(tmp_path))
    _city_tree(tmp_path)
    missing = tmp_path / "gtFine" / "train" / "bremen" / "bremen_000001_000019_gtFine_labelIds.png"
    missing.unlink()
    with pytest.raises(UserError, match=str(missing)):
        Cityscapes(str(tmp_path))
    ds = Cityscapes(str(tmp_path), require_labels=False, train=False)
    assert (ds[3][1] == 255).all() and not (ds[0][1] == 255).all()


def test_cityscapes_without_gtfine(tmp_path):
    _city_tree(tmp_path, with_labels=False)
    with pytest.raises(UserError, match="gtFine"):
        Cityscapes(str(tmp_path))
    img, lbl = Cityscapes(str(tmp_path), crop_size=16, require_labels=False)[2]
    assert img.shape == (3, 16, 16) and (lbl == 255).all()


def _contrast_tree(root: Path) -> None:
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 50), (30, 30), (64, 20), (33, 47), (50, 50)]):
        _png(root / "GT" / f"p{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    for i in range(3):
        _png(root / "low" / f"n{i}.jpg", rng.integers(0, 256, (25, 35, 3), dtype=np.uint8))


def test_contrast_set(tmp_path):
    _contrast_tree(tmp_path)
    cs = ContrastSet(str(tmp_path), crop_size=32)
    p, q, ids = cs.sample(2, generator=torch.Generator().manual_seed(0))
    assert p.shape == q.shape == (2, 3, 32, 32) and p.dtype == torch.float32
    assert 0 <= p.min() and p.max() <= 1
    p2, q2, _ = cs.sample(2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(p, p2) and torch.equal(q, q2)
    draws = {tuple(cs.sample(2, generator=torch.Generator().manual_seed(s))[0].sum((1, 2, 3)).tolist())
             for s in range(6)}
    assert len(draws) > 1
    assert cs.sample(5)[1].shape == (5, 3, 32, 32)  # more than the 3 negatives: drawn with replacement
    with Image.open(tmp_path / "GT" / "p0.png") as im:
        ref = np.array(im.convert("RGB").resize((32, 32), Image.Resampling.LANCZOS))
    assert torch.equal(cs.positives.get(0), torch.from_numpy(ref).permute(2, 0, 1))
    assert 0 in cs.positives._cache
    assert [k for k, _ in ids] == ["P", "P", "Q", "Q"]
    for img, (pool, i) in zip(torch.cat([p, q]), ids):  # each key names the image drawn
        assert torch.equal(img, (cs.positives if pool == "P" else cs.negatives).get(i).float() / 255)


def test_contrast_errors(tmp_path):
    with pytest.raises(UserError, match="contrast folder"):
        ContrastSet(str(tmp_path / "none"))
    (tmp_path / "GT").mkdir()
    with pytest.raises(UserError, match="GT"):
        ContrastSet(str(tmp_path))
    _png(tmp_path / "GT" / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(UserError, match="low"):
        ContrastSet(str(tmp_path))


def test_image_folder(tmp_path):
    _png(tmp_path / "b.png", np.zeros((5, 6, 3), np.uint8))
    _png(tmp_path / "night" / "a.jpg", np.zeros((7, 8, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    ds = ImageFolder(str(tmp_path))
    assert [ds[i][1] for i in range(len(ds))] == ["b.png", "night/a.jpg"]
    assert ds[1][0].shape == (3, 7, 8)
    assert len(ImageFolder(str(tmp_path), recursive=False)) == 1
    single = ImageFolder(str(tmp_path / "b.png"))
    assert single[0][1] == "b.png"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        ImageFolder(str(tmp_path / "empty"))


def test_jfif_is_read_and_camera_raw_files_are_named_as_skipped(tmp_path):
    from utils.image_io import save_image

    Image.fromarray(np.full((6, 5, 3), 200, np.uint8)).save(tmp_path / "web.jfif", "JPEG")
    (tmp_path / "IMG_0001.dng").write_bytes(b"II*\x00" + bytes(64))  # a TIFF-like raw: not decoded as a photo
    (tmp_path / "IMG_0002.CR2").write_bytes(b"II*\x00" + bytes(64))
    ds = ImageFolder(str(tmp_path))
    assert [ds[i][1] for i in range(len(ds))] == ["web.jfif"] and ds[0][0].shape == (3, 6, 5)
    assert [os.path.basename(p) for p in ds.skipped] == ["IMG_0001.dng", "IMG_0002.CR2"]
    save_image(ds[0][0], str(tmp_path / "out.jfif"))
    with Image.open(tmp_path / "out.jfif") as im:
        assert im.format == "JPEG" and im.size == (5, 6)


def _pairs(root: Path, low: str, high: str, names: list[tuple[str, str]], size=(24, 20)) -> None:
    rng = np.random.default_rng(len(names))
    for ln, hn in names:
        a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        _png(root / low / ln, a)
        _png(root / high / hn, a)  # identical content: any crop/augment mismatch is visible


@pytest.mark.parametrize("layout", ["v1", "v2real", "v2syn"])
def test_lol_layouts(tmp_path, layout):
    if layout == "v1":
        _pairs(tmp_path, "low", "high", [(f"{i}.png", f"{i}.png") for i in (1, 22, 3)])
    elif layout == "v2real":
        _pairs(tmp_path, "Low", "Normal", [(f"low{i:05d}.png", f"normal{i:05d}.png") for i in (1, 2, 3)])
    else:
        _pairs(tmp_path, "Low", "Normal", [(f"r{i}_x.png", f"r{i}_x.png") for i in (1, 2, 3)])
    assert is_paired_dir(str(tmp_path)) and not is_paired_dir(str(tmp_path / "nothing"))
    pairs = find_pairs(str(tmp_path))
    assert len(pairs) == 3
    for low, high in pairs:
        ls, hs = os.path.basename(low), os.path.basename(high)
        assert hs == (ls.replace("low", "normal") if layout == "v2real" else ls)
    ds = PairedDataset(str(tmp_path))
    low, high, name, idx = ds[1]
    assert low.shape == (3, 20, 24) and torch.equal(low, high) and name == os.path.basename(pairs[1][0]) and idx == 1


def test_lol_patch_and_augment(tmp_path):
    _pairs(tmp_path, "low", "high", [("a.png", "a.png"), ("b.png", "b.png")], size=(24, 20))
    ds = PairedDataset(str(tmp_path), patch_size=16, augment=True)
    torch.manual_seed(0)
    crops = []
    for _ in range(10):
        low, high, _, _ = ds[0]
        assert low.shape == (3, 16, 16) and torch.equal(low, high)
        crops.append(low)
    assert len({c.sum().item() for c in crops}) > 1
    big = PairedDataset(str(tmp_path), patch_size=32)[1]  # larger than the image: padded
    assert big[0].shape == (3, 32, 32) and torch.equal(big[0], big[1])
    low, _, _, _ = PairedDataset(str(tmp_path), augment=True)[0]
    assert low.shape[1:] in {(20, 24), (24, 20)}


def test_lol_cache_keeps_8bit_images_as_uint8_and_gives_the_same_items(tmp_path):
    for sub in ("low", "high"):
        for i in range(2):
            write_rgb(tmp_path / sub / f"{i}.png", 20, 24, seed=i + (sub == "high"))
    plain = PairedDataset(str(tmp_path), patch_size=16, augment=True)
    cached = PairedDataset(str(tmp_path), patch_size=16, augment=True, cache=True)
    def items(ds):
        torch.manual_seed(5)
        return [t for i in range(6) for t in ds[i % 2][:2]]

    for size in (16, 32):  # 32 > the image: reflect-padded, in float
        plain.patch_size = cached.patch_size = size
        ref, got = items(plain), items(cached)
        assert all(torch.equal(a, b) and b.dtype == torch.float32 for a, b in zip(ref, got))
    low, high = cached._cache[0]
    assert low.dtype == high.dtype == torch.uint8 and low.shape == (3, 20, 24)
    assert torch.equal(cached.load(1)[0], plain.load(1)[0])  # load() still gives float32


def test_lol_errors(tmp_path):
    with pytest.raises(UserError, match="no paired data"):
        find_pairs(str(tmp_path))
    (tmp_path / "our485").mkdir()
    with pytest.raises(UserError, match="our485"):
        find_pairs(str(tmp_path))
    _pairs(tmp_path, "low", "high", [("a.png", "a.png"), ("b.png", "c.png")])
    with pytest.raises(UserError) as ei:
        find_pairs(str(tmp_path))
    msg = str(ei.value)
    assert str(tmp_path / "low" / "b.png") in msg and str(tmp_path / "high" / "c.png") in msg
    assert "a.png" not in msg


def test_lol_size_mismatch(tmp_path):
    _pairs(tmp_path, "Low", "Normal", [("low1.png", "normal1.png")], size=(16, 12))
    _png(tmp_path / "Low" / "low2.png", np.zeros((12, 16, 3), np.uint8))
    _png(tmp_path / "Normal" / "normal2.png", np.zeros((12, 18, 3), np.uint8))
    low, high = str(tmp_path / "Low" / "low2.png"), str(tmp_path / "Normal" / "normal2.png")
    with pytest.raises(UserError) as ei:
        PairedDataset(str(tmp_path))
    assert low in str(ei.value) and high in str(ei.value)
    ds = PairedDataset(str(tmp_path), size_check=False)
    ds[0]
    with pytest.raises(UserError) as ei:
        ds[1]
    assert low in str(ei.value) and high in str(ei.value)


def test_augment_modes():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    ref = [x, torch.rot90(x, 1, [-1, -2]), torch.rot90(x, 2, [-1, -2]), torch.rot90(x, 3, [-1, -2]), x.flip(-2),
           torch.rot90(x, 1, [-1, -2]).flip(-2), torch.rot90(x, 2, [-1, -2]).flip(-2),
           torch.rot90(x, 3, [-1, -2]).flip(-2)]  # Restormer/EMNet Augment_RGB_torch.transform0..7
    outs = [augment(x, m) for m in range(8)]
    for m in range(8):
        assert torch.equal(outs[m], ref[m])
        assert outs[m].shape == ((2, 3, 5, 4) if m % 2 else (2, 3, 4, 5))
        assert torch.equal(augment_inverse(outs[m], m), x)
    sq = torch.arange(16.0).view(4, 4)
    assert len({tuple(augment(sq, m).flatten().tolist()) for m in range(8)}) == 8
    with pytest.raises(ValueError):
        augment(x, 8)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def test_prepare_demo(tmp_path):
    out, samples = tmp_path / "data", tmp_path / "test_data"
    m = build_demo(str(out), str(samples), seed=3, n_crops=4, crop=48, eval_per_photo=2, max_side=96)
    city = Cityscapes(str(out / "cityscapes"), crop_size=32, require_labels=False)
    assert len(city) == 4 and city[0][0].shape == (3, 32, 32)
    cs = ContrastSet(str(out / "Contrast"), crop_size=24)
    assert len(cs.positives) == len(cs.negatives) == 4 and cs.sample(2)[0].shape == (2, 3, 24, 24)
    train = find_pairs(str(out / "LOL-demo" / "our485"))
    evals = PairedDataset(str(out / "LOL-demo" / "eval15"))
    assert len(train) == 4 and len(evals) == 2 * len(HELD_OUT_PHOTOS)
    for low, high, name, _ in evals:
        assert name.split("_")[0] in HELD_OUT_PHOTOS
        assert low.shape[1] % 8 == 0 and low.shape[2] % 8 == 0 and max(low.shape[1:]) <= 96
        assert low.mean() < 0.5 * high.mean()
    for low, _ in train:
        assert os.path.basename(low).split("_")[0] in TRAIN_PHOTOS
    assert set(m["train_photos"]).isdisjoint(m["held_out_photos"]) and len(m["held_out_photos"]) >= 2
    assert sorted(os.listdir(samples / "skimage")) == sorted(evals.names)
    # deterministic for a seed; a smaller re-run removes its own stale files
    again = tmp_path / "again"
    build_demo(str(again), None, seed=3, n_crops=4, crop=48, eval_per_photo=2, max_side=96)
    assert _digest(out) == _digest(again)
    build_demo(str(again), None, seed=3, n_crops=2, crop=48, eval_per_photo=1, max_side=96)
    assert len(find_pairs(str(again / "LOL-demo" / "our485"))) == 2
    assert len(find_pairs(str(again / "LOL-demo" / "eval15"))) == len(HELD_OUT_PHOTOS)


def test_committed_samples_are_small():
    folder = ROOT / "datasets" / "test_data" / "skimage"
    if not folder.is_dir():
        pytest.skip("datasets/test_data/skimage not generated")
    files = sorted(folder.glob("*.png"))
    assert 4 <= len(files) <= 6
    for f in files:
        assert f.stat().st_size < 300_000
        with Image.open(f) as im:
            assert max(im.size) <= 400 and im.mode == "RGB"


def test_lol_crop_offsets_as_the_reference_draws_them():
    """randint(0, H − ps) exclusive: offsets 0..H−ps−1, never H−ps; 0 when H == ps (issue 6.2)."""
    from datasets.lol import paired_random_crop

    h, w, ps = 6, 7, 4
    img = torch.arange(h * w, dtype=torch.float32).view(1, h, w)
    torch.manual_seed(0)
    tops, lefts = set(), set()
    for _ in range(200):
        crop, _ = paired_random_crop(img, img, ps)
        tops.add(int(crop[0, 0, 0]) // w)
        lefts.add(int(crop[0, 0, 0]) % w)
    assert tops == {0, 1} and lefts == {0, 1, 2}
    exact, _ = paired_random_crop(img[:, :ps, :ps], img[:, :ps, :ps], ps)
    assert torch.equal(exact, img[:, :ps, :ps])


def test_ordered_map_keeps_no_result_alive_once_the_caller_drops_it():
    """The folder pipeline frees each decoded image when it is done with it: the generator, suspended
    while the caller works, holds no reference to a result it has already handed over."""
    import gc
    import weakref
    from concurrent.futures import ThreadPoolExecutor

    from datasets.folder import ordered_map

    class Image_:
        pass

    refs = []

    def make(i):
        obj = Image_()
        refs.append(weakref.ref(obj))
        return obj

    for pool in (ThreadPoolExecutor(1), None):
        refs.clear()
        gen = ordered_map(pool, make, range(4), ahead=1)
        item, obj = next(gen)
        assert item == 0 and refs[0]() is obj
        del obj
        gc.collect()
        assert refs[0]() is None  # freed although the generator is suspended mid-iteration
        assert [i for i, _ in gen] == [1, 2, 3]
        if pool is not None:
            pool.shutdown()


def test_cityscapes_cache_keeps_8bit_files_as_uint8_and_16bit_as_float(tmp_path):
    """The cache holds what the file holds: an 8-bit image as its bytes (uint8), a 16-bit one as float32
    v / 65535; items are the same float images with or without the cache, and a budget too small caches none."""
    import cv2

    _city_tree(tmp_path)
    files = sorted((tmp_path / "leftImg8bit" / "train").rglob("*.png"))
    deep = np.random.default_rng(0).integers(0, 65536, (48, 64, 3), dtype=np.uint16)
    cv2.imwrite(str(files[1]), deep[:, :, ::-1])  # OpenCV writes BGR
    ds = Cityscapes(str(tmp_path), crop_size=None, train=False, cache_mb=1)
    none = Cityscapes(str(tmp_path), crop_size=None, train=False, cache_mb=1e-3)
    u8, f32 = ds.stored(0)[0], ds.stored(1)[0]
    assert u8.dtype == torch.uint8 and torch.equal(u8, torch.from_numpy(np.array(Image.open(files[0]))).permute(2, 0, 1))
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32, torch.from_numpy(deep.astype(np.float32) / 65535).permute(2, 0, 1))
    assert set(ds._cache) == {0, 1} and not none._cache
    for i in range(4):
        assert torch.equal(ds[i][0], none[i][0]) and ds[i][0].dtype == torch.float32
    torch.testing.assert_close(ds[0][0], u8.float() / 255, rtol=0, atol=0)


def test_shards_partition_the_folder(tmp_path):
    for i in range(7):
        write_rgb(tmp_path / f"{i}.png", 8, 8, seed=i)
    data = ImageFolder(str(tmp_path))
    for world in (1, 2, 3):
        shares = [data.shard(r, world) for r in range(world)]
        assert sorted(i for s in shares for i in s) == list(range(7))


def test_symlinked_sub_folders_are_followed_once_and_loops_end(tmp_path):
    """probe symlinked_subfolder_in_input / symlink_loops: a folder holding only a link to a photo folder
    has those photos (they used to be 'no images found'); a link back to an ancestor is walked once."""
    from datasets.folder import ImageFolder

    photos = tmp_path / "library" / "album"
    write_rgb(photos / "a.png", 8, 8, seed=1)
    write_rgb(photos / "sub" / "b.png", 8, 8, seed=2)
    (photos / "clip.webp").write_bytes(b"RIFF")
    top = tmp_path / "in"
    top.mkdir()
    (top / "album").symlink_to(photos, target_is_directory=True)
    (photos / "loop").symlink_to(photos, target_is_directory=True)  # a loop back to itself
    data = ImageFolder(str(top))
    assert [data.relpath(i) for i in range(len(data))] == ["album/a.png", "album/sub/b.png"]
    assert [os.path.basename(p) for p in data.skipped] == ["clip.webp"]

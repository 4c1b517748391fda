"""Image reading/writing with one convention: float32 RGB in [0, 1].

* Arrays are ``HxWx3`` (``np.ndarray``), tensors are ``(3, H, W)`` (``torch.Tensor``).
* :func:`read_image` accepts 8-bit and 16-bit PNG/TIFF, JPEG, BMP; grayscale is repeated to 3 channels,
  an alpha channel is dropped (not composited), palette images are expanded, EXIF orientation is applied.
* :func:`to_uint8` rounds exactly like ``torchvision.utils.save_image``:
  ``x.mul(255).add_(0.5).clamp_(0, 255)`` then a truncating cast to uint8 (NaN becomes 0).
* :func:`save_image` writes atomically (a temp file in the same folder, then ``os.replace``); it can embed an
  input's ICC profile and EXIF (:func:`read_metadata`, orientation reset to 1: pixels are stored upright) and
  write 16-bit PNG/TIFF (:func:`to_uint16`).
"""
from __future__ import annotations

import functools
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from utils.errors import UserError
from utils.fs import atomic_write

# Large photos are this project's job (tiles, memory budget): PIL's warning beyond 89 megapixels, printed raw
# with its source line from a decoding thread, says nothing the user can act on. Images over twice that limit
# still raise PIL's DecompressionBombError, reported as an unreadable file naming it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".tif", ".tiff")  # .jfif: a JPEG (browsers save it)
ImageLike = Union[torch.Tensor, np.ndarray]

_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jfif": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF", ".webp": "WEBP"}
_DEEP_FORMATS = ("PNG", "TIFF")  # the formats written with 16 bits per channel
_EXIF_ORIENTATION = 0x0112
# TIFF tags that describe how a TIFF's pixels are stored (size, bits, compression, strips, tiles, colour map,
# its ICC profile, JPEG tables): a TIFF input's EXIF (its first IFD) holds them, and copied into an output
# they would describe the wrong pixels (a TIFF written with them cannot be read)
_STRUCTURE_TAGS = {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320, 322,
                   323, 324, 325, 338, 339, 340, 341, 347, 529, 530, 531, 532, 34675}


def is_image_file(path: str) -> bool:
    """True if ``path`` ends with one of :data:`IMG_EXTENSIONS` (case-insensitive)."""
    return path.lower().endswith(IMG_EXTENSIONS)


def walk_folders(root: str) -> Iterator[tuple[str, list[str]]]:
    """``(folder, file names)`` of ``root`` and every sub-folder under it, sorted, hidden ones (``.``) skipped.
    Symbolically linked sub-folders are followed (a photo library often links its albums), each real folder
    once, so a link loop ends."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        seen.add(os.path.realpath(dirpath))
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if not d.startswith(".") and real not in seen:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        yield dirpath, filenames


def list_images(folder: str, recursive: bool = False) -> list[str]:
    """Sorted paths of the image files in ``folder`` (sub-folders too if ``recursive``).

    Hidden files and folders (name starting with ``.``) are skipped. Raises :class:`UserError` if
    ``folder`` is not a directory.
    """
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: folder not found; check the path")
    out: list[str] = []
    if recursive:
        for dirpath, filenames in walk_folders(folder):
            out.extend(os.path.join(dirpath, f) for f in filenames if not f.startswith(".") and is_image_file(f))
    else:
        out = [os.path.join(folder, f) for f in os.listdir(folder)
               if not f.startswith(".") and is_image_file(f) and os.path.isfile(os.path.join(folder, f))]
    return sorted(out, key=lambda p: os.path.relpath(p, folder).split(os.sep))


def apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an HxW[xC] array, as ``PIL.ImageOps.exif_transpose`` does (pinned
    to it by ``tests/test_image_io.py::test_orient_matches_pil``). 8-bit images are turned by exif_transpose
    itself; this serves the arrays a PIL image cannot hold (16-bit colour decoded by OpenCV, label maps).
    exif_transpose there (on an image of pixel indices that then pick the pixels, or one channel at a time)
    measured 3.5x slower on a 12-megapixel float image: 2.3 s against 0.65 s."""
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: np.rot90(x, k=-1),
        7: lambda x: x.swapaxes(0, 1)[::-1, ::-1],
        8: lambda x: np.rot90(x, k=1),
    }
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


def _orientation_of(im: Image.Image) -> int:
    """The EXIF orientation (1..8) of an open image; 1 when it has none."""
    return int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)


def _header(path: str) -> tuple[int, int, int]:
    """(stored width, stored height, EXIF orientation) from the file header; no pixel decoding."""
    try:
        with Image.open(path) as im:
            return (*im.size, _orientation_of(im))
    except Exception as e:
        raise UserError(f"{path}: cannot read image ({str(e)[:200]}); replace or remove it") from e


def exif_orientation(path: str) -> int:
    """The EXIF orientation (1..8) that :func:`read_image` applies to the file at ``path``; 1 when none.
    A per-pixel annotation of the stored image (a segmentation label) takes the same one through
    :func:`apply_orientation`."""
    return _header(path)[2]


def image_size(path: str) -> tuple[int, int]:
    """(width, height) from the file header, after EXIF orientation; no pixel decoding."""
    w, h, orientation = _header(path)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # the transposing ones


@dataclass(frozen=True)
class Metadata:
    """What :func:`save_image` carries over from an input: its ICC profile and its EXIF block (``Exif\\0\\0``
    and the TIFF structure, orientation set to 1 because :func:`read_image` stores the pixels upright)."""

    icc: bytes | None = None
    exif: bytes | None = None

    def __bool__(self) -> bool:
        return bool(self.icc or self.exif)


def read_metadata(path: str) -> Metadata:
    """The ICC profile and EXIF of the image at ``path`` (from the header; no pixel decoding), the EXIF
    orientation reset to 1 when present. A PNG's EXIF is the ``eXIf`` chunk before the pixels (Pillow would
    decode the whole image to look after them). Raises :class:`UserError` naming an unreadable file."""
    try:
        with Image.open(path) as im:
            icc = im.info.get("icc_profile") or None
            if im.format == "PNG":
                exif = Image.Exif()
                if im.info.get("exif"):
                    exif.load(im.info["exif"])
            else:
                exif = im.getexif()
            for tag in _STRUCTURE_TAGS & set(exif):  # a TIFF's own layout: not the written image's
                del exif[tag]
            if _EXIF_ORIENTATION in exif:
                exif[_EXIF_ORIENTATION] = 1
            return Metadata(icc, exif.tobytes() if len(exif) else None)
    except Exception as e:
        raise UserError(f"{path}: cannot read image metadata ({str(e)[:200]}); replace or remove it") from e


def _rawmode(im: Image.Image) -> str:
    if not im.tile:
        return ""
    args = im.tile[0].args if hasattr(im.tile[0], "args") else im.tile[0][3]
    return args if isinstance(args, str) else str(args[0]) if args else ""


@functools.cache
def _opencv():
    """The ``cv2`` module, imported once (about 0.15 s), or None when OpenCV is not installed."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _read_16bit_color(path: str, im: Image.Image) -> np.ndarray:
    """16-bit RGB(A) PNG/TIFF, which Pillow would truncate to 8 bits: decode with OpenCV."""
    cv2 = _opencv()
    if cv2 is None:
        raise ValueError("16-bit colour image: install opencv-python-headless to read it")
    a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if a is None or a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError("16-bit colour image that OpenCV cannot decode")
    rgb = a[..., 2::-1].astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0)
    return apply_orientation(rgb, _orientation_of(im))


def _check_range(a: np.ndarray, lo: float, hi: float, what: str) -> None:
    """A ValueError when ``a`` holds values outside ``[lo, hi]``, which reading would clip (e.g. a float TIFF
    of 0..255 values, or 32-bit integers, turned all white without a word)."""
    low, high = (a.min(), a.max()) if a.size else (lo, hi)
    if low < lo or high > hi:
        raise ValueError(f"pixel values {low:g}..{high:g} lie outside the {what} range {lo:g}..{hi:g}, so the "
                         f"image would be clipped; save it scaled to {lo:g}..{hi:g} (or as 8/16-bit)")


def _pil_to_array(im: Image.Image, keep_8bit: bool = False) -> np.ndarray:
    """A loaded, already oriented PIL image → float32 HxWx3 in [0, 1] (``keep_8bit``: uint8 HxWx3 when the
    image holds 8-bit values)."""
    mode = im.mode
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
        mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im)
        _check_range(a, 0, 65535, "16-bit")
        a = a.astype(np.float32) / 65535.0
    elif mode == "F":
        a = np.asarray(im, dtype=np.float32)
        if not np.isfinite(a).all():
            raise ValueError(f"{int((~np.isfinite(a)).sum())} pixel value(s) are NaN/Inf")
        _check_range(a, 0.0, 1.0, "float")
    elif mode in ("L", "LA", "1"):
        a = np.asarray(im.convert("L"))
        if keep_8bit:
            return np.repeat(a[:, :, None], 3, axis=2)
        a = a.astype(np.float32) / 255.0
    else:
        a = np.asarray(im if mode == "RGB" else im.convert("RGBA" if mode == "RGBA" else "RGB"))
        if keep_8bit:  # a writable copy (PIL's array is read-only, which torch.from_numpy warns about)
            return np.array(a[..., :3], order="C")
        a = a[..., :3].astype(np.float32)
        a /= 255.0  # in place: one float copy of a large photo, not two
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.dtype != np.float32 or not a.flags.writeable or not a.flags.c_contiguous:
        a = np.array(a, dtype=np.float32, order="C")
    return np.clip(a, 0.0, 1.0, out=a)


def read_image(path: str, keep_8bit: bool = False) -> np.ndarray:
    """Read ``path`` as float32 HxWx3 RGB in [0, 1]; with ``keep_8bit``, an image of 8-bit values (RGB,
    RGBA, palette, grey) is returned as uint8 HxWx3 instead, a quarter of the memory (``v / 255`` in
    float32 gives the float image exactly); 16-bit and float images stay float32.

    A missing path or a corrupt/truncated/non-image file raises :class:`UserError` naming the file.
    """
    if not os.path.isfile(path):
        raise UserError(f"{path}: image not found; check the path")
    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA") and ";16" in _rawmode(im):
                return _read_16bit_color(path, im)
            im.load()
            return _pil_to_array(ImageOps.exif_transpose(im), keep_8bit)
    except UserError:
        raise
    except Exception as e:  # any decoder failure means the file cannot be used
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot read image ({msg}); replace or remove it") from e


def read_image_uint8(path: str) -> np.ndarray:
    """Read ``path`` as uint8 HxWx3 RGB: an 8-bit image as decoded, a 16-bit or float one rounded as
    :func:`to_uint8` rounds (``read_image``'s errors)."""
    return to_uint8(read_image(path, keep_8bit=True))


def read_image_tensor(path: str, keep_8bit: bool = False) -> torch.Tensor:
    """Read ``path`` as a float32 tensor (3, H, W) in [0, 1]; with ``keep_8bit``, 8-bit images as uint8
    (3, H, W) (see :func:`read_image`; :func:`unpack_8bit` gives the float image exactly)."""
    return torch.from_numpy(read_image(path, keep_8bit).transpose(2, 0, 1).copy())


def unpack_8bit(image: torch.Tensor) -> torch.Tensor:
    """The float32 image in [0, 1] of a uint8 image (``v / 255``); a float image as it is."""
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image


def to_uint8(x: ImageLike) -> np.ndarray:
    """(3,H,W) / (1,3,H,W) tensor or HxWx3 / HxW array in [0,1] → uint8 HxWx3 array.

    Same arithmetic as ``torchvision.utils.save_image``: ``x*255 + 0.5``, clamp to [0, 255], truncate
    (so 0.5/255 → 1 only if ``x*255`` reaches 0.5 in the input dtype). A uint8 input is returned as is.
    """
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint8:
            return np.repeat(x[:, :, None], 3, axis=2) if x.ndim == 2 else x
        t = torch.from_numpy(np.ascontiguousarray(x))
        t = t[:, :, None].expand(-1, -1, 3) if t.ndim == 2 else t
        if t.ndim != 3 or t.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 array, got shape {tuple(x.shape)}")
    else:
        t = x.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"expected a (3,H,W) tensor, got shape {tuple(t.shape)}")
        t = t.expand(3, -1, -1).permute(1, 2, 0)
        if t.dtype == torch.uint8:
            return t.contiguous().numpy()
    if not t.is_floating_point():
        t = t.float()
    out = np.empty(tuple(t.shape), np.uint8)
    rows = max(1, _CHUNK // (t.shape[1] * 3))  # a float temporary of at most _CHUNK values, whatever the size
    # NaN -> 0 after the scaling (same values as before it)
    for r in range(0, t.shape[0], rows):
        out[r:r + rows] = t[r:r + rows].mul(255).nan_to_num_(nan=0.0).add_(0.5).clamp_(0, 255).to(torch.uint8).numpy()
    return out


_CHUNK = 1 << 22  # values per block of to_uint8 (16 MB of float32)


def to_uint16(x: ImageLike) -> np.ndarray:
    """(3,H,W) / (1,3,H,W) tensor or HxWx3 array in [0,1] → uint16 HxWx3 array: ``x*65535 + 0.5`` in float64
    (exact for every float32 value), clamped to [0, 65535], truncated; NaN becomes 0. A uint16 array is
    returned as is."""
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint16:
            return x
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        t = x.detach().cpu()
        t = t[0] if t.ndim == 4 and t.shape[0] == 1 else t
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"expected a (3,H,W) tensor, got shape {tuple(t.shape)}")
        t = t.permute(1, 2, 0)
    if t.ndim != 3 or t.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {tuple(t.shape)}")
    scale = 255.0 if t.dtype == torch.uint8 else 1.0  # 8-bit values: v/255 scaled to 16 bits
    out = np.empty(tuple(t.shape), np.uint16)
    rows = max(1, _CHUNK // (t.shape[1] * 3))
    for r in range(0, t.shape[0], rows):
        block = t[r:r + rows].double().div_(scale).mul_(65535).nan_to_num_(nan=0.0).add_(0.5).clamp_(0, 65535)
        out[r:r + rows] = block.to(torch.int32).numpy()
    return out


#: zlib level of written PNGs (lossless whatever it is), encoded through OpenCV's libpng with zlib's
#: run-length strategy and the "up" row filter for every row (libpng otherwise tries all five filters on
#: each row): faster than Pillow at level 1, and smaller (``python benchmarks/bench_inference.py --sets png``).
PNG_COMPRESS_LEVEL = 1


def load_codecs() -> None:
    """Import the decoders and the PNG encoder now, so that a timed loop's first image does not pay for
    them."""
    Image.preinit()
    _png_params()


@functools.cache
def _png_params() -> list[int] | None:
    """OpenCV's PNG settings (``PNG_COMPRESS_LEVEL``, Z_RLE, the "up" filter); None without OpenCV."""
    cv2 = _opencv()
    if cv2 is None:
        return None
    params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESS_LEVEL, cv2.IMWRITE_PNG_STRATEGY,
              cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    return params


def _encode_png(a: np.ndarray) -> np.ndarray | None:
    """uint8 (H, W, 3) RGB → the PNG file's bytes (a 1-D uint8 array, not copied into ``bytes``) with
    OpenCV (:func:`_png_params`); None without OpenCV."""
    params = _png_params()
    if params is None:
        return None
    ok, buf = _opencv().imencode(".png", np.ascontiguousarray(a[..., ::-1]), params)
    return buf.reshape(-1) if ok else None


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _with_png_metadata(png: bytes, metadata: Metadata) -> bytes:
    """``png`` with an ``iCCP`` and/or ``eXIf`` chunk right after ``IHDR`` (both must precede the pixels)."""
    extra = b""
    if metadata.icc:
        extra += _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(metadata.icc))
    if metadata.exif:
        exif = metadata.exif
        extra += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif)
    end = 8 + 8 + 13 + 4  # signature, then IHDR: length and type, 13 bytes of data, CRC
    return png[:end] + extra + png[end:]


def save_image(x: ImageLike, path: str, quality: int = 95, *, metadata: Metadata | None = None,
               bit_depth: int = 8) -> None:
    """Write ``x`` (see :func:`to_uint8`) to ``path``; format from the extension (PNG, JPEG, WebP, BMP, TIFF).

    ``quality``: JPEG and WebP (1..100). ``metadata``: the ICC profile and EXIF to embed (PNG, JPEG, WebP,
    8-bit TIFF; BMP holds neither). ``bit_depth`` 16: PNG or TIFF with 16 bits per channel (:func:`to_uint16`;
    needs OpenCV; a 16-bit TIFF gets no metadata). Atomic: written to a temporary file in the same folder,
    then renamed; parent folders are created.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in _SAVE_FORMATS:
        raise UserError(f"{path}: unsupported image extension {ext!r}; use one of {', '.join(_SAVE_FORMATS)}")
    fmt = _SAVE_FORMATS[ext]
    if bit_depth == 16:
        _save_16bit(x, path, fmt, metadata)
        return
    a = to_uint8(x)
    png = _encode_png(a) if fmt == "PNG" else None
    with atomic_write(path, "wb") as f:  # inference.OutputPlan removes the temporaries a killed run left
        if png is not None:
            f.write(_with_png_metadata(png.tobytes(), metadata) if metadata else png)
        else:
            kwargs = ({"quality": quality} if fmt in ("JPEG", "WEBP") else
                      {"compress_level": PNG_COMPRESS_LEVEL} if fmt == "PNG" else {})
            if metadata and fmt != "BMP":
                kwargs.update({k: v for k, v in (("icc_profile", metadata.icc), ("exif", metadata.exif)) if v})
            Image.fromarray(a, "RGB").save(f, format=fmt, **kwargs)


def _save_16bit(x: ImageLike, path: str, fmt: str, metadata: Metadata | None) -> None:
    if fmt not in _DEEP_FORMATS:
        raise UserError(f"{path}: {fmt} holds 8 bits per channel; write 16-bit images as .png or .tif")
    cv2 = _opencv()
    if cv2 is None:
        raise UserError(f"{path}: writing 16-bit images needs OpenCV; install opencv-python-headless")
    bgr = np.ascontiguousarray(to_uint16(x)[..., ::-1])
    ok, buf = cv2.imencode(".png" if fmt == "PNG" else ".tiff", bgr, _png_params() if fmt == "PNG" else [])
    if not ok:
        raise UserError(f"{path}: OpenCV could not encode the 16-bit image")
    data = buf.tobytes()
    if fmt == "PNG" and metadata:
        data = _with_png_metadata(data, metadata)
    with atomic_write(path, "wb") as f:
        f.write(data)


def _label_strip(labels: Sequence[str], widths: Sequence[int], gap: int, height: int) -> np.ndarray:
    """A white strip with each label centred (black text) above its image."""
    strip = Image.new("RGB", (sum(widths) + gap * (len(widths) - 1), height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    try:
        font = ImageFont.load_default(size=max(8, height - 6))
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    x0 = 0
    for text, w in zip(labels, widths):
        box = draw.textbbox((0, 0), text, font=font)
        tx = x0 + max(0, (w - (box[2] - box[0])) // 2) - box[0]
        ty = max(0, (height - (box[3] - box[1])) // 2) - box[1]
        draw.text((tx, ty), text, fill=(0, 0, 0), font=font)
        x0 += w + gap
    return np.asarray(strip)


def save_grid(images: Sequence[ImageLike], path: str, labels: Sequence[str] | None = None,
              gap: int = 4, label_height: int = 18) -> np.ndarray:
    """Concatenate images left to right (``gap`` white pixels between) and save to ``path``.

    ``labels`` (one per image) adds a white strip of ``label_height`` pixels with the names on top.
    Returns the uint8 HxWx3 grid that was written.
    """
    if not images:
        raise ValueError("save_grid needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"save_grid got {len(labels)} labels for {len(images)} images")
    return save_grid_rows([images], path, labels, gap, label_height)


def save_grid_rows(rows: Sequence[Sequence[ImageLike]], path: str, labels: Sequence[str] | None = None,
                   gap: int = 4, label_height: int = 18) -> np.ndarray:
    """Several :func:`save_grid` rows stacked top to bottom (narrower rows padded white on the right),
    with one label strip on top; saved to ``path``. Returns the uint8 HxWx3 grid.

    Not ``torchvision.utils.make_grid``: it stacks images of one size only (a paired report's rows and the
    README figure mix sizes) and pads the outer border too, which would change every grid written so far."""
    if not rows:
        raise ValueError("save_grid_rows needs at least one row")
    arrays = [[to_uint8(x) for x in row] for row in rows]
    lines = []
    for row in arrays:
        h = max(a.shape[0] for a in row)
        parts = []
        for i, a in enumerate(row):
            if i and gap > 0:
                parts.append(np.full((h, gap, 3), 255, np.uint8))
            parts.append(np.pad(a, ((0, h - a.shape[0]), (0, 0), (0, 0)), constant_values=255))
        lines.append(np.concatenate(parts, axis=1))
    width = max(line.shape[1] for line in lines)
    stacked = []
    for i, line in enumerate(lines):
        if i and gap > 0:
            stacked.append(np.full((gap, width, 3), 255, np.uint8))
        stacked.append(np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255))
    grid = np.concatenate(stacked, axis=0)
    if labels is not None:
        widths = [a.shape[1] for a in arrays[0]]
        strip = _label_strip(labels, widths, gap, label_height)
        strip = np.pad(strip, ((0, 0), (0, width - strip.shape[1]), (0, 0)), constant_values=255)
        grid = np.concatenate([strip, grid], axis=0)
    save_image(grid, path)
    return grid

"""The probe's lowlight_test.py cases (area infer) that probe_cases_base1/2.py do not hold: bad files, output
folders, checkpoints, image formats, paired layouts, memory checkpoints, signals and a full disk."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np

import tools.probe_lib as L
from tools.probe_build import bad_ckpt, deeplab, enh_run, mem_run, scl_run, truncated_copy
from tools.probe_cases_base1 import emnet_ckpt
from tools.probe_cases_user import formats_folder, formats_run
from tools.probe_lib import (WEIGHTS, case, classify_error, classify_ok, files, lle, photos, ro_mount, short,
                             tmpfs, torchrun, wait_for)


def _in(name, **fill):
    """A folder ``name`` under the probe's temp dir with files {filename: bytes|('rgb', h, w)}."""
    from helpers import write_rgb
    d = L.TMP / name
    d.mkdir(parents=True, exist_ok=True)
    for i, (fn, v) in enumerate(fill.items()):
        if isinstance(v, tuple):
            write_rgb(d / fn, v[1], v[2], seed=i, scale=0.3)
        else:
            (d / fn).write_bytes(v)
    return d


def enh(inp, out, *extra, **k):
    return lle("--input_dir", inp, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu", *extra, **k)


def _png_bytes():
    return (photos() / "p0.png").read_bytes()


# --- one bad file among good ones: exit 1 naming it, the good ones written
def _bad_file(name, fname, data_fn):
    def f():
        d = _in("bad_" + name, **{"good.png": ("rgb", 24, 32), fname: data_fn()})
        out = L.TMP / ("o_" + name)
        r = enh(d, out)
        v = classify_error(r, fname, dirs=[out])
        if v[0] == "good" and files(out) != ["good.png"]:
            return "bad", f"outputs {files(out)}: the good image was not written"
        return v
    L.CASES[name] = ("infer", f)


_bad_file("truncated_png", "trunc.png", lambda: _png_bytes()[: len(_png_bytes()) // 2])
_bad_file("zero_byte", "zero.png", lambda: b"")
_bad_file("text_png", "text.png", lambda: b"hello\n")


def _nan_tiff():
    import io
    from PIL import Image
    a = np.full((24, 32), 0.2, np.float32)
    a[3, 3] = np.nan
    b = io.BytesIO()
    Image.fromarray(a, "F").save(b, "TIFF")
    return b.getvalue()


_bad_file("nan_float_tiff", "nan.tif", _nan_tiff)


def _refused(name, inp_fn, out_fn, needle, extra=()):
    def f():
        inp, out = inp_fn(), out_fn()
        before = files(inp) if Path(inp).is_dir() else None
        r = enh(inp, out, *extra)
        v = classify_error(r, needle() if callable(needle) else needle)
        if before is not None and files(inp) != before:
            return "bad", "the input folder changed: " + v[1]
        return v
    L.CASES[name] = ("infer", f)


def _txt_folder():
    return _in("txtonly", **{"a.txt": b"x", "b.txt": b"y"})


_refused("nonimage_folder", _txt_folder, lambda: L.TMP / "o_txt", "no images")
_refused("single_webp", lambda: _webp(), lambda: L.TMP / "o_webp", "x.webp")
_refused("gif_only_folder", lambda: _gif().parent, lambda: L.TMP / "o_gif", "no images")
_refused("animated_gif_single", lambda: _gif(), lambda: L.TMP / "o_gif1", "anim.gif")
_refused("out_eq_in_slash", photos, lambda: str(photos()) + "/", "input folder")
_refused("out_eq_in_singlefile", lambda: photos() / "p0.png", photos, "input folder")
_refused("out_subdir_rerun_reenhances", photos, lambda: photos() / "enhanced", "inside the input folder")
_refused("input_symlink_loop", lambda: _loop("inloop"), lambda: L.TMP / "o_inloop", "inloopA")


@case("infer", "weights_symlink_loop")
def _():
    (L.TMP / "ck").mkdir(exist_ok=True)
    a, b = L.TMP / "ck" / "loopA.pth", L.TMP / "ck" / "loopB.pth"
    a.symlink_to(b)
    b.symlink_to(a)
    return classify_error(enh(photos(), L.TMP / "o_wloop", "--weights", a), "loopA.pth")


def _webp():
    from PIL import Image
    d = L.TMP / "webponly"
    d.mkdir(exist_ok=True)
    Image.open(photos() / "p0.png").save(d / "x.webp")
    return d / "x.webp"


def _gif():
    from PIL import Image
    d = L.TMP / "gifonly"
    d.mkdir(exist_ok=True)
    ims = [Image.open(photos() / f"p{i}.png").convert("P") for i in range(3)]
    ims[0].save(d / "anim.gif", save_all=True, append_images=ims[1:])
    return d / "anim.gif"


def _loop(name):
    a, b = L.TMP / f"{name}A", L.TMP / f"{name}B"
    if not os.path.lexists(a):
        a.symlink_to(b)
        b.symlink_to(a)
    return a


@case("infer", "out_symlink_to_in")
def _():
    link = L.TMP / "plink"
    link.symlink_to(photos())
    return classify_error(enh(photos(), link), "input folder")


@case("infer", "out_subdir_overwrites_input")
def _():
    d = _in("subdirs/night", **{"n0.png": ("rgb", 24, 32), "n1.png": ("rgb", 24, 32)}).parent
    before = {f: hashlib.md5((d / f).read_bytes()).hexdigest() for f in files(d)}
    r = enh(d, d / "night")
    after = {f: hashlib.md5((d / f).read_bytes()).hexdigest() for f in files(d)}
    v = classify_error(r, "inside the input folder")
    return ("bad", "input files overwritten: " + v[1]) if before != after else v


@case("infer", "out_immutable_dir")
def _():
    d = L.TMP / "immut"
    d.mkdir()
    if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
        return "not re-run", "chattr +i is not supported on this filesystem"
    try:
        return classify_error(enh(photos(), d), "not writable")
    finally:
        subprocess.run(["chattr", "-i", str(d)])


@case("infer", "output_file_immutable")
def _():
    out = L.TMP / "o_imf"
    enh(photos(), out)
    f = out / "p1.png"
    if subprocess.run(["chattr", "+i", str(f)], capture_output=True).returncode:
        return "not re-run", "chattr +i is not supported on this filesystem"
    try:
        return classify_error(enh(photos(), out), "p1.png", dirs=[out])
    finally:
        subprocess.run(["chattr", "-i", str(f)])


@case("infer", "out_readonly_file_replaced")
def _():
    out = L.TMP / "o_rofile"
    out.mkdir()
    f = out / "p0.png"
    f.write_bytes(b"old result")
    f.chmod(0o444)
    r = enh(photos(), out)
    return classify_ok(r, lambda: None if f.read_bytes() != b"old result" else "the old result was kept", dirs=[out])


@case("infer", "out_dir_in_way")
def _():
    out = L.TMP / "diw"
    (out / "p1.png").mkdir(parents=True)
    return classify_error(enh(photos(), out), "p1.png", dirs=[out])


@case("infer", "out_readonly_fs")
def _():
    m = ro_mount("rofs")
    return ("not re-run", "cannot mount a read-only tmpfs") if m is None else classify_error(enh(photos(), m), "Read-only")


@case("infer", "out_readonly_fs_sub")
def _():
    m = ro_mount("rofs2")
    return ("not re-run", "cannot mount a read-only tmpfs") if m is None else \
        classify_error(enh(photos(), m / "sub" / "deeper"), "Read-only")


@case("infer", "paired_readonly_fs")
def _():
    m = ro_mount("rofs3")
    if m is None:
        return "not re-run", "cannot mount a read-only tmpfs"
    _, va = L.lol()
    return classify_error(enh(va, m / "res", "--no_lpips"), "Read-only")


def _unicode(name, inp_name, out_name):
    def f():
        d = L.TMP / inp_name
        shutil.copytree(photos(), d)
        (d / "p0.png").rename(d / "nuit étoilée 夜.png")
        out = L.TMP / out_name
        r = enh(d, out)
        return classify_ok(r, lambda: None if len(files(out)) == 3 else f"outputs {files(out)}")
    L.CASES[name] = ("infer", f)


_unicode("unicode_paths", "phötos dé nuit", "o_unicode")
_unicode("unicode_input_and_output_dirs", "ïn pút 夜", "ôut püt 夜")


# --- checkpoints
def _ck(name, path_fn, needle, extra=(), ok=False, check_out=True):
    def f():
        out = L.TMP / ("o_" + name)
        r = enh(photos(), out, "--weights", path_fn(), *extra)
        if ok:
            return classify_ok(r, lambda: None if len(files(out)) == 3 else f"{len(files(out))} outputs", dirs=[out])
        v = classify_error(r, needle() if callable(needle) else needle)
        if check_out and files(out):
            return "bad", f"refused but wrote {files(out)[:2]}: " + v[1]
        return v
    L.CASES[name] = ("infer", f)


def _variant(name, fn):
    def make():
        import torch
        sd = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
        p = L.TMP / "ck" / f"{name}.pth"
        p.parent.mkdir(exist_ok=True)
        fn(sd, p)
        return p
    return lambda: L.once("ck_" + name, make)


def _save(sd, p, **k):
    import torch
    torch.save(sd, p, **k)


def _badshape(sd, p):
    import torch
    sd = dict(sd)
    k = next(iter(sd))
    sd[k] = torch.zeros(sd[k].shape[0] + 1, *sd[k].shape[1:])
    _save(sd, p)


def _missing1(sd, p):
    _save({k: v for i, (k, v) in enumerate(sd.items()) if i}, p)


def _bitflip(sd, p):
    _save(sd, p)
    data = bytearray(p.read_bytes())
    with __import__("zipfile").ZipFile(p) as z:
        info = [i for i in z.infolist() if "/data/" in i.filename][0]
    off = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 5
    data[off] ^= 0x01
    p.write_bytes(bytes(data))


_ck("ckpt_hw", lambda: bad_ckpt("hw"), "hw.pth")
_ck("ckpt_resnet", lambda: bad_ckpt("resnet"), "resnet.pth")
_ck("ckpt_badshape", _variant("badshape", _badshape), "badshape.pth")
_ck("ckpt_memory_as_weights", lambda: mem_run() / "models" / "memory_best.pth", "memory_best.pth")
_ck("arch_emnet_dce_ckpt", lambda: WEIGHTS, "EMNet", extra=("--arch", "emnet"))
_ck("ckpt_missingkey_arch_dce", _variant("missingkey", _missing1), "missing", extra=("--arch", "dce"))
_ck("ckpt_deeplab_as_weights", deeplab, "deeplab.pth")
_ck("ckpt_bitflip_silent", _variant("bitflip", _bitflip), None, ok=True)
_ck("ckpt_legacy_format", _variant("legacy", lambda sd, p: _save(sd, p, _use_new_zipfile_serialization=False)),
    None, ok=True)
_ck("ckpt_half_precision", _variant("half", lambda sd, p: _save({k: v.half() for k, v in sd.items()}, p)), None, ok=True)
_ck("ckpt_training_latest_as_weights", lambda: scl_run() / "latest.pth", None, ok=True)


# --- image formats (one shared run over the formats folder; each case judges its own file)
def _fmt(name, fname, check=None):
    def f():
        from PIL import Image
        r, out = formats_run()
        if "Traceback" in r.err or r.timed_out:
            return classify_ok(r)
        if fname in r.err:
            return "bad", f"{fname} failed: {short([ln for ln in r.lines if fname in ln][-1])}"
        stem = Path(fname).stem
        got = [o for o in files(out) if Path(o).stem == stem]
        if len(got) != 1:
            return "bad", f"{fname}: outputs {got}"
        o = Image.open(out / got[0])
        if o.mode != "RGB":
            return "bad", f"{fname}: output mode {o.mode}"
        if check:
            ref = np.asarray(Image.open(out / "ref_rgb.png"))
            problem = check(np.asarray(o), ref, got[0])
            if problem:
                return "bad", f"{fname}: {problem}"
        return "good", f"{fname} -> {got[0]} {o.size[0]}x{o.size[1]} RGB (shared run of the formats folder, exit {r.rc})"
    L.CASES[name] = ("infer", f)


def _same(tol):
    return lambda o, ref, n: None if o.shape == ref.shape and np.abs(o.astype(int) - ref).max() <= tol else \
        f"differs from the 8-bit source's output (max {np.abs(o.astype(int) - ref).max() if o.shape == ref.shape else o.shape})"


_fmt("fmt_rgb16_png", "rgb16_png.png", _same(1))
_fmt("fmt_rgb16_tif", "rgb16_tif.tif", _same(1))
_fmt("fmt_gray16_png", "gray16.png")
_fmt("fmt_rgba16_png", "rgba16.png", _same(1))
_fmt("fmt_cmyk_jpg", "cmyk_jpg.jpg")
_fmt("fmt_cmyk_tif", "cmyk_tif.tif")
_fmt("fmt_gray_png", "gray.png")
_fmt("fmt_rgba_png", "rgba.png", _same(0))
_fmt("fmt_la_png", "la.png")
_fmt("fmt_pal_png", "pal.png")
_fmt("fmt_bw_png", "bw.png")
_fmt("fmt_exif6_jpg", "exif6.jpg", lambda o, ref, n: None if o.shape[:2] == (50, 30) else f"output {o.shape[1]}x{o.shape[0]}, not 30x50")
_fmt("fmt_prog_jpg", "prog.jpg")
_fmt("fmt_rgb_bmp", "rgb.bmp", lambda o, ref, n: None if n.endswith(".bmp") else f"written as {n}")

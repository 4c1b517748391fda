"""The probe's lowlight_test.py cases, continued: paired layouts, memory checkpoints, odd images, signals, a full
disk and torchrun."""
from __future__ import annotations

import shutil
import signal
from pathlib import Path

import numpy as np

import tools.probe_lib as L
from tools.probe_build import bad_ckpt, enh_run, mem_run, truncated_copy
from tools.probe_cases_infer import _in, enh
from tools.probe_lib import (WEIGHTS, case, classify_error, classify_ok, files, leftovers, lle, photos, short, tmpfs,
                             torchrun, wait_for)


def pairs(name, n=3, h=32, w=40, low="low", high="high", names=None):
    """A paired folder; ``names``: {side: [file names]} to override the default 1.png..n.png."""
    from helpers import write_rgb
    d = L.TMP / "pairs" / name
    for side in (low, high):
        for i, fn in enumerate((names or {}).get(side, [f"{j + 1}.png" for j in range(n)])):
            write_rgb(d / side / fn, h, w, seed=i, scale=0.2 if side == low else 1.0)
        (d / side).mkdir(parents=True, exist_ok=True)
    return d


def paired(inp, out, *extra, **k):
    return lle("--input_dir", inp, "--result_dir", out, "--weights", WEIGHTS, "--device", "cpu", "--no_lpips", *extra, **k)


def score(out):
    t = (Path(out) / "result.txt").read_text() if (Path(out) / "result.txt").exists() else ""
    return [ln for ln in t.splitlines() if ln.strip()]


def _perr(name, make, needle, extra=()):
    def f():
        out = L.TMP / ("o_" + name)
        return classify_error(paired(make(), out, *extra), needle, dirs=[out])
    L.CASES[name] = ("infer", f)


def _pok(name, make, check=None, extra=(), what=""):
    def f():
        out = L.TMP / ("o_" + name)
        r = paired(make(), out, *extra)
        v = classify_ok(r, (lambda: check(out)) if check else
                        (lambda: None if (out / "result.txt").exists() else "no result.txt"), dirs=[out])
        return (v[0], what + v[1]) if v[0] == "good" else v
    L.CASES[name] = ("infer", f)


def _edit(d, fn):
    fn(d)
    return d


_perr("paired_name_mismatch", lambda: pairs("name_mismatch", names={"low": ["1.png", "2.png"], "high": ["1.png", "9.png"]}),
      "2.png")
_perr("paired_size_mismatch", lambda: _edit(pairs("size_mismatch"), lambda d: __import__("helpers").write_rgb(
    d / "high" / "2.png", 32, 44, seed=1)), "2.png")
_perr("paired_extra", lambda: _edit(pairs("extra"), lambda d: shutil.copy(d / "low" / "1.png", d / "low" / "extra.png")),
      "extra.png")
_perr("paired_extra_high", lambda: _edit(pairs("extra_high"), lambda d: shutil.copy(d / "high" / "1.png",
                                                                                      d / "high" / "extra.png")), "extra.png")
_perr("paired_bad_file", lambda: _edit(pairs("bad_file"), lambda d: (d / "low" / "2.png").write_text("x")), "2.png")
_perr("paired_empty_high", lambda: pairs("empty_high", names={"high": []}), "partner")
_perr("paired_empty_both", lambda: pairs("empty_both", names={"low": [], "high": []}), "no images")
_perr("paired_forced_plain", photos, "no paired data", extra=("--mode", "paired"))
_perr("paired_low_High_falls_back", lambda: pairs("low_High", high="High"), "High")
_perr("paired_lolv2_bad", lambda: pairs("lolv2_bad", low="Low", high="Normal", names={
    "Low": ["low00001.png", "low00002.png", "low00003.png"], "Normal": ["normal00001.png", "normal00007.png",
                                                                      "normal00008.png"]}), "low00002.png")
_pok("paired_case", lambda: _edit(pairs("case"), lambda d: (d / "high" / "2.png").rename(d / "high" / "2.PNG")))
_pok("paired_lolv2", lambda: pairs("lolv2", low="Low", high="Normal", names={
    "Low": ["low00001.png", "low00002.png"], "Normal": ["normal00001.png", "normal00002.png"]}))
_pok("paired_ext_mismatch", lambda: _edit(pairs("ext_mismatch"), lambda d: __import__("PIL.Image").Image.open(
    d / "high" / "2.png").save(d / "high" / "2.jpg") or (d / "high" / "2.png").unlink()))
_pok("paired_gray_vs_rgb", lambda: _edit(pairs("gray_rgb"), lambda d: __import__("PIL.Image").Image.open(
    d / "low" / "1.png").convert("L").save(d / "low" / "1.png")))
_pok("grid_100", lambda: pairs("grid"), lambda out: None if list(out.rglob("*comparison*.png")) else "no comparison grid",
     extra=("--grid", "100"))


def _symloop(d):
    (d / "low" / "loopA.png").symlink_to(d / "low" / "loopB.png")
    (d / "low" / "loopB.png").symlink_to(d / "low" / "loopA.png")


_pok("paired_symloop", lambda: _edit(pairs("symloop"), _symloop))


@case("infer", "folder_forced_on_paired")
def _():
    out = L.TMP / "o_forced_folder"
    r = enh(pairs("forced_folder"), out, "--mode", "folder")
    return classify_ok(r, lambda: None if len(files(out)) == 6 else f"{len(files(out))} of 6 images")


def _same_scores(name, alter):
    def f():
        from PIL import Image
        a = pairs(f"{name}_ref", n=2)
        b = L.TMP / "pairs" / name
        shutil.copytree(a, b)
        alter(b, Image)
        oa, ob = L.TMP / f"o_{name}_ref", L.TMP / f"o_{name}"
        ra, rb = paired(a, oa), paired(b, ob)
        v = classify_ok(rb)
        if v[0] != "good" or ra.rc:
            return v
        sa, sb = [ln for ln in score(oa) if "ori" in ln], [ln for ln in score(ob) if "ori" in ln]
        return ("good", f"scores identical to the plain pair: {short(sb[0] if sb else '', 80)}") if sa == sb else \
            ("bad", f"scores differ: {short(str(sa), 70)} vs {short(str(sb), 70)}")
    L.CASES[name] = ("infer", f)


def _to16(d, Image):
    import cv2
    a = np.asarray(Image.open(d / "low" / "1.png"))[..., ::-1].astype(np.uint16) * 257
    cv2.imwrite(str(d / "low" / "1.png"), a)


def _exif_rot(d, Image):
    im = Image.open(d / "high" / "1.png")
    ex = Image.Exif()
    ex[0x0112] = 6                      # stored rotated; the EXIF tag turns it back upright
    im.transpose(Image.Transpose.ROTATE_90).save(d / "high" / "1.png", exif=ex)


_same_scores("paired_bit16_low", _to16)
_same_scores("paired_exif_rot_gt", _exif_rot)


@case("infer", "paired_tile_ignored")
def _():
    out = L.TMP / "o_ptile"
    r = paired(pairs("ptile"), out, "--tile", "64")
    if r.rc:
        return classify_error(r, "--tile", dirs=[out])
    said = any("--tile" in ln for ln in r.lines)
    return ("good", "exit 0; note: " + short([ln for ln in r.lines if "--tile" in ln][0])) if said else \
        ("partial", "exit 0; --tile silently ignored in paired mode")


@case("infer", "nan_ckpt_paired_scores")
def _():
    import torch
    sd = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    k = next(iter(sd))
    sd[k] = torch.full_like(sd[k], float("nan"))
    p = L.TMP / "ck" / "nan.pth"
    p.parent.mkdir(exist_ok=True)
    torch.save(sd, p)
    out = L.TMP / "o_nanpair"
    return classify_error(lle("--input_dir", pairs("nanp"), "--result_dir", out, "--weights", p, "--device", "cpu",
                              "--no_lpips"), "NaN", dirs=[out])


# --- memory checkpoints in paired mode
def _mem(name, path_fn, needle, extra=()):
    def f():
        out = L.TMP / ("o_" + name)
        r = paired(L.lol()[1], out, "--mem_weights", path_fn(), "--mem_size", "8", *extra)
        return classify_error(r, needle() if callable(needle) else needle, dirs=[out])
    L.CASES[name] = ("infer", f)


_mem("mem_text", lambda: bad_ckpt("text_hello"), "text_hello.pth")
_mem("mem_evil", lambda: bad_ckpt("evil_torchsave"), "evil_torchsave.pth")
_mem("mem_enhancer_ckpt", lambda: enh_run() / "models" / "model_best.pth", "model_best.pth")
_mem("mem_missing", lambda: L.TMP / "nope.pth", "nope.pth")
_mem("mem_trunc", lambda: truncated_copy(mem_run() / "models" / "memory_best.pth", "mem_trunc.pth"), "mem_trunc.pth")


@case("infer", "mem_size_mismatch_ignored")
def _():
    out = L.TMP / "o_memsize"
    r = paired(L.lol()[1], out, "--mem_weights", mem_run() / "models" / "memory_best.pth", "--mem_size", "5")
    if r.rc:
        return classify_error(r, "--mem_size", dirs=[out])
    said = [ln for ln in r.lines if "--mem_size" in ln or "mem_size" in ln]
    return ("good", "exit 0; " + short(said[0])) if said else ("partial", "exit 0, --mem_size 5 vs 8 slots not mentioned")


# --- odd images and flags that are accepted
@case("infer", "float_tiff_01")
def _():
    from PIL import Image
    d = L.TMP / "f01"
    d.mkdir()
    Image.fromarray(np.random.default_rng(0).random((24, 32), np.float32) * 0.3, "F").save(d / "f.tif")
    out = L.TMP / "o_f01"
    return classify_ok(enh(d, out), lambda: None if files(out) else "no output")


@case("infer", "tiny_images_1x1_2x3_1x3000")
def _():
    from PIL import Image
    d = _in("tiny", **{"a.png": ("rgb", 1, 1), "b.png": ("rgb", 2, 3), "c.png": ("rgb", 1, 3000)})
    out = L.TMP / "o_tiny"
    r = enh(d, out)

    def sizes():
        got = {f: Image.open(out / f).size for f in files(out)}
        want = {"a.png": (1, 1), "b.png": (3, 2), "c.png": (3000, 1)}
        return None if got == want else f"sizes {got}"
    return classify_ok(r, sizes)


@case("infer", "output_path_too_long")
def _():
    out = L.TMP / "/".join(["d" * 200] * 19)
    r = enh(photos(), out)
    return classify_ok(r, lambda: None if len(files(out)) == 3 else "not 3 outputs")


@case("infer", "same_stem_different_ext_and_case")
def _():
    from PIL import Image
    d = _in("stems", **{"x.png": ("rgb", 24, 32), "X.png": ("rgb", 24, 32)})
    Image.open(d / "x.png").save(d / "x.jpg")
    out = L.TMP / "o_stems"
    r = enh(d, out)
    return classify_ok(r, lambda: None if len(files(out)) == 3 else f"outputs {files(out)}")


@case("infer", "video_file_as_image")
def _():
    import cv2
    d = _in("video", **{"good.png": ("rgb", 24, 32)})
    for fn in ("v.jpg", "v2.png"):
        w = cv2.VideoWriter(str(d / "tmp.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
        for _ in range(3):
            w.write(np.zeros((24, 32, 3), np.uint8))
        w.release()
        (d / "tmp.avi").rename(d / fn)
    out = L.TMP / "o_video"
    r = enh(d, out)
    v = classify_error(r, "v.jpg", dirs=[out])
    if v[0] == "good" and "v2.png" not in r.err:
        return "partial", "v2.png not named: " + v[1]
    return v


def _flag_ok(name, flags):
    def f():
        out = L.TMP / ("o_" + name)
        return classify_ok(enh(photos(), out, *flags), lambda: None if len(files(out)) == 3 else "not 3 outputs",
                           dirs=[out])
    L.CASES[name] = ("infer", f)


_flag_ok("memory_budget_1e-9", ["--memory_budget", "1e-9"])
_flag_ok("batch_size_huge", ["--batch_size", "100000"])
_flag_ok("workers_0", ["--workers", "0"])
_flag_ok("workers_huge", ["--workers", "100000"])
_flag_ok("tile_huge", ["--tile", "1000000"])


@case("infer", "decompression_bomb_20000x20000")
def _():
    from PIL import Image
    d = _in("bomb", **{"good.png": ("rgb", 24, 32)})
    Image.new("1", (20000, 20000)).save(d / "bomb.png")
    out = L.TMP / "o_bomb"
    v = classify_error(enh(d, out, limit=180), "bomb.png", dirs=[out])
    return v


# --- signals and kills
def many():
    def make():
        from helpers import write_rgb
        d = L.TMP / "many2"
        write_rgb(d / "m00.png", 384, 512, seed=0, scale=0.3)
        for i in range(1, 80):
            shutil.copy(d / "m00.png", d / f"m{i:02d}.png")
        return d
    return L.once("many2", make)


@case("infer", "kill9_during_inference_then_rerun")
def _():
    out = L.TMP / "o_kill9"
    r = enh(many(), out, "--workers", "0", "--batch_size", "1", sig_after=wait_for(
        lambda: len(list(out.glob("*.png"))) >= 2), sig=signal.SIGKILL, limit=120)
    left = leftovers(out)
    if r.rc == 0:
        return "partial", "finished before the kill: not a test of kill -9"
    r2 = enh(many(), out, limit=240)
    v = classify_ok(r2, lambda: None if len(files(out)) == 80 else f"{len(files(out))} of 80 after the rerun", dirs=[out])
    if left:
        return "bad", f"kill -9 left {left[:2]}"
    return (v[0], f"kill -9 (exit {r.rc}): no partial file; the rerun completed the 80 images") if v[0] == "good" else v


@case("infer", "sigint_during_inference")
def _():
    out = L.TMP / "o_sigint"
    r = enh(many(), out, "--workers", "0", "--batch_size", "1", sig_after=wait_for(
        lambda: len(list(out.glob("*.png"))) >= 2), sig=signal.SIGINT, limit=120)
    if "Traceback" in r.err or r.timed_out:
        return classify_error(r)
    if r.rc == 0:
        return "partial", "finished before the signal: not a test of SIGINT"
    if leftovers(out):
        return "bad", f"leftovers {leftovers(out)[:2]}"
    return ("good" if r.rc == 130 else "partial"), f"exit {r.rc}, no partial file: {short((r.lines or [''])[-1])}"


@case("infer", "disk_full_keeps_previous_results")
def _():
    mnt = tmpfs("full_keep", 200)
    if mnt is None:
        return "not re-run", "cannot mount a tmpfs"
    small = photos(3, 24, 32)
    out = mnt / "out"
    r1 = enh(small, out)
    if r1.rc:
        return classify_ok(r1)
    before = {f: (out / f).read_bytes() for f in files(out)}
    from helpers import write_rgb
    big = L.TMP / "full_big"
    for i in range(3):
        write_rgb(big / f"p{i}.png", 300, 400, seed=i)   # noisy: ~350 kB each, more than the disk holds
    r = enh(big, out)
    v = classify_error(r, "No space left", dirs=[mnt])
    kept = [f for f in before if (out / f).exists() and ((out / f).read_bytes() == before[f]
                                                          or (out / f).stat().st_size > 1000)]
    if len(kept) != len(before):
        return "bad", f"previous results lost: {len(kept)} of {len(before)} remain; " + v[1]
    return v


@case("infer", "torchrun_inference_2")
def _():
    d = photos(6, 24, 32)
    out = L.TMP / "o_tr_inf"
    r = torchrun(2, "lowlight_test.py", "--input_dir", d, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu",
                 limit=240)
    summaries = [ln for ln in (r.out + r.err).splitlines() if ln.startswith("enhanced ")]
    v = classify_ok(r, lambda: None if len(files(out)) == 6 else f"{len(files(out))} of 6 outputs", dirs=[out])
    if v[0] == "good" and len(summaries) != 1:
        return "partial", f"{len(summaries)} summary lines for 2 processes"
    return (v[0], f"2 processes share the folder: 6 outputs, one summary: {short(summaries[0], 90)}") if v[0] == "good" else v


@case("infer", "infer:mem_topk_huge")   # the file lists mem_topk_huge under infer and under train
def _():
    out = L.TMP / "o_topk"
    r = paired(L.lol()[1], out, "--mem_weights", mem_run() / "models" / "memory_best.pth", "--mem_size", "8",
               "--testing_top_k", "100000")
    return classify_error(r, "--testing_top_k", dirs=[out])


@case("infer", "big_100mp_warning")   # replaces probe_cases_base1's static note
def _():
    from PIL import Image
    d = L.TMP / "big100"
    d.mkdir()
    Image.new("RGB", (10000, 10000), (20, 30, 40)).save(d / "big100.png", compress_level=1)
    out = L.TMP / "o_big100"
    # the whole image takes ~7 min here: the warning (if any) comes at reading; stop the run after 60 s
    r = enh(d, out, "--workers", "0", sig_after=60, sig=signal.SIGTERM, limit=150)
    if "Traceback" in r.err or r.timed_out:
        return classify_error(r)
    warn = [ln for ln in r.lines if "Warning" in ln]
    if warn:
        return "partial", f"exit {r.rc}; {short(warn[0])}"
    if leftovers(out):
        return "bad", f"leftovers {leftovers(out)[:2]}"
    how = "finished" if r.rc == 0 else f"stopped by SIGTERM after 60 s (exit {r.rc})"
    return "good", f"10000x10000 PNG read without DecompressionBombWarning; {how}, no partial file"

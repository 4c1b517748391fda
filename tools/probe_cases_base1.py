"""The probe's first cases: the README path and lowlight_test.py (flags, checkpoints, names, pairs)."""
from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import tools.probe_lib as L
from tools.probe_lib import *  # noqa: F401,F403  (run, lle, train, classify_*, inputs, case)
from tools.probe_lib import CASES, case, short, _made  # noqa: F401

# --- user: the README path
for st in ("scl", "enhancer", "memory"):
    def _help(st=st):
        r = train("--stage", st, "--help")
        if r.rc or "--device" not in r.out:
            return "bad", f"exit {r.rc}: {short(r.err[-200:])}"
        return "good", f"--stage {st} --help: {len(r.out.splitlines())} lines, exit 0"
    CASES[f"help_{st}"] = ("user", _help)


@case("user", "scl_10it")
def _():
    out = L.TMP / "u_scl"
    r = train(*scl_args(out, "--total_itrs", "2", "--snapshot_iter", "1"))
    return classify_ok(r, lambda: None if (out / "latest.pth").exists() else "no latest.pth", dirs=[out])


@case("user", "scl_resume")
def _():
    out = L.TMP / "u_scl_r"
    train(*scl_args(out, "--total_itrs", "1"))
    r = train(*scl_args(out, "--total_itrs", "2", "--resume"))
    return classify_ok(r, lambda: None if "resum" in (r.out + r.err).lower() else "no word of resuming", dirs=[out])


@case("user", "enh_dce")
def _():
    save = L.TMP / "u_enh"
    r = train(*enh_args(save, "--nepoch", "1"))
    return classify_ok(r, lambda: None if list(save.rglob("model_latest.pth")) else "no model_latest.pth", dirs=[save])


@case("user", "precision_bf16")
def _():
    out = L.TMP / "o_bf16"
    r = lle("--input_dir", photos(), "--output_dir", out, "--weights", WEIGHTS, "--precision", "bf16", "--device", "cpu")
    return classify_ok(r, lambda: None if len(list(out.glob("*.png"))) == 3 else "not 3 outputs", dirs=[out])


def emnet_ckpt():
    def make():
        save = L.TMP / "u_emnet"
        r = train(*enh_args(save, "--nepoch", "1", "--embed_dim", "8"), "--arch", "emnet", limit=150)
        found = sorted(save.rglob("model_best.pth"))
        if r.rc or not found:
            raise RuntimeError(f"EMNet training for the case failed: exit {r.rc}")
        return found[0]
    return once("emnet", make)


@case("user", "emnet_tile_refused")
def _():
    r = lle("--input_dir", photos(), "--output_dir", L.TMP / "o_emtile", "--weights", emnet_ckpt(), "--arch", "emnet",
            "--embed_dim", "8", "--tile", "512", "--device", "cpu")
    return classify_error(r, "--tile")


@case("user", "emnet_odd_sizes")
def _():
    out = L.TMP / "o_emodd"
    p = photos(3, 29, 37)
    r = lle("--input_dir", p, "--output_dir", out, "--weights", emnet_ckpt(), "--arch", "emnet", "--embed_dim", "8",
            "--device", "cpu")

    def sizes():
        from PIL import Image
        got = [Image.open(f).size for f in sorted(out.glob("*.png"))]
        return None if got == [(37, 29)] * 3 else f"outputs {got}, expected three 37x29"
    return classify_ok(r, sizes, dirs=[out])


# --- infer: flag errors (cheap)
def _lle_flag(name, flags, needle):
    def f():
        out = L.TMP / ("o_" + name)
        r = lle("--input_dir", photos(), "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu", *flags)
        v = classify_error(r, needle)
        if out.exists() and any(out.iterdir()):
            return "bad", f"refused but wrote into {out.name}: " + v[1]
        return v
    CASES[name] = ("infer", f)


for _n, _f, _s in [("device_gpu", ["--device", "gpu"], "gpu"), ("device_cuda", ["--device", "cuda"], "cuda"),
                   ("device_cpu0", ["--device", "cpu:0"], "cpu:0"), ("device_mps", ["--device", "mps"], "mps"),
                   ("tile_negative", ["--tile", "-5"], "--tile"), ("tile_7", ["--tile", "7"], "--tile"),
                   ("embed_dim_0", ["--embed_dim", "0"], "--embed_dim"),
                   ("memory_budget_nan", ["--memory_budget", "nan"], "--memory_budget"),
                   ("memory_budget_0", ["--memory_budget", "0"], "--memory_budget"),
                   ("batch_size_0", ["--batch_size", "0"], "--batch_size"),
                   ("workers_neg", ["--workers", "-1"], "--workers"),
                   ("precision_fp16_cpu", ["--precision", "fp16"], "fp16"),
                   ("mode_bogus", ["--mode", "bogus"], "bogus"),
                   ("mem_in_folder_mode_ignored", ["--mem_weights", "x.pth"], "--mem_weights")]:
    _lle_flag(_n, _f, _s)


@case("infer", "nonexistent_input")
def _():
    return classify_error(lle("--input_dir", L.TMP / "nope", "--output_dir", L.TMP / "o_ne", "--weights", WEIGHTS), "nope")


@case("infer", "empty_folder")
def _():
    (L.TMP / "empty").mkdir(exist_ok=True)
    return classify_error(lle("--input_dir", L.TMP / "empty", "--output_dir", L.TMP / "o_em", "--weights", WEIGHTS), "empty")


@case("infer", "out_eq_in")
def _():
    p = photos()
    return classify_error(lle("--input_dir", p, "--output_dir", p, "--weights", WEIGHTS), p.name)


@case("infer", "out_is_file")
def _():
    f = L.TMP / "afile"
    f.write_text("x")
    return classify_error(lle("--input_dir", photos(), "--output_dir", f, "--weights", WEIGHTS), "afile")


def _bad_ckpt(name, make, needle=None, extra=()):
    def f():
        ck = L.TMP / "ck"
        ck.mkdir(exist_ok=True)
        path = ck / f"{name}.pth"
        make(path)
        out = L.TMP / f"o_{name}"
        r = lle("--input_dir", photos(), "--output_dir", out, "--weights", path, "--device", "cpu", *extra)
        v = classify_error(r, needle or path.name)
        if (L.TMP / "PWNED").exists():
            return "bad", "the pickle's code ran (PWNED written); " + v[1]
        if v[0] == "good" and any("Warning" in ln for ln in r.lines):
            return "partial", "refused, but a warning precedes the error: " + short(" / ".join(r.lines), 200)
        return v
    CASES[name] = ("infer", f)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {L.TMP}/PWNED",))


def _sd():
    import torch
    return torch.load(WEIGHTS, map_location="cpu", weights_only=True)


def _save(obj, path):
    import torch
    torch.save(obj, path)


_bad_ckpt("ckpt_evil_pickle", lambda p: p.write_bytes(pickle.dumps(_Evil())))
_bad_ckpt("ckpt_pickle_emptydict", lambda p: p.write_bytes(pickle.dumps({})))
_bad_ckpt("ckpt_missingkey", lambda p: _save({k: v for i, (k, v) in enumerate(_sd().items()) if i}, p), "missing")
_bad_ckpt("ckpt_text_hello", lambda p: p.write_text("hello\n"))
_bad_ckpt("ckpt_empty", lambda p: p.write_bytes(b""))
_bad_ckpt("ckpt_trunc", lambda p: (_save(_sd(), p), p.write_bytes(p.read_bytes()[:3000])))
_bad_ckpt("ckpt_nan_weights", lambda p: _save({k: v.fill_(float("nan")) if i == 0 else v
                                               for i, (k, v) in enumerate(_sd().items())}, p))
_bad_ckpt("ckpt_lfs_pointer", lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:"
                                                      + "0" * 64 + "\nsize 1234\n"))


def _enhanced(out):
    return sorted(p.name for p in Path(out).rglob("*") if p.is_file())


@case("infer", "symlink_loops")
def _():
    d = L.TMP / "symloops"
    for i in range(2):
        from helpers import write_rgb
        write_rgb(d / f"a{i}.png", 24, 32, seed=i, scale=0.3)
    (d / "loop").symlink_to(d)
    (d / "self").symlink_to(d / "self")
    real = L.TMP / "realsub"
    for i in range(3):
        write_rgb(real / f"s{i}.png", 24, 32, seed=10 + i, scale=0.3)
    (d / "sub").symlink_to(real)
    out = L.TMP / "o_symloops"
    r = lle("--input_dir", d, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    got = _enhanced(out)
    if r.timed_out or "Traceback" in r.err:
        return classify_ok(r)
    if len(got) == 5:
        return "good", f"exit {r.rc}: 2 photos + 3 in the symlinked sub-folder enhanced; loops skipped"
    said = "sub" in r.err or "symlink" in r.err.lower()
    return "partial", (f"exit {r.rc}: {len(got)} of 5 outputs; symlinked sub-folder "
                       f"{'mentioned' if said else 'silently not enhanced'}")


@case("infer", "symlinked_subfolder_in_input")
def _():
    from helpers import write_rgb
    d = L.TMP / "onlylink"
    d.mkdir()
    real = L.TMP / "realsub2"
    for i in range(3):
        write_rgb(real / f"s{i}.png", 24, 32, seed=20 + i, scale=0.3)
    (d / "night").symlink_to(real)
    out = L.TMP / "o_onlylink"
    r = lle("--input_dir", d, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    got = _enhanced(out)
    if r.rc == 0 and len(got) == 3:
        return "good", "the symlinked folder's 3 photos enhanced, exit 0"
    if "Traceback" in r.err:
        return classify_error(r)
    said = "symlink" in r.err.lower() or "link" in r.err.lower()
    return "partial", f"exit {r.rc}, {len(got)} outputs: {short((r.lines or [''])[-1])}" + (
        "" if said else " (symlinked folders not mentioned)")


@case("infer", "sigterm_during_inference")
def _():
    from helpers import write_rgb
    d = L.TMP / "many"
    write_rgb(d / "m00.png", 384, 512, seed=0, scale=0.3)
    for i in range(1, 80):
        shutil.copy(d / "m00.png", d / f"m{i:02d}.png")
    out = L.TMP / "o_many"
    r = lle("--input_dir", d, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu", "--workers", "0",
            sig_after=lambda: len(list(out.glob("*.png"))) >= 2, sig=signal.SIGTERM, limit=90)
    left = leftovers(out)
    if "Traceback" in r.err or r.timed_out:
        return classify_error(r)
    n = len(_enhanced(out))
    if r.rc == 0:
        return "good?", f"finished before the signal (exit 0, {n} outputs): not a test of SIGTERM"
    msg = short((r.lines or [''])[-1])
    if left:
        return "bad", f"exit {r.rc}, leftovers {left[:3]}"
    if r.rc == 143:
        return "good", f"exit 143, {n} complete outputs, no partial file: {msg}"
    return "partial", f"exit {r.rc} (training uses 143 for SIGTERM), {n} outputs, no partial file: {msg}"


def _tiff_case(name, arr, mode):
    def f():
        from PIL import Image
        d = L.TMP / name
        d.mkdir()
        Image.fromarray(arr, mode).save(d / "x.tif")
        out = L.TMP / f"o_{name}"
        r = lle("--input_dir", d, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu")
        if r.rc != 0 or "Traceback" in r.err:
            return classify_error(r, "x.tif")
        outs = list(out.rglob("*.*"))
        if not outs:
            return "bad", "exit 0 but no output"
        o = np.asarray(Image.open(outs[0]))
        white = o.min() >= 250
        noted = any(k in r.err.lower() for k in ("range", "clip", "x.tif"))
        if white and not noted:
            return "partial", "out-of-range values clipped: all-white output, exit 0, no note"
        return "good", f"exit 0; {'note: ' + short(r.lines[-1]) if noted else 'output not saturated'}"
    CASES[name] = ("infer", f)


_tiff_case("float_tiff_0_255_range", np.full((24, 32), 40.0, np.float32), "F")
_tiff_case("int32_tiff_over_16bit", np.full((24, 32), 100000, np.int32), "I")


@case("infer", "names_unicode_space_long_newline_dash_hidden")
def _():
    from helpers import write_rgb
    d = L.TMP / "names"
    names = ["a b.png", "ünï 夜.png", "-dash.png", "UPPER.PNG", "a.png.jpg", "x" * 251 + ".png"]
    for i, n in enumerate(names):
        write_rgb(d / n, 24, 32, seed=i, scale=0.3)
    out = L.TMP / "o_names"
    r = lle("--input_dir", d, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    got = _enhanced(out)
    if "Traceback" in r.err or r.timed_out:
        return classify_error(r)
    if r.rc == 0 and len(got) == len(names):
        return "good", f"all {len(names)} names (incl. a 255-byte one) enhanced"
    return "partial", f"exit {r.rc}, {len(got)}/{len(names)} outputs: {short((r.lines or [''])[-1])}"


@case("infer", "raw_dng_jfif_silently_ignored")
def _():
    from PIL import Image
    from helpers import write_rgb
    d = L.TMP / "jfif"
    write_rgb(d / "a.png", 24, 32, seed=1, scale=0.3)
    Image.open(d / "a.png").save(d / "b.jfif", "JPEG")
    (d / "c.dng").write_bytes(b"II*\x00" + bytes(100))
    out = L.TMP / "o_jfif"
    r = lle("--input_dir", d, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    got = _enhanced(out)
    if "Traceback" in r.err or r.rc:
        return classify_error(r)
    mentioned = [x for x in ("jfif", "dng") if x in r.err.lower() or x in r.out.lower()]
    if len(got) >= 2 or len(mentioned) == 2:
        return "good", f"{len(got)} outputs; note names {mentioned}"
    return "partial", f"exit 0, {len(got)} output(s); .jfif/.dng {'mentioned: ' + str(mentioned) if mentioned else 'ignored without a word'}"


def _pairs(name, h, w, n=2):
    from helpers import make_lol_v1
    return make_lol_v1(L.TMP / name, n=n, h=h, w=w)


@case("infer", "paired_tiny_pair")
def _():
    p = _pairs("pairs_tiny", 2, 3)
    out = L.TMP / "o_tiny_pair"
    r = lle("--input_dir", p, "--result_dir", out, "--weights", WEIGHTS, "--device", "cpu", "--no_lpips")
    if r.rc == 0:
        return classify_ok(r, lambda: None if (out / "result.txt").exists() else "no result.txt")
    return classify_error(r, "3x2")


@case("infer", "paired_odd_sizes_dce")
def _():
    from tools.random_backbone_weights import write_random_weights  # noqa: F401  (AlexNet for LPIPS)
    try:
        write_random_weights(L.TMP / "torch_home" / "hub" / "checkpoints", ["alexnet"])
    except TypeError:
        return "not re-run", "could not place random AlexNet weights (tools.random_backbone_weights' signature)"
    p = _pairs("pairs_odd", 29, 37)
    out = L.TMP / "o_odd"
    r = lle("--input_dir", p, "--result_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    return classify_ok(r, lambda: None if (out / "result.txt").exists() else "no result.txt")


@case("infer", "torchrun_nproc_0")
def _():
    r = torchrun(0, "lowlight_test.py", "--input_dir", photos(), "--output_dir", L.TMP / "o_tr0", "--weights", WEIGHTS)
    v = classify_error(r)
    if v[0] == "bad" and "AssertionError" in r.err and "torch/distributed" in r.err:
        return "partial", "torchrun's own AssertionError traceback before the project's code runs (launcher), exit " + str(r.rc)
    return v


@case("infer", "world_size_env_without_peers")
def _():
    r = lle("--input_dir", photos(), "--output_dir", L.TMP / "o_ws", "--weights", WEIGHTS, "--device", "cpu",
            env={"RANK": "0", "WORLD_SIZE": "2"}, limit=45)
    if r.rc == 0 and not r.timed_out:
        return "good", "ran alone (the stray variables ignored), exit 0"
    return classify_error(r, "WORLD_SIZE")


@case("infer", "big_100mp_warning")
def _():
    return "not re-run", ("a 10000x10000 image takes ~7 min on this CPU (over the probe's budget); statically, "
                          "utils/image_io.py:27 now filters PIL's DecompressionBombWarning")


@case("infer", "concurrent_runs_same_output")
def _():
    out = L.TMP / "o_conc"
    t0 = time.time()
    ps = [popen([PY, ROOT / "lowlight_test.py", "--input_dir", photos(), "--output_dir", out, "--weights", WEIGHTS,
                 "--device", "cpu"]) for _ in range(2)]
    rs = [finish(p, t0, LIMIT) for p in ps]
    if any("Traceback" in r.err or r.timed_out for r in rs):
        return "bad", "traceback or hang in one of the two runs"
    n = len(list(out.glob("*.png")))
    left = leftovers(out)
    if left or n != 3:
        return "bad", f"{n} outputs, leftovers {left[:3]}"
    return "good", f"exit {[r.rc for r in rs]}, 3 complete outputs, no leftovers"


@case("infer", "disk_full_inference")
def _():
    mnt = tmpfs("full_inf", 40)
    if mnt is None:
        return "not re-run", "no tmpfs (not root)"
    p = photos(3, 256, 320)
    r = lle("--input_dir", p, "--output_dir", mnt / "out", "--weights", WEIGHTS, "--device", "cpu")
    v = classify_error(r, "No space left", dirs=[mnt])
    return v



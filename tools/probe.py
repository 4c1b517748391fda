"""Re-run the new user's probe (../shared/probe-2026-12-07.txt) on tiny inputs and write a Markdown table.

    OMP_NUM_THREADS=1 python tools/probe.py --out docs/probe.md [--only NAME[,NAME...]] [--jobs 2]

Each case runs the real command line in a subprocess (its own process group, under a time limit) on inputs
built in a temporary folder, and is classified with the probe file's definitions:
good = one clear line naming the file/flag, nothing half-written, non-zero exit on failure;
partial = right outcome, unclear message or noise; bad = traceback, hang, silent wrong result, lost data
or exit 0 on failure. A case of the file that this script does not reconstruct is listed as ``not re-run``.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
PROBE = ROOT.parent / "shared" / "probe-2026-12-07.txt"
PY = sys.executable
WEIGHTS = ROOT / "checkpoints" / "LLE_model.pth"
NO_VGG = ["--w_seg", "0", "--w_segexp", "0", "--w_feat", "0", "--w_percep", "0"]
LIMIT = 120  # seconds for a case's command unless it says otherwise


# ------------------------------------------------------------------------------------------- running
class Res:
    def __init__(self, rc, out, err, secs, timed_out):
        self.rc, self.out, self.err, self.secs, self.timed_out = rc, out, err, secs, timed_out

    @property
    def lines(self):
        out = []
        for ln in self.err.split("\n"):
            ln = ln.split("\r")[-1].strip()
            if ln and not re.search(r"\d+%\|", ln):
                out.append(ln)
        return out


def env_of(extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TORCH_HOME=str(TMP / "torch_home"))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    env.update(extra or {})
    return env


def popen(cmd, cwd=None, env=None):
    return subprocess.Popen([str(c) for c in cmd], cwd=cwd or ROOT, env=env_of(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(p, t0, limit, sig_after=None, sig=signal.SIGTERM):
    """Wait for ``p``; send ``sig`` to its whole process group after ``sig_after`` s; kill the group at ``limit``."""
    timed_out = False
    if callable(sig_after):  # signal once the condition holds (e.g. the first output exists)
        while p.poll() is None and time.time() - t0 < limit and not sig_after():
            time.sleep(0.2)
        if p.poll() is None:
            os.killpg(p.pid, sig)
    elif sig_after is not None:
        try:
            p.wait(sig_after)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, sig)
    try:
        out, err = p.communicate(timeout=max(1, limit - (time.time() - t0)))
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    return Res(p.returncode, out, err, time.time() - t0, timed_out)


def run(cmd, limit=LIMIT, env=None, cwd=None, sig_after=None, sig=signal.SIGTERM):
    t0 = time.time()
    return finish(popen(cmd, cwd, env), t0, limit, sig_after, sig)


def lle(*a, **k):
    return run([PY, ROOT / "lowlight_test.py", *a], **k)


def train(*a, **k):
    return run([PY, ROOT / "train.py", *a], **k)


def torchrun(n, script, *a, **k):
    return run([PY, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port", str(29500 + n * 7),
                ROOT / script, *a], **k)


def short(s, n=150):
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def leftovers(*dirs):
    bad = []
    for d in dirs:
        d = Path(d)
        if d.exists():
            bad += [p.name for p in d.rglob("*") if p.is_file() and (".tmp" in p.name or p.name.startswith(".tmp"))]
    return bad


def classify_error(r: Res, needle: str | None = None, dirs=()):
    """A failure case: non-zero exit with one ``error:`` line (naming ``needle``) and nothing else."""
    if r.timed_out:
        return "bad", f"hang: killed after {r.secs:.0f} s; stderr: {short(r.err[-200:])}"
    if "Traceback (most recent call last)" in r.err:
        last = [ln for ln in r.err.splitlines() if ln.strip()][-1]
        return "bad", f"traceback, exit {r.rc}: {short(last)}"
    if r.rc == 0:
        return "bad", f"exit 0 on a failure; stderr: {short(r.err[-200:]) or '(none)'}"
    left = leftovers(*dirs)
    if left:
        return "bad", f"exit {r.rc} but left {left[:3]}"
    errs = [ln for ln in r.lines if "error" in ln.lower()]
    msg = errs[-1] if errs else (r.lines[-1] if r.lines else "")
    if needle and needle.lower() not in r.err.lower():
        return "partial", f"exit {r.rc}, message does not name {needle!r}: {short(msg)}"
    clean = [ln for ln in r.lines if not re.match(r"\d\d:\d\d:\d\d ", ln)]  # the run's own log records
    if len(clean) > 1 and not all(ln.startswith(("usage:", "note:", "[", "--")) or "error:" in ln for ln in clean):
        return "partial", f"exit {r.rc}, {len(clean)} stderr lines besides the log; last: {short(msg)}; {short(clean[0], 80)}"
    return "good", f"exit {r.rc}: {short(msg)}"


def classify_ok(r: Res, check=None, dirs=()):
    """A case expected to succeed: exit 0, no traceback, no leftovers, ``check()`` -> None or a problem."""
    if r.timed_out:
        return "bad", f"hang: killed after {r.secs:.0f} s"
    if r.rc != 0 or "Traceback (most recent call last)" in r.err:
        return "bad", f"exit {r.rc}: {short((r.lines or [''])[-1])}"
    left = leftovers(*dirs)
    if left:
        return "bad", f"left {left[:3]}"
    problem = check() if check else None
    if problem:
        return problem if isinstance(problem, tuple) else ("bad", problem)
    return "good", f"exit 0 ({r.secs:.0f} s)"


# ------------------------------------------------------------------------------------------- inputs
TMP: Path = Path()
_made: dict = {}


def once(name, make):
    if name not in _made:
        _made[name] = make()
    return _made[name]


def photos(n=3, h=32, w=40):
    from helpers import write_rgb

    def make():
        d = TMP / f"in_photos_{n}_{h}x{w}"
        for i in range(n):
            write_rgb(d / f"p{i}.png", h, w, seed=i, scale=0.3)
        return d
    return once(f"photos{n}{h}{w}", make)


def city():
    from helpers import make_cityscapes, make_contrast

    def make():
        make_cityscapes(TMP / "cityscapes", n=4, labels=False)
        make_contrast(TMP / "Contrast")
        return TMP / "cityscapes"
    return once("city", make)


def lol():
    from helpers import make_lol_v1

    def make():
        make_lol_v1(TMP / "our485", n=6, h=40, w=48)
        make_lol_v1(TMP / "eval15", n=2, h=40, w=48, seed=50)
        return TMP / "our485", TMP / "eval15"
    return once("lol", make)


def scl_args(out, *extra):
    c = city()
    return ["--stage", "scl", "--data_root", c, "--contrast_dir", TMP / "Contrast", "--crop_size", "32",
            "--batch_size", "2", "--num_workers", "0", "--device", "cpu", "--snapshots_folder", out,
            "--log_every", "1", "--random_seed", "3", *NO_VGG, *extra]


def enh_args(save, *extra):
    tr, va = lol()
    return ["--stage", "enhancer", "--arch", "dce", "--train_dir", tr, "--val_dir", va, "--train_ps", "32",
            "--batch_size", "2", "--num_workers", "0", "--device", "cpu", "--lpips_lambda", "0", "--save_dir", save,
            "--env", "e", "--val_time", "1", "--warmup_epochs", "1", *extra]


def mem_args(save, *extra):
    tr, va = lol()
    return ["--stage", "memory", "--train_dir", tr, "--val_dir", va, "--train_ps", "32", "--batch_size", "2",
            "--num_workers", "0", "--device", "cpu", "--mem_size", "8", "--query", "enhancer",
            "--save_dir", save, "--env", "m", *extra]


def tmpfs(name, size_kb):
    """A tiny tmpfs (root only); None when it cannot be mounted."""
    d = TMP / name
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(d)], capture_output=True)
    if r.returncode:
        return None
    MOUNTS.append(d)
    return d


MOUNTS: list = []


# ------------------------------------------------------------------------------------------- cases
CASES: dict = {}


def case(area, name):
    def deco(f):
        CASES[name] = (area, f)
        return f
    return deco


def flag_case(area, name, argv_fn, needle):
    """A flag that must be refused with one line naming it."""
    def f():
        d = TMP / name
        r = (train if argv_fn()[0] == "--stage" else lle)(*argv_fn(), *([] if argv_fn()[0] != "--stage" else []))
        return classify_error(r, needle, dirs=[d])
    CASES[name] = (area, f)


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
    out = TMP / "u_scl"
    r = train(*scl_args(out, "--total_itrs", "2", "--snapshot_iter", "1"))
    return classify_ok(r, lambda: None if (out / "latest.pth").exists() else "no latest.pth", dirs=[out])


@case("user", "scl_resume")
def _():
    out = TMP / "u_scl_r"
    train(*scl_args(out, "--total_itrs", "1"))
    r = train(*scl_args(out, "--total_itrs", "2", "--resume"))
    return classify_ok(r, lambda: None if "resum" in (r.out + r.err).lower() else "no word of resuming", dirs=[out])


@case("user", "enh_dce")
def _():
    save = TMP / "u_enh"
    r = train(*enh_args(save, "--nepoch", "1"))
    return classify_ok(r, lambda: None if list(save.rglob("model_latest.pth")) else "no model_latest.pth", dirs=[save])


@case("user", "precision_bf16")
def _():
    out = TMP / "o_bf16"
    r = lle("--input_dir", photos(), "--output_dir", out, "--weights", WEIGHTS, "--precision", "bf16", "--device", "cpu")
    return classify_ok(r, lambda: None if len(list(out.glob("*.png"))) == 3 else "not 3 outputs", dirs=[out])


def emnet_ckpt():
    def make():
        save = TMP / "u_emnet"
        r = train(*enh_args(save, "--nepoch", "1", "--embed_dim", "8"), "--arch", "emnet", limit=150)
        found = sorted(save.rglob("model_best.pth"))
        if r.rc or not found:
            raise RuntimeError(f"EMNet training for the case failed: exit {r.rc}")
        return found[0]
    return once("emnet", make)


@case("user", "emnet_tile_refused")
def _():
    r = lle("--input_dir", photos(), "--output_dir", TMP / "o_emtile", "--weights", emnet_ckpt(), "--arch", "emnet",
            "--embed_dim", "8", "--tile", "512", "--device", "cpu")
    return classify_error(r, "--tile")


@case("user", "emnet_odd_sizes")
def _():
    out = TMP / "o_emodd"
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
        out = TMP / ("o_" + name)
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
    return classify_error(lle("--input_dir", TMP / "nope", "--output_dir", TMP / "o_ne", "--weights", WEIGHTS), "nope")


@case("infer", "empty_folder")
def _():
    (TMP / "empty").mkdir(exist_ok=True)
    return classify_error(lle("--input_dir", TMP / "empty", "--output_dir", TMP / "o_em", "--weights", WEIGHTS), "empty")


@case("infer", "out_eq_in")
def _():
    p = photos()
    return classify_error(lle("--input_dir", p, "--output_dir", p, "--weights", WEIGHTS), p.name)


@case("infer", "out_is_file")
def _():
    f = TMP / "afile"
    f.write_text("x")
    return classify_error(lle("--input_dir", photos(), "--output_dir", f, "--weights", WEIGHTS), "afile")


def _bad_ckpt(name, make, needle=None, extra=()):
    def f():
        ck = TMP / "ck"
        ck.mkdir(exist_ok=True)
        path = ck / f"{name}.pth"
        make(path)
        out = TMP / f"o_{name}"
        r = lle("--input_dir", photos(), "--output_dir", out, "--weights", path, "--device", "cpu", *extra)
        v = classify_error(r, needle or path.name)
        if (TMP / "PWNED").exists():
            return "bad", "the pickle's code ran (PWNED written); " + v[1]
        if v[0] == "good" and any("Warning" in ln for ln in r.lines):
            return "partial", "refused, but a warning precedes the error: " + short(" / ".join(r.lines), 200)
        return v
    CASES[name] = ("infer", f)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {TMP}/PWNED",))


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
    d = TMP / "symloops"
    for i in range(2):
        from helpers import write_rgb
        write_rgb(d / f"a{i}.png", 24, 32, seed=i, scale=0.3)
    (d / "loop").symlink_to(d)
    (d / "self").symlink_to(d / "self")
    real = TMP / "realsub"
    for i in range(3):
        write_rgb(real / f"s{i}.png", 24, 32, seed=10 + i, scale=0.3)
    (d / "sub").symlink_to(real)
    out = TMP / "o_symloops"
    r = lle("--input_dir", d, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    got = _enhanced(out)
    if r.timed_out or "Traceback" in r.err:
        return classify_ok(r)
    if len(got) == 5:
        return "good", f"exit {r.rc}: 2 photos + 3 in the symlinked sub-folder enhanced; loops skipped"
    said = "sub" in r.err or "symlink" in r.err.lower()
    return ("partial" if said else "partial"), (f"exit {r.rc}: {len(got)} of 5 outputs; symlinked sub-folder "
                                               f"{'mentioned' if said else 'silently not enhanced'}")


@case("infer", "symlinked_subfolder_in_input")
def _():
    from helpers import write_rgb
    d = TMP / "onlylink"
    d.mkdir()
    real = TMP / "realsub2"
    for i in range(3):
        write_rgb(real / f"s{i}.png", 24, 32, seed=20 + i, scale=0.3)
    (d / "night").symlink_to(real)
    out = TMP / "o_onlylink"
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
    d = TMP / "many"
    write_rgb(d / "m00.png", 384, 512, seed=0, scale=0.3)
    for i in range(1, 80):
        shutil.copy(d / "m00.png", d / f"m{i:02d}.png")
    out = TMP / "o_many"
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
        d = TMP / name
        d.mkdir()
        Image.fromarray(arr, mode).save(d / "x.tif")
        out = TMP / f"o_{name}"
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
    d = TMP / "names"
    names = ["a b.png", "ünï 夜.png", "-dash.png", "UPPER.PNG", "a.png.jpg", "x" * 251 + ".png"]
    for i, n in enumerate(names):
        write_rgb(d / n, 24, 32, seed=i, scale=0.3)
    out = TMP / "o_names"
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
    d = TMP / "jfif"
    write_rgb(d / "a.png", 24, 32, seed=1, scale=0.3)
    Image.open(d / "a.png").save(d / "b.jfif", "JPEG")
    (d / "c.dng").write_bytes(b"II*\x00" + bytes(100))
    out = TMP / "o_jfif"
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
    return make_lol_v1(TMP / name, n=n, h=h, w=w)


@case("infer", "paired_tiny_pair")
def _():
    p = _pairs("pairs_tiny", 2, 3)
    out = TMP / "o_tiny_pair"
    r = lle("--input_dir", p, "--result_dir", out, "--weights", WEIGHTS, "--device", "cpu", "--no_lpips")
    if r.rc == 0:
        return classify_ok(r, lambda: None if (out / "result.txt").exists() else "no result.txt")
    return classify_error(r, "3x2")


@case("infer", "paired_odd_sizes_dce")
def _():
    from tools.random_backbone_weights import write_random_weights  # noqa: F401  (AlexNet for LPIPS)
    try:
        write_random_weights(TMP / "torch_home" / "hub" / "checkpoints", ["alexnet"])
    except TypeError:
        return "not re-run", "could not place random AlexNet weights (tools.random_backbone_weights' signature)"
    p = _pairs("pairs_odd", 29, 37)
    out = TMP / "o_odd"
    r = lle("--input_dir", p, "--result_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    return classify_ok(r, lambda: None if (out / "result.txt").exists() else "no result.txt")


@case("infer", "torchrun_nproc_0")
def _():
    r = torchrun(0, "lowlight_test.py", "--input_dir", photos(), "--output_dir", TMP / "o_tr0", "--weights", WEIGHTS)
    v = classify_error(r)
    if v[0] == "bad" and "AssertionError" in r.err and "torch/distributed" in r.err:
        return "partial", "torchrun's own AssertionError traceback before the project's code runs (launcher), exit " + str(r.rc)
    return v


@case("infer", "world_size_env_without_peers")
def _():
    r = lle("--input_dir", photos(), "--output_dir", TMP / "o_ws", "--weights", WEIGHTS, "--device", "cpu",
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
    out = TMP / "o_conc"
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


# --- train
def _train_flag(name, stage, flags, needle):
    def f():
        d = TMP / ("t_" + name)
        short_run = ["--total_itrs", "2"] if stage == "scl" else ["--nepoch", "1"]  # a flag let through ends soon
        args = {"scl": scl_args, "enhancer": enh_args, "memory": mem_args}[stage](d, *short_run, *flags)
        r = train(*args, limit=90)
        v = classify_error(r, needle)
        if d.exists() and any(d.rglob("*")):
            return ("bad" if v[0] == "good" else v[0]), v[1] + f"; but created {d.name}/"
        return v
    CASES[name] = ("train", f)


for _n, _st, _f, _s in [
        ("scl_itrs0", "scl", ["--total_itrs", "0"], "--total_itrs"), ("scl_batch1_misleading", "scl", ["--batch_size", "1"], "--batch_size"),
        ("scl_crop0", "scl", ["--crop_size", "0"], "--crop_size"), ("scl_lr_neg", "scl", ["--lowlight_lr=-1e-4"], "--lowlight_lr"),
        ("scl_exp_level_nan", "scl", ["--exp_level", "nan", "--total_itrs", "1"], "--exp_level"),
        ("scl_exp_level_neg", "scl", ["--exp_level", "-3", "--total_itrs", "1"], "--exp_level"),
        ("scl_crop1024", "scl", ["--crop_size", "1024", "--total_itrs", "1"], "--crop_size"),
        ("scl_device_bogus", "scl", ["--device", "bogus"], "bogus"), ("scl_vis_port_0", "scl", ["--vis_port", "0"], "--vis_port"),
        ("scl_lr_min_above_lr", "scl", ["--lr_schedule", "cosine", "--lr_min", "1"], "--lr_min"),
        ("enh_nepoch0", "enhancer", ["--nepoch", "0"], "--nepoch"), ("enh_ps_neg", "enhancer", ["--train_ps", "-32"], "--train_ps"),
        ("enh_lr_inf", "enhancer", ["--lr_initial", "inf"], "--lr_initial"),
        ("mem_size0", "memory", ["--mem_size", "0"], "--mem_size"), ("mem_pool100", "memory", ["--pooling_size", "100"], "--pooling_size"),
        ("mem_topk0", "memory", ["--testing_top_k", "0"], "--testing_top_k"),
        ("argparse_typo", "scl", ["--snapshot_itr", "1"], "--snapshot_itr")]:
    _train_flag(_n, _st, _f, _s)


@case("train", "resume_total_itrs_below_done")
def _():
    out = TMP / "t_below"
    train(*scl_args(out, "--total_itrs", "3"))
    r = train(*scl_args(out, "--total_itrs", "1", "--resume"))
    text = r.out + r.err
    if r.rc == 0 and re.search(r"done at iteration 1\b", text):
        return "partial", "exit 0, logs 'done at iteration 1' after resuming at 3: the message is wrong"
    if r.rc != 0:
        return classify_error(r, "--total_itrs")
    return "good", f"exit 0: {short((r.lines or r.out.splitlines() or [''])[-1])}"


@case("train", "deeplab_ckpt_truncated")
def _():
    import torch
    ck = TMP / "ck_dl"
    ck.mkdir()
    p = ck / "deeplab_trunc.pth"
    torch.save({"model_state": {"w": torch.randn(200, 200)}}, p)
    p.write_bytes(p.read_bytes()[:100_000])
    out = TMP / "t_dltrunc"
    from helpers import make_cityscapes
    make_cityscapes(TMP / "city_lab", n=4)
    args = scl_args(out, "--total_itrs", "1")
    args[args.index("--data_root") + 1] = TMP / "city_lab"
    args += ["--w_seg", "0.1", "--ckpt", p]
    r = train(*args)
    v = classify_error(r, "deeplab_trunc.pth")
    if v[0] == "good" and "Errno 22" in r.err:
        return "partial", "refused in one line but the reason is '[Errno 22] Invalid argument'"
    return v


@case("train", "two_scl_runs_same_folder_at_once")
def _():
    out = TMP / "t_two"
    city()
    t0 = time.time()
    ps = [popen([PY, ROOT / "train.py", *scl_args(out, "--total_itrs", "2")]) for _ in range(2)]
    rs = [finish(p, t0, 180) for p in ps]
    codes = sorted(r.rc for r in rs)
    if any("Traceback" in r.err or r.timed_out for r in rs):
        return "bad", f"traceback or hang: exits {codes}"
    if codes[0] == 0 and codes[1] != 0:
        refused = [r for r in rs if r.rc][0]
        return "good", f"one trains, the other refused: {short((refused.lines or [''])[-1])}"
    return "bad", f"exits {codes}: both ran into one folder"


def _disk_full(name, kb, args_fn):
    def f():
        mnt = tmpfs(name, kb)
        if mnt is None:
            return "not re-run", "cannot mount a tmpfs (not root)"
        r = train(*args_fn(mnt / "run"), limit=180)
        return classify_error(r, "No space left", dirs=[mnt])
    CASES[name] = ("train", f)


_disk_full("disk_full", 300, lambda d: scl_args(d, "--total_itrs", "2", "--snapshot_iter", "1"))
_disk_full("enh_disk_full", 200, lambda d: enh_args(d, "--nepoch", "1"))
_disk_full("mem_disk_full", 60, lambda d: mem_args(d, "--nepoch", "1"))


@case("train", "torchrun_mem_world3_batch_gt_mem")
def _():
    r = torchrun(3, "train.py", *mem_args(TMP / "t_tr3", "--batch_size", "3", "--nepoch", "1"), limit=150)
    n = sum("--mem_size 8" in ln for ln in r.err.splitlines())
    if r.timed_out:
        return "bad", "hang"
    if r.rc == 0:
        return "bad", "exit 0"
    if n == 1 and "Traceback" not in r.err:
        return "good", "one line from rank 0: " + short([ln for ln in r.err.splitlines() if "--mem_size 8" in ln][0])
    extra = (" followed by torchrun's own ChildFailedError traceback/summary (launcher)"
             if ("Traceback" in r.err or "ChildFailedError" in r.err) else "")
    return "partial", f"the --mem_size line printed {n} time(s) for 3 ranks{extra}, exit {r.rc}"


@case("train", "torchrun_scl_nproc_0")
def _():
    r = torchrun(0, "train.py", *scl_args(TMP / "t_tr0", "--total_itrs", "1"))
    v = classify_error(r)
    if v[0] == "bad" and "AssertionError" in r.err and "torch/distributed" in r.err:
        return "partial", "torchrun's own AssertionError traceback before the project's code runs (launcher), exit " + str(r.rc)
    return v


@case("train", "world_size_env_without_peers_train")
def _():
    out = TMP / "t_ws"
    r = train(*scl_args(out, "--total_itrs", "1"), env={"RANK": "0", "WORLD_SIZE": "2"}, limit=60)
    if r.rc == 0 and not r.timed_out:
        return "good", "trained alone (stray variables ignored), exit 0"
    return classify_error(r, "WORLD_SIZE")


@case("train", "sigterm_no_checkpoint")
def _():
    out = TMP / "t_term"
    city()
    r = train(*scl_args(out, "--total_itrs", "100000"), sig_after=lambda: (out / "losses.jsonl").exists()
              or bool(list(out.rglob("*.jsonl"))), limit=120)
    if "Traceback" in r.err or r.timed_out:
        return classify_error(r)
    if r.rc == 143 and (out / "latest.pth").exists() and not leftovers(out):
        return "good", "exit 143, latest.pth written: " + short((r.lines or [''])[-1])
    return "bad", f"exit {r.rc}, latest.pth {'present' if (out / 'latest.pth').exists() else 'missing'}"


# --- more cheap cases (one-line refusals), grouped
for _n, _f, _s in [("device_empty", ["--device", ""], "--device"), ("device_meta", ["--device", "meta"], "meta"),
                   ("device_cuda3", ["--device", "cuda:3"], "cuda"), ("tile_1", ["--tile", "1"], "--tile"),
                   ("embed_dim_neg", ["--embed_dim", "-4"], "--embed_dim"),
                   ("memory_budget_-1", ["--memory_budget", "-1"], "--memory_budget"),
                   ("memory_budget_inf", ["--memory_budget", "inf"], "--memory_budget"),
                   ("tile_nan", ["--tile", "nan"], "--tile"), ("mem_topk0_garbage", ["--testing_top_k", "0"], "--testing_top_k"),
                   ("grid_neg", ["--grid", "-1"], "--grid")]:
    _lle_flag(_n, _f, _s)

_bad_ckpt("ckpt_json", lambda p: p.write_text('{"a": 1}'))
_bad_ckpt("ckpt_png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)))
_bad_ckpt("ckpt_html", lambda p: p.write_text("<!DOCTYPE html><html><body>Not found</body></html>"))
_bad_ckpt("ckpt_rand", lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)))
_bad_ckpt("ckpt_gzip", lambda p: p.write_bytes(__import__("gzip").compress(b"x" * 100)))
_bad_ckpt("ckpt_tensor", lambda p: _save(__import__("torch").zeros(3), p))
_bad_ckpt("ckpt_emptysd", lambda p: _save({}, p))
_bad_ckpt("ckpt_inf_weights", lambda p: _save({k: v.fill_(float("inf")) if i == 0 else v
                                               for i, (k, v) in enumerate(_sd().items())}, p))
_bad_ckpt("ckpt_extra_key", lambda p: _save({**_sd(), "extra.weight": __import__("torch").zeros(1)}, p), "extra")
_bad_ckpt("ckpt_evil_torchsave", lambda p: _save({"x": _Evil()}, p))
_bad_ckpt("ckpt_xyz", lambda p: p.write_text("xyz"))


@case("infer", "ckpt_is_dir")
def _():
    (TMP / "ckdir").mkdir()
    return classify_error(lle("--input_dir", photos(), "--output_dir", TMP / "o_ckdir", "--weights", TMP / "ckdir"), "ckdir")


@case("infer", "input_dev_null")
def _():
    return classify_error(lle("--input_dir", "/dev/null", "--output_dir", TMP / "o_dn", "--weights", WEIGHTS), "/dev/null")


@case("infer", "out_proc")
def _():
    return classify_error(lle("--input_dir", photos(), "--output_dir", "/proc/lle_out", "--weights", WEIGHTS), "/proc/lle_out")


@case("infer", "single_file")
def _():
    out = TMP / "o_single"
    r = lle("--input_dir", photos() / "p0.png", "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    return classify_ok(r, lambda: None if _enhanced(out) else "no output", dirs=[out])


@case("infer", "mixed_good_bad")
def _():
    from helpers import write_rgb
    d = TMP / "mixed"
    write_rgb(d / "good.png", 24, 32, seed=1, scale=0.3)
    raw = (d / "good.png").read_bytes()
    (d / "trunc.png").write_bytes(raw[: len(raw) // 2])
    (d / "zero.png").write_bytes(b"")
    (d / "text.png").write_text("hello")
    out = TMP / "o_mixed"
    r = lle("--input_dir", d, "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    v = classify_error(r, "trunc.png", dirs=[out])
    if v[0] == "good":
        got = _enhanced(out)
        if got != ["good.png"]:
            return "bad", f"outputs {got}"
        named = all(n in r.err for n in ("trunc.png", "zero.png", "text.png"))
        return ("good" if named else "partial"), f"good image written, bad files {'each named' if named else 'not all named'}, exit {r.rc}"
    return v


for _n, _st, _f, _s in [
        ("scl_itrs_neg", "scl", ["--total_itrs", "-5"], "--total_itrs"), ("scl_batch0", "scl", ["--batch_size", "0"], "--batch_size"),
        ("scl_batch_neg", "scl", ["--batch_size", "-2"], "--batch_size"), ("scl_crop_neg", "scl", ["--crop_size", "-64"], "--crop_size"),
        ("scl_crop1", "scl", ["--crop_size", "1"], "--crop_size"), ("scl_snapshot0", "scl", ["--snapshot_iter", "0"], "--snapshot_iter"),
        ("scl_logevery0", "scl", ["--log_every", "0"], "--log_every"), ("scl_workers_neg", "scl", ["--num_workers", "-1"], "--num_workers"),
        ("scl_device_cuda", "scl", ["--device", "cuda"], "cuda"), ("scl_lr_nan", "scl", ["--lowlight_lr", "nan"], "--lowlight_lr"),
        ("scl_w_con_nan", "scl", ["--w_con", "nan"], "--w_con"), ("scl_grad_clip_nan", "scl", ["--grad_clip_norm", "nan"], "--grad_clip_norm"),
        ("scl_cache_mb_nan", "scl", ["--cache_mb", "nan"], "--cache_mb"), ("scl_exp_patch_0", "scl", ["--exp_patch", "0"], "--exp_patch"),
        ("scl_num_classes_0", "scl", ["--num_classes", "0"], "--num_classes"),
        ("scl_weight_decay_inf", "scl", ["--lowlight_weight_decay", "inf"], "--lowlight_weight_decay"),
        ("resume_and_overwrite_together", "scl", ["--resume", "--overwrite"], "--overwrite"),
        ("scl_resume_missing", "scl", ["--resume", "/nonexistent/nope.pth"], "nope.pth"),
        ("argparse_unknown_stage", "scl", ["--stage", "foo"], "foo"),
        ("argparse_wrong_stage_flag", "scl", ["--nepoch", "3"], "--nepoch"),
        ("enh_nepoch_neg", "enhancer", ["--nepoch", "-1"], "--nepoch"), ("enh_batch0", "enhancer", ["--batch_size", "0"], "--batch_size"),
        ("enh_batch_neg", "enhancer", ["--batch_size", "-4"], "--batch_size"), ("enh_ps0", "enhancer", ["--train_ps", "0"], "--train_ps"),
        ("enh_lr0", "enhancer", ["--lr_initial", "0"], "--lr_initial"), ("enh_valtime0", "enhancer", ["--val_time", "0"], "--val_time"),
        ("enh_valtime_neg", "enhancer", ["--val_time", "-1"], "--val_time"), ("enh_embed0", "enhancer", ["--embed_dim", "0"], "--embed_dim"),
        ("enh_warmup_neg", "enhancer", ["--warmup_epochs", "-1"], "--warmup_epochs"),
        ("enh_lr_min_nan", "enhancer", ["--lr_min", "nan"], "--lr_min"),
        ("enh_ssim_lambda_nan", "enhancer", ["--ssim_lambda", "nan"], "--ssim_lambda"),
        ("enh_ps_1000_slow", "enhancer", ["--train_ps", "1000"], "--train_ps"),
        ("enh_root_nonexistent", "enhancer", ["--train_dir", "/nonexistent/nope"], "nope"),
        ("mem_size_neg", "memory", ["--mem_size", "-3"], "--mem_size"), ("mem_size1", "memory", ["--mem_size", "1"], "--mem_size"),
        ("mem_pool0", "memory", ["--pooling_size", "0"], "--pooling_size"),
        ("mem_topk_huge", "memory", ["--testing_top_k", "100000"], "--testing_top_k"),
        ("mem_batch0", "memory", ["--batch_size", "0"], "--batch_size"), ("mem_nepoch0", "memory", ["--nepoch", "0"], "--nepoch"),
        ("mem_thres_nan", "memory", ["--thres", "nan"], "--thres"), ("mem_age_noise_inf", "memory", ["--age_noise", "inf"], "--age_noise"),
        ("mem_top_k_0", "memory", ["--top_k", "0"], "--top_k"), ("mem_vfeat", "memory", ["--V_feat_dim", "5"], "--V_feat_dim")]:
    _train_flag(_n, _st, _f, _s)


@case("train", "snap_is_file")
def _():
    f = TMP / "snapfile"
    f.write_text("x")
    return classify_error(train(*scl_args(f, "--total_itrs", "1")), "snapfile")


@case("train", "scl_root_nonexistent")
def _():
    a = scl_args(TMP / "t_rootne", "--total_itrs", "1")
    a[a.index("--data_root") + 1] = TMP / "nope"
    return classify_error(train(*a), "nope")


@case("train", "scl_contrast_nonexistent")
def _():
    a = scl_args(TMP / "t_cne", "--total_itrs", "1")
    a[a.index("--contrast_dir") + 1] = TMP / "nope_c"
    return classify_error(train(*a), "nope_c")


# ------------------------------------------------------------------------------------------- report
def read_probe():
    rows = []
    for ln in PROBE.read_text().splitlines():
        if ln.startswith("#") or not ln.strip():
            continue
        parts = [p.strip() for p in ln.split(" | ", 3)]
        rows.append(parts + [""] * (4 - len(parts)))
    return rows


def run_case(name):
    area, f = CASES[name]
    t0 = time.time()
    try:
        v, obs = f()
    except Exception as e:  # the probe's own fault: never a verdict of the project
        v, obs = "not re-run", f"probe error: {type(e).__name__}: {short(str(e), 120)}"
    return name, v, obs, time.time() - t0


def cell(s):
    return s.replace("|", "\\|").replace("\n", " ")


def main(argv=None):
    global TMP
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "probe.md"))
    ap.add_argument("--only", default="", help="comma-separated case names (re-run a subset; prints, writes nothing)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--merge", action="store_true", help="with --only: update those rows of the existing --out table")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(f"{CASES[n][0]} | {n}" for n in CASES))
        return 0
    names = [n for n in a.only.split(",") if n] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"--only: unknown case(s) {', '.join(unknown)} (see --list)")
    TMP = Path(tempfile.mkdtemp(prefix="lle-probe-"))
    t0 = time.time()
    results = {}
    try:
        city(), lol(), photos()   # built once here, so that parallel cases do not race
        with cf.ThreadPoolExecutor(a.jobs) as ex:
            for name, v, obs, secs in ex.map(run_case, names):
                results[name] = (v, obs)
                print(f"{secs:6.1f}s  {CASES[name][0]:5s} {name}: {v}: {obs}", flush=True)
    finally:
        for m in MOUNTS:
            subprocess.run(["umount", str(m)], capture_output=True)
        shutil.rmtree(TMP, ignore_errors=True)
    wall = time.time() - t0
    print(f"wall time {wall:.0f} s")
    old_wall = None
    if a.only and not a.merge:
        return 0
    if a.merge and Path(a.out).exists():
        text = Path(a.out).read_text()
        m = re.search(r"wall time (\d+) s", text)
        old_wall = int(m.group(1)) if m else None
        for ln in text.splitlines():
            parts = [p.strip() for p in re.split(r"(?<!\\)\|", ln)[1:-1]]
            if len(parts) == 5 and parts[1] in CASES and parts[1] not in results and True:
                results[parts[1]] = (parts[3], parts[4].replace("\\|", "|"))
        if old_wall:
            wall += old_wall
    probe = read_probe()
    known = {r[1] for r in probe}
    lines = ["# Probe of 2026-12-07, re-run", "",
             f"`tools/probe.py` re-ran {len(results)} of the {len(probe)} cases of `../shared/probe-2026-12-07.txt` on tiny "
             f"inputs (CPU, `OMP_NUM_THREADS=1`, a shared 2-core machine), wall time {wall:.0f} s (summed over the --merge runs that produced this table). Verdicts as in the "
             "file's header; `not re-run` = not reconstructed (never counted as good).", ""]
    summary: dict = {}
    body = ["| area | case | verdict then | verdict now | observation |", "|---|---|---|---|---|"]
    for area, name, then, obs0 in probe:
        now, obs = results.get(name, ("not re-run", "not reconstructed by tools/probe.py in the time"))
        s = summary.setdefault(area, {"cases": 0, "good": 0, "partial": 0, "bad": 0, "not re-run": 0})
        s["cases"] += 1
        s[now if now in s else "not re-run"] += 1
        body.append(f"| {area} | {cell(name)} | {then} | {now} | {cell(obs)} |")
    extra = [n for n in results if n not in known]
    lines += ["| area | cases | good | partial | bad | not re-run |", "|---|---|---|---|---|---|"]
    tot = {k: 0 for k in ("cases", "good", "partial", "bad", "not re-run")}
    for area, s in summary.items():
        lines.append(f"| {area} | " + " | ".join(str(s[k]) for k in tot) + " |")
        for k in tot:
            tot[k] += s[k]
    lines += ["| all | " + " | ".join(str(tot[k]) for k in tot) + " |", ""] + body
    if extra:
        lines += ["", "Cases re-run that the file does not list: " + ", ".join(extra)]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

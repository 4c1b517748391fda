"""Shared pieces of tools/probe.py: running a command in its own process group, the judges, tiny inputs."""
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
            "--env", "e", "--val_time", "1", "--warmup_epochs", "0", *extra]


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




# ------------------------------------------------------------------------------------------- more helpers
def files(d):
    """The files under ``d`` (relative names, sorted)."""
    d = Path(d)
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


def peak_gb(r: Res):
    m = re.search(r"peak memory ([\d.]+) GB", r.out + r.err)
    return float(m.group(1)) if m else None


def empty_home():
    """A TORCH_HOME without any pretrained weights (the 'missing file' cases)."""
    d = TMP / "empty_home"
    d.mkdir(exist_ok=True)
    return {"TORCH_HOME": str(d)}


def backbones():
    """Random stand-ins of the ImageNet backbones in the probe's TORCH_HOME (tools/random_backbone_weights)."""
    def make():
        from tools.random_backbone_weights import write_random_weights
        write_random_weights(str(TMP / "torch_home" / "hub" / "checkpoints"))
        return True
    return once("backbones", make)


def ro_mount(name, fill=None):
    """A read-only tmpfs (filled first by ``fill(path)``); None when it cannot be mounted."""
    d = tmpfs(name, 4096)
    if d is None:
        return None
    if fill:
        fill(d)
    r = subprocess.run(["mount", "-o", "remount,ro", str(d)], capture_output=True)
    return None if r.returncode else d


def wait_for(pred):
    """A ``sig_after`` condition that tolerates missing files."""
    def f():
        try:
            return bool(pred())
        except OSError:
            return False
    return f


def records(path):
    """The step numbers of a losses.jsonl (readable lines only)."""
    import json
    steps = []
    if Path(path).exists():
        for ln in Path(path).read_text(errors="replace").splitlines():
            try:
                rec = json.loads(ln)
            except ValueError:
                continue
            if isinstance(rec, dict):
                steps.append(rec.get("step", rec.get("iteration", rec.get("it"))))
    return steps


def accepted(r: Res, what="", check=None, dirs=()):
    """A case the probe found accepted: exit 0 (``check`` may add a problem)."""
    v = classify_ok(r, check, dirs)
    return v if v[0] != "good" else ("good", f"{what}exit 0 ({r.secs:.0f} s)" if what else v[1])

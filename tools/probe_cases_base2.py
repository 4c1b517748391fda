"""The probe's first cases: train.py's stages, and more one-line refusals of both entry points."""
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

from tools.probe_cases_base1 import _lle_flag, _bad_ckpt, _save, _sd, _Evil, _enhanced  # noqa: F401

# --- train
def _train_flag(name, stage, flags, needle):
    def f():
        d = L.TMP / ("t_" + name)
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
    out = L.TMP / "t_below"
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
    ck = L.TMP / "ck_dl"
    ck.mkdir()
    p = ck / "deeplab_trunc.pth"
    torch.save({"model_state": {"w": torch.randn(200, 200)}}, p)
    p.write_bytes(p.read_bytes()[:100_000])
    out = L.TMP / "t_dltrunc"
    from helpers import make_cityscapes
    make_cityscapes(L.TMP / "city_lab", n=4)
    args = scl_args(out, "--total_itrs", "1")
    args[args.index("--data_root") + 1] = L.TMP / "city_lab"
    args += ["--w_seg", "0.1", "--ckpt", p]
    r = train(*args)
    v = classify_error(r, "deeplab_trunc.pth")
    if v[0] == "good" and "Errno 22" in r.err:
        return "partial", "refused in one line but the reason is '[Errno 22] Invalid argument'"
    return v


@case("train", "two_scl_runs_same_folder_at_once")
def _():
    out = L.TMP / "t_two"
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
    r = torchrun(3, "train.py", *mem_args(L.TMP / "t_tr3", "--batch_size", "3", "--nepoch", "1"), limit=150)
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
    r = torchrun(0, "train.py", *scl_args(L.TMP / "t_tr0", "--total_itrs", "1"))
    v = classify_error(r)
    if v[0] == "bad" and "AssertionError" in r.err and "torch/distributed" in r.err:
        return "partial", "torchrun's own AssertionError traceback before the project's code runs (launcher), exit " + str(r.rc)
    return v


@case("train", "world_size_env_without_peers_train")
def _():
    out = L.TMP / "t_ws"
    r = train(*scl_args(out, "--total_itrs", "1"), env={"RANK": "0", "WORLD_SIZE": "2"}, limit=60)
    if r.rc == 0 and not r.timed_out:
        return "good", "trained alone (stray variables ignored), exit 0"
    return classify_error(r, "WORLD_SIZE")


@case("train", "sigterm_no_checkpoint")
def _():
    out = L.TMP / "t_term"
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
    (L.TMP / "ckdir").mkdir()
    return classify_error(lle("--input_dir", photos(), "--output_dir", L.TMP / "o_ckdir", "--weights", L.TMP / "ckdir"), "ckdir")


@case("infer", "input_dev_null")
def _():
    return classify_error(lle("--input_dir", "/dev/null", "--output_dir", L.TMP / "o_dn", "--weights", WEIGHTS), "/dev/null")


@case("infer", "out_proc")
def _():
    return classify_error(lle("--input_dir", photos(), "--output_dir", "/proc/lle_out", "--weights", WEIGHTS), "/proc/lle_out")


@case("infer", "single_file")
def _():
    out = L.TMP / "o_single"
    r = lle("--input_dir", photos() / "p0.png", "--output_dir", out, "--weights", WEIGHTS, "--device", "cpu")
    return classify_ok(r, lambda: None if _enhanced(out) else "no output", dirs=[out])


@case("infer", "mixed_good_bad")
def _():
    from helpers import write_rgb
    d = L.TMP / "mixed"
    write_rgb(d / "good.png", 24, 32, seed=1, scale=0.3)
    raw = (d / "good.png").read_bytes()
    (d / "trunc.png").write_bytes(raw[: len(raw) // 2])
    (d / "zero.png").write_bytes(b"")
    (d / "text.png").write_text("hello")
    out = L.TMP / "o_mixed"
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
    f = L.TMP / "snapfile"
    f.write_text("x")
    return classify_error(train(*scl_args(f, "--total_itrs", "1")), "snapfile")


@case("train", "scl_root_nonexistent")
def _():
    a = scl_args(L.TMP / "t_rootne", "--total_itrs", "1")
    a[a.index("--data_root") + 1] = L.TMP / "nope"
    return classify_error(train(*a), "nope")


@case("train", "scl_contrast_nonexistent")
def _():
    a = scl_args(L.TMP / "t_cne", "--total_itrs", "1")
    a[a.index("--contrast_dir") + 1] = L.TMP / "nope_c"
    return classify_error(train(*a), "nope_c")


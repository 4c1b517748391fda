"""The probe's train.py cases, continued: kills and signals with --resume, changed settings at resume, NaN
losses, damaged loss logs, read-only places, flags that are accepted, and torchrun."""
from __future__ import annotations

import shutil
import signal
import stat

import tools.probe_lib as L
from tools.probe_build import enh_run, mem_run, scl_run
from tools.probe_cases_train import terr, tok
from tools.probe_lib import (case, classify_error, classify_ok, enh_args, files, leftovers, mem_args, records,
                             ro_mount, scl_args, short, torchrun, train, wait_for)

LONG = ["--total_itrs", "100000"]


def _recs(d):
    return records(d / "losses.jsonl")


def _stop(args, cond, sig, limit=150):
    return train(*args, sig_after=wait_for(cond), sig=sig, limit=limit)


def _grown(path, n=1):
    return lambda: len(records(path)) >= n


# --- kill -9 and resume
@case("train", "scl_kill9_x4")
def _():
    out = L.TMP / "t_k9x4"
    args = scl_args(out, "--total_itrs", "8", "--snapshot_iter", "1", "--resume")
    for i in range(4):
        n = len(_recs(out))
        r = _stop(args, _grown(out / "losses.jsonl", n + 1), signal.SIGKILL)
        if r.rc == 0:
            break
    r = train(*args, limit=180)
    steps = sorted(set(s for s in _recs(out)))
    v = classify_ok(r, lambda: None if steps and steps[-1] == 8 else f"last step {steps[-1:]}", dirs=[out])
    return (v[0], f"4 kill -9 then --resume: finished at step 8 ({len(steps)} distinct loss steps)") if v[0] == "good" else v


def _tmp_left(name, argv_fn, folder_fn):
    def f():
        out = L.TMP / ("t_" + name)
        r0 = train(*argv_fn(out, 1))
        if r0.rc:
            return classify_ok(r0)
        junk = folder_fn(out) / ".tmp-probe-killed.pth"
        junk.write_bytes(b"half a checkpoint")
        r = train(*argv_fn(out, 2), "--resume")
        v = classify_ok(r, lambda: None if not junk.exists() else "the leftover .tmp file is still there")
        return (v[0], "a leftover .tmp-*.pth is removed at the next start; resumed, exit 0") if v[0] == "good" else v
    L.CASES[name] = ("train", f)


_tmp_left("scl_kill9_during_write_tmp_left", lambda o, n: scl_args(o, "--total_itrs", str(n)), lambda o: o)
_tmp_left("mem_kill9_during_write_tmp_left", lambda o, n: mem_args(o, "--nepoch", str(n)), lambda o: o / "m" / "models")


def _kill_resume(name, argv_fn, jsonl_fn, sig, want_rc, latest_fn):
    def f():
        out = L.TMP / ("t_" + name)
        # kill -9 once a checkpoint exists (nothing to resume before it); SIGTERM as soon as it trains
        cond = _grown(jsonl_fn(out), 1) if sig != signal.SIGKILL else (lambda: latest_fn(out).exists())
        r = _stop(argv_fn(out, "100000"), cond, sig)
        if "Traceback" in r.err or r.timed_out:
            return classify_error(r)
        if want_rc and r.rc != want_rc:
            return ("bad" if r.rc == 0 else "partial"), f"exit {r.rc} after the signal (want {want_rc})"
        if not latest_fn(out).exists() or leftovers(out):
            return "bad", f"exit {r.rc}; latest checkpoint {'missing' if not latest_fn(out).exists() else 'ok'}, leftovers {leftovers(out)[:2]}"
        r2 = train(*argv_fn(out, "2"), "--resume", limit=180)
        if r2.rc and "past the end" in r2.err:
            return "good", f"exit {r.rc}, resumable checkpoint; resume: {short(r2.lines[-1])}"
        v = classify_ok(r2, dirs=[out])
        msg = short(([ln for ln in r.lines if "stopped" in ln.lower() or "interrupt" in ln.lower()] or [f"exit {r.rc}"])[-1])
        return (v[0], f"signal: exit {r.rc} '{msg}'; --resume finished, exit 0") if v[0] == "good" else v
    L.CASES[name] = ("train", f)


_enh_long = (lambda o, n: enh_args(o, "--nepoch", n), lambda o: o / "e" / "losses.jsonl",
             lambda o: o / "e" / "models" / "model_latest.pth")
_mem_long = (lambda o, n: mem_args(o, "--nepoch", n), lambda o: o / "m" / "losses.jsonl",
             lambda o: o / "m" / "models" / "memory_latest.pth")
_kill_resume("enh_kill9", _enh_long[0], _enh_long[1], signal.SIGKILL, None, _enh_long[2])
_kill_resume("mem_kill9_then_resume", _mem_long[0], _mem_long[1], signal.SIGKILL, None, _mem_long[2])
_kill_resume("enh_sigterm_then_resume", _enh_long[0], _enh_long[1], signal.SIGTERM, 143, _enh_long[2])
_kill_resume("mem_sigterm_then_resume", _mem_long[0], _mem_long[1], signal.SIGTERM, 143, _mem_long[2])


def _scl_sig(name, sig, times=1):
    def f():
        out = L.TMP / ("t_" + name)
        p_args = scl_args(out, *LONG)
        t0 = __import__("time").time()
        p = L.popen([L.PY, L.ROOT / "train.py", *p_args])
        cond = wait_for(_grown(out / "losses.jsonl", 2))
        while p.poll() is None and not cond() and __import__("time").time() - t0 < 150:
            __import__("time").sleep(0.2)
        import os
        for _ in range(times):
            if p.poll() is None:
                os.killpg(p.pid, sig)
                __import__("time").sleep(0.05)
        r = L.finish(p, t0, 180)
        if "Traceback" in r.err or r.timed_out:
            return classify_error(r)
        # -2: the second SIGINT ended the process with the default handler (a shell shows 130 for both)
        ok = r.rc in (130, -2) and (out / "latest.pth").exists() and not leftovers(out)
        msg = short(([ln for ln in r.lines if "stopped" in ln or "interrupt" in ln.lower()] or [""])[-1])
        return ("good" if ok else "bad"), f"{times} SIGINT: exit {r.rc}{' (killed by SIGINT: 130 in a shell)' if r.rc == -2 else ''}, latest.pth {'written' if (out / 'latest.pth').exists() else 'missing'}: {msg}"
    L.CASES[name] = ("train", f)


_scl_sig("sigint_no_checkpoint", signal.SIGINT)
_scl_sig("scl_double_sigint_quits", signal.SIGINT, times=2)


@case("train", "scl_total_itrs_huge")
def _():
    out = L.TMP / "t_huge"
    r = _stop(scl_args(out, "--total_itrs", "99999999999999999999"), _grown(out / "losses.jsonl", 1), signal.SIGTERM)
    if r.rc == 143 and (out / "latest.pth").exists():
        return "good", "accepted; trains (stopped by SIGTERM after the first step: exit 143, latest.pth)"
    return classify_error(r, "--total_itrs") if r.rc not in (0, 143) else ("bad", f"exit {r.rc}")


# --- changed settings at resume
def _changed(name, argv_fn, first, second, needle, ok=False):
    def f():
        out = L.TMP / ("t_" + name)
        r0 = train(*argv_fn(out, *first))
        if r0.rc:
            return classify_ok(r0)
        r = train(*argv_fn(out, *second), "--resume")
        if ok:
            said = [ln for ln in (r.out + r.err).splitlines() if needle in ln]
            if (out / "train.log").exists():
                said += [ln for ln in (out / "train.log").read_text().splitlines() if needle in ln]
            for lg in out.rglob("train.log"):
                said += [ln for ln in lg.read_text().splitlines() if needle in ln]
            v = classify_ok(r, lambda: None if said else ("partial", f"accepted, '{needle}' not logged"))
            return (v[0], "accepted and logged: " + short(said[0], 100)) if v[0] == "good" else v
        return classify_error(r, needle, dirs=[out])
    L.CASES[name] = ("train", f)


_E = lambda o, *a: enh_args(o, "--nepoch", "1", *a)  # noqa: E731
_M = lambda o, *a: mem_args(o, "--nepoch", "1", *a)  # noqa: E731
_S = lambda o, *a: scl_args(o, *a)  # noqa: E731
_changed("resume_changed_arch", _E, ["--nepoch", "1"], ["--nepoch", "2", "--arch", "emnet", "--embed_dim", "8"], "--arch")
_changed("resume_changed_embed_dim", _E, ["--arch", "emnet", "--embed_dim", "8"],
         ["--arch", "emnet", "--embed_dim", "16", "--nepoch", "2"], "--embed_dim")
_changed("enh_resume_wrong_arch", _E, ["--arch", "dce"], ["--arch", "emnet", "--nepoch", "2"], "--arch")
_changed("mem_resume_changed_mem_size", _M, [], ["--mem_size", "16", "--nepoch", "2"], "--mem_size")
_changed("mem_resume_changed_pooling", _M, [], ["--pooling_size", "2", "--nepoch", "2"], "--pooling_size")
_changed("resume_changed_batch_crop", _S, ["--total_itrs", "1"], ["--total_itrs", "2", "--crop_size", "40"],
         "resumed with --crop_size", ok=True)
_changed("enh_resume_ignores_lr", _E, [], ["--nepoch", "2", "--lr_initial", "0.001"], "resumed with --lr_initial", ok=True)
_changed("scl_resume_ignores_lr", _S, ["--total_itrs", "1"], ["--total_itrs", "2", "--lowlight_lr", "5e-05"],
         "resumed with --lowlight_lr", ok=True)


# --- NaN losses
def _nan(name, argv_fn, dir_fn):
    def f():
        out = L.TMP / ("t_" + name)
        return classify_error(train(*argv_fn(out)), "NaN", dirs=[out])
    L.CASES[name] = ("train", f)


_nan("scl_lr1e6_nan", lambda o: scl_args(o, "--total_itrs", "6", "--lowlight_lr", "1e6", "--grad_clip_norm", "1e9"), None)
_nan("enh_lr1e6_nan", lambda o: enh_args(o, "--nepoch", "2", "--lr_initial", "1e6"), None)


@case("train", "scl_natural_nan_divergence")
def _():
    out = L.TMP / "t_lr10"
    r = train(*scl_args(out, "--total_itrs", "4", "--lowlight_lr", "10", "--grad_clip_norm", "1e9"))
    if r.rc == 0:
        return "good", "--lowlight_lr 10 without clipping stays finite here, exit 0"
    return classify_error(r, "NaN", dirs=[out])


# --- damaged losses.jsonl at resume
def _jsonl(name, junk):
    def f():
        out = L.TMP / ("t_" + name)
        r0 = train(*scl_args(out, "--total_itrs", "2"))
        if r0.rc:
            return classify_ok(r0)
        with open(out / "losses.jsonl", "ab") as fh:
            fh.write(junk)
        r = train(*scl_args(out, "--total_itrs", "3", "--resume"))
        steps = _recs(out)
        text = (out / "losses.jsonl").read_bytes()
        v = classify_ok(r, lambda: None if junk not in text and steps[-1] == 3 else
                        f"junk kept or steps wrong ({steps[-3:]})")
        return (v[0], f"damaged tail dropped at resume; steps {sorted(set(steps))}") if v[0] == "good" else v
    L.CASES[name] = ("train", f)


_jsonl("partial_jsonl_resume", b'{"step": 3, "prefix": "loss", "tv": 0.1')
_jsonl("garbage_jsonl_resume", __import__("numpy").random.default_rng(1).bytes(300))


# --- read-only places
def _ro(name, argv_fn, needle="Read-only"):
    def f():
        m = ro_mount(f"ro_{name}")
        if m is None:
            return "not re-run", "cannot mount a read-only tmpfs"
        return classify_error(train(*argv_fn(m / "run")), needle)
    L.CASES[name] = ("train", f)


_ro("snap_readonly_fs", lambda d: scl_args(d, "--total_itrs", "1"))
_ro("enh_savedir_readonly", lambda d: enh_args(d, "--nepoch", "1"))
_ro("mem_savedir_readonly", lambda d: mem_args(d, "--nepoch", "1"))


@case("train", "readonly_latest_replaced")
def _():
    out = L.TMP / "t_rolatest"
    r0 = train(*scl_args(out, "--total_itrs", "2"))
    if r0.rc:
        return classify_ok(r0)
    (out / "latest.pth").chmod(stat.S_IRUSR)
    r = train(*scl_args(out, "--total_itrs", "4", "--resume"))
    return classify_ok(r, lambda: None if _recs(out)[-1] == 4 else f"last step {_recs(out)[-1:]}", dirs=[out])


tok("unicode_snap", lambda o: scl_args(o.parent / "snap dïr 夜", "--total_itrs", "1"), "snapshot folder with a space, "
    "umlaut and CJK: ")


@case("train", "overwrite_keeps_foreign_files")
def _():
    out = L.TMP / "t_ow"
    shutil.copytree(scl_run(), out)
    (out / "notes.txt").write_text("mine")
    r = train(*scl_args(out, "--total_itrs", "1", "--overwrite"))
    ep = sorted(out.glob("Epoch*.pth"))
    v = classify_ok(r, lambda: None if (out / "notes.txt").exists() and not any("Epoch2" in p.name for p in ep)
                    else "notes.txt lost or old snapshots kept", dirs=[out])
    return (v[0], "--overwrite removed the stage's files and kept notes.txt") if v[0] == "good" else v


# --- flags that are refused or accepted
terr("enh_emnet_ps60", lambda o: enh_args(o, "--nepoch", "1", "--arch", "emnet", "--embed_dim", "8", "--train_ps", "36"),
     "--train_ps")
terr("enh_lambdas0", lambda o: enh_args(o, "--nepoch", "1", "--ssim_lambda", "0", "--lpips_lambda", "0",
                                        "--l1_lambda", "0", "--l2_lambda", "0"), "--ssim_lambda")
tok("enh_batch_huge", lambda o: enh_args(o, "--nepoch", "1", "--batch_size", "1000"), "--batch_size 1000 with 6 pairs: ")
tok("scl_seed_neg", lambda o: scl_args(o, "--total_itrs", "1", "--random_seed", "-1"), "--random_seed -1: ")
tok("scl_seed_huge", lambda o: scl_args(o, "--total_itrs", "1", "--random_seed", "99999999999999"), "huge seed: ")
tok("enh_val_time_huge", lambda o: enh_args(o, "--nepoch", "1", "--val_time", "1000"), "--val_time 1000: ")
tok("enh_seed_neg", lambda o: enh_args(o, "--nepoch", "1", "--random_seed", "-5"), "--random_seed -5: ")
tok("enh_log_every_huge", lambda o: enh_args(o, "--nepoch", "1", "--log_every", "1000000"), "--log_every 1000000: ",
    lambda o: None if records(o / "e" / "losses.jsonl") else "no loss recorded")
tok("mem_alpha_nan_unused", lambda o: mem_args(o, "--nepoch", "1", "--alpha", "nan"), "--alpha nan (unused): ")
tok("mem_cos_thres_nan_unused", lambda o: mem_args(o, "--nepoch", "1", "--cos_thres", "nan"), "--cos_thres nan (unused): ")
tok("mem_pooling_equal_ps", lambda o: mem_args(o, "--nepoch", "1", "--pooling_size", "32"), "--pooling_size 32 = --train_ps: ")


@case("train", "torchrun_enh_more_procs_than_data")
def _():
    out = L.TMP / "t_tr4"
    r = torchrun(4, "train.py", *enh_args(out, "--nepoch", "1"), limit=300)
    return classify_ok(r, lambda: None if (out / "e" / "models" / "model_latest.pth").exists() else "no model_latest.pth",
                       dirs=[out])


@case("train", "enh_warmup_gt_nepoch")
def _():
    out = L.TMP / "t_warm50"
    r = train(*enh_args(out, "--nepoch", "1", "--warmup_epochs", "50"))
    if r.rc == 0:
        return classify_ok(r, dirs=[out])
    v = classify_error(r, "--warmup_epochs", dirs=[out])   # accepted in the probe; refused in one line now
    return (v[0], "now refused before any work: " + v[1]) if v[0] == "good" else v

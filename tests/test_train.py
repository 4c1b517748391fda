"""train.py end to end, every stage: never lose work: refuse overwrites, stop on NaN, save on
SIGINT/SIGTERM, check every flag and every data file before anything is created."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import train
from helpers import ROOT, FullDisk, make_cityscapes, make_contrast, make_lol_v1
from stages.runlog import read_losses
from utils.errors import UserError

NO_VGG = ["--w_seg", "0", "--w_segexp", "0", "--w_feat", "0", "--w_percep", "0"]


def _scl(tmp_path, out, *extra):
    city = tmp_path / "cityscapes"
    if not city.exists():
        make_cityscapes(city, n=4, labels=False)
        make_contrast(tmp_path / "Contrast")
    return ["--stage", "scl", "--data_root", str(city), "--contrast_dir", str(tmp_path / "Contrast"),
            "--crop_size", "32", "--batch_size", "2", "--num_workers", "0", "--device", "cpu",
            "--snapshots_folder", str(out), "--log_every", "1", "--random_seed", "3", *NO_VGG, *extra]


def _lol(tmp_path):
    if not (tmp_path / "our485").exists():
        make_lol_v1(tmp_path / "our485", n=6, h=40, w=48)
        make_lol_v1(tmp_path / "eval15", n=2, h=40, w=48, seed=50)
    return tmp_path / "our485", tmp_path / "eval15"


def _enh(tmp_path, env, *extra):
    train_dir, val_dir = _lol(tmp_path)
    return ["--stage", "enhancer", "--arch", "dce", "--train_dir", str(train_dir), "--val_dir", str(val_dir),
            "--train_ps", "32", "--batch_size", "2", "--num_workers", "0", "--device", "cpu", "--lpips_lambda", "0",
            "--save_dir", str(tmp_path / "log"), "--env", env, "--val_time", "1", "--warmup_epochs", "0", *extra]


def _mem(tmp_path, *extra):
    train_dir, val_dir = _lol(tmp_path)
    return ["--stage", "memory", "--train_dir", str(train_dir), "--val_dir", str(val_dir), "--train_ps", "32",
            "--batch_size", "2", "--num_workers", "0", "--device", "cpu", "--mem_size", "8",
            "--save_dir", str(tmp_path / "log"), "--env", "m", *extra]


# ------------------------------------------------------------------------------ every flag up front
BAD_FLAGS = [  # the probe's cases: (stage, flags, what the one line must name)
    ("scl", ["--total_itrs", "0"], "--total_itrs 0"), ("scl", ["--total_itrs", "-5"], "--total_itrs -5"),
    ("scl", ["--batch_size", "0"], "--batch_size 0"), ("scl", ["--batch_size", "-2"], "--batch_size -2"),
    ("scl", ["--batch_size", "1"], "--batch_size 1: must be an integer >= 2"),
    ("scl", ["--crop_size", "0"], "--crop_size 0"), ("scl", ["--crop_size", "-64"], "--crop_size -64"),
    ("scl", ["--crop_size", "1"], "--crop_size 1"), ("scl", ["--snapshot_iter", "0"], "--snapshot_iter 0"),
    ("scl", ["--log_every", "0"], "--log_every 0"), ("scl", ["--num_workers", "-1"], "--num_workers -1"),
    ("scl", ["--save_every_min=-1"], "--save_every_min -1: must be >= 0"),
    ("enhancer", ["--save_every_min", "nan"], "--save_every_min nan: must be >= 0"),
    ("scl", ["--lowlight_lr=-1e-4"], "--lowlight_lr -0.0001"), ("scl", ["--w_con", "-1"], "--w_con -1"),
    ("scl", ["--amp", "fp16"], "--amp fp16 needs a CUDA device"),
    ("scl", ["--chroma_linear_share", "1.5"], "--chroma_linear_share 1.5: must be"),
    ("scl", ["--chroma_linear_share", "0.3"], "--chroma_linear_share 0.3 applies to --chroma_space linear"),
    ("scl", ["--chroma_linear_share=-0.5"], "--chroma_linear_share -0.5: must be"),
    ("scl", ["--chroma_linear_fade", "0.2", "0.6"], "--chroma_linear_fade applies to --chroma_space linear"),
    ("scl", ["--chroma_space", "linear", "--chroma_linear_fade", "0.6", "0.2"], "--chroma_linear_fade 0.6 0.2: need"),
    ("scl", ["--w_balance", "-1"], "--w_balance -1"),
    ("scl", ["--exp_level", "-3"], "--exp_level -3: must be >= 0 and <= 1"),
    ("scl", ["--exp_level", "nan"], "--exp_level nan: must be >= 0 and <= 1"),
    ("scl", ["--cache_mb", "inf"], "--cache_mb inf: must be >= 0"),
    ("scl", ["--crop_size", "64", "--total_itrs", "1"],
     "--crop_size 64: larger than the smallest training image side (48 pixels in "),
    ("enhancer", ["--nepoch", "0"], "--nepoch 0"), ("enhancer", ["--nepoch", "-1"], "--nepoch -1"),
    ("enhancer", ["--batch_size", "0"], "--batch_size 0"), ("enhancer", ["--batch_size", "-4"], "--batch_size -4"),
    ("enhancer", ["--train_ps", "-32"], "--train_ps -32"),
    ("enhancer", ["--train_ps", "1000"], "--train_ps 1000: larger than the smallest training image side (40"),
    ("enhancer", ["--lr_initial", "0"], "--lr_initial 0"), ("enhancer", ["--val_time", "0"], "--val_time 0"),
    ("enhancer", ["--val_time", "-1"], "--val_time -1"), ("enhancer", ["--embed_dim", "0"], "--embed_dim 0"),
    ("enhancer", ["--warmup_epochs", "-1"], "--warmup_epochs -1"),
    ("memory", ["--mem_size", "0"], "--mem_size 0"), ("memory", ["--mem_size", "-3"], "--mem_size -3"),
    ("memory", ["--mem_size", "1"], "--mem_size 1: smaller than one batch"),
    ("memory", ["--pooling_size", "0"], "--pooling_size 0"),
    ("memory", ["--pooling_size", "100"], "--pooling_size 100"),
    ("memory", ["--K_feat_dim", "256"], "--K_feat_dim 256"), ("memory", ["--testing_top_k", "0"], "--testing_top_k 0"),
    ("memory", ["--testing_top_k", "100000"], "--testing_top_k 100000"),
    ("memory", ["--batch_size", "0"], "--batch_size 0"), ("memory", ["--nepoch", "0"], "--nepoch 0"),
]


@pytest.mark.parametrize("stage,flags,message", BAD_FLAGS, ids=[" ".join(c[1]) + " " + c[0] for c in BAD_FLAGS])
def test_every_flag_is_checked_before_anything_is_created(tmp_path, stage, flags, message):
    out = tmp_path / "out"
    argv = {"scl": lambda: _scl(tmp_path, out), "enhancer": lambda: _enh(tmp_path, "e"),
            "memory": lambda: _mem(tmp_path)}[stage]()
    if stage != "scl":
        argv += ["--save_dir", str(out)]
    with pytest.raises(UserError) as e:
        train.main(argv + flags)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_corrupt_images_are_found_before_training_naming_the_file(tmp_path):
    argv = _scl(tmp_path, tmp_path / "out", "--total_itrs", "1")
    bad = sorted((tmp_path / "cityscapes").rglob("*.png"))[-1]
    good = bad.read_bytes()
    bad.write_bytes(good[:len(good) // 2])  # truncated: the header reads, the pixels do not
    with pytest.raises(UserError, match=f"{bad.name}: cannot read image"):
        train.main(argv)
    bad.write_bytes(good)
    neg = tmp_path / "Contrast" / "low" / "n1.png"
    neg.write_bytes(neg.read_bytes()[:200])
    with pytest.raises(UserError, match="n1.png: cannot read image"):
        train.main(argv)
    assert not (tmp_path / "out").exists()


def test_missing_labels_name_the_cli_flags(tmp_path, fake_torch_home):
    with pytest.raises(UserError, match="--w_seg 0 --w_segexp 0") as e:
        train.main(_scl(tmp_path, tmp_path / "out", "--w_seg", "1", "--w_segexp", "1"))
    assert "require_labels" not in str(e.value)


# --------------------------------------------------------------------- re-runs, resume, other stages
def test_rerun_without_resume_is_refused_and_the_best_model_kept(tmp_path):
    train.main(_enh(tmp_path, "e", "--nepoch", "1"))
    best = tmp_path / "log" / "e" / "models" / "model_best.pth"
    before = best.read_bytes()
    with pytest.raises(UserError, match="already holds a run.*--resume.*--overwrite"):
        train.main(_enh(tmp_path, "e", "--nepoch", "1", "--lr_initial", "1"))
    assert best.read_bytes() == before
    # resuming with a changed learning rate applies it, and args.json records it
    train.main(_enh(tmp_path, "e", "--nepoch", "2", "--lr_initial", "1e-3", "--no_warmup", "--resume"))
    latest = torch.load(best.parent / "model_latest.pth", weights_only=True)
    assert latest["epoch"] == 2 and latest["scheduler"]["base_lrs"] == [1e-3]
    assert latest["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-6)  # cosine end: --lr_min
    assert json.load(open(tmp_path / "log" / "e" / "args.json"))["lr_initial"] == 1e-3
    assert "resumed with --lr_initial 0.001 (was 0.0002)" in (tmp_path / "log" / "e" / "train.log").read_text()


def test_resume_with_another_stages_checkpoint_or_a_text_file_is_one_line(tmp_path):
    train.main(_scl(tmp_path, tmp_path / "s", "--total_itrs", "1"))
    scl_latest = str(tmp_path / "s" / "latest.pth")
    with pytest.raises(UserError, match="written by the scl stage; the enhancer stage resumes only its own"):
        train.main(_enh(tmp_path, "e", "--nepoch", "1", "--resume", scl_latest))
    with pytest.raises(UserError, match="written by the scl stage; the memory stage resumes only its own"):
        train.main(_mem(tmp_path, "--resume", scl_latest))
    text = tmp_path / "notes.pth"
    text.write_text("hello, this is not a checkpoint\n" * 3)
    for argv in (_scl(tmp_path, tmp_path / "s2", "--resume", str(text)),
                 _enh(tmp_path, "e2", "--resume", str(text)), _mem(tmp_path, "--resume", str(text)),
                 _enh(tmp_path, "e2", "--init_weights", str(text)),
                 _mem(tmp_path, "--pretrain_weights", str(text))):
        with pytest.raises(UserError, match="notes.pth"):
            train.main(argv)


def test_scl_lr_change_on_resume_is_applied(tmp_path):
    out = tmp_path / "s"
    train.main(_scl(tmp_path, out, "--total_itrs", "2"))
    train.main(_scl(tmp_path, out, "--total_itrs", "3", "--lowlight_lr", "5e-5", "--resume"))
    ck = torch.load(out / "latest.pth", weights_only=True)
    assert ck["iteration"] == 3 and ck["optimizer"]["param_groups"][0]["lr"] == 5e-5
    assert json.load(open(out / "args.json"))["lowlight_lr"] == 5e-5


def test_resume_past_the_end_of_the_run_is_one_line_and_touches_nothing(tmp_path):
    out = tmp_path / "s"
    train.main(_scl(tmp_path, out, "--total_itrs", "3"))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(UserError, match=rf"^--resume {out / 'latest.pth'} is at iteration 3, past the end of this "
                                        rf"run \(--total_itrs 2: iteration 2\): nothing to do; pass a larger "
                                        rf"--total_itrs$"):
        train.main(_scl(tmp_path, out, "--total_itrs", "2", "--resume"))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    train.main(_scl(tmp_path, out, "--total_itrs", "3", "--resume"))  # the end itself: done, as before


# ------------------------------------------------------------------------------------- NaN / Inf
@pytest.mark.slow
def test_diverging_run_stops_naming_iteration_and_term_keeping_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "s"
    argv = _scl(tmp_path, out, "--total_itrs", "20", "--snapshot_iter", "1", "--lowlight_lr", "1e6")
    r = subprocess.run([sys.executable, "train.py", *argv], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: iteration 2: loss terms tv, color, con are NaN/Inf") and "latest.pth" in line
    ck = torch.load(out / "latest.pth", weights_only=True)
    assert ck["iteration"] == 1 and all(torch.isfinite(v).all() for v in ck["state_dict"].values())
    assert sorted(p.name for p in out.glob("Epoch*.pth")) == ["Epoch1.pth"]

    with pytest.raises(UserError, match="iteration 2: loss term ssim is NaN/Inf"):
        train.main(_enh(tmp_path, "e", "--nepoch", "3", "--lr_initial", "1e6"))
    assert not (tmp_path / "log" / "e" / "models" / "model_best.pth").exists()


# ----------------------------------------------------------------------------------- SIGINT/SIGTERM
def _interrupt(argv, sig, losses, after, group=False, prefix="loss", launcher=("train.py",)):
    """Start train.py, send ``sig`` once ``losses`` has ``after`` records of ``prefix``; returns (status, stderr).

    ``group``: train.py leads a new session (as under ``setsid``, Slurm, ``timeout``) and ``sig`` goes to its
    whole process group, DataLoader workers included (``kill -TERM -- -PGID``)."""
    proc = subprocess.Popen([sys.executable, *launcher, *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=group,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if losses.exists() and len(read_losses(str(losses), prefix)) >= after:
            break
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


@pytest.mark.slow
def test_sigint_then_sigterm_save_resumable_checkpoints_and_resume_exactly(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "s"
    train.main(_scl(tmp_path, ref, "--total_itrs", "12", "--snapshot_iter", "100"))
    expect = {r["step"]: r["total"] for r in read_losses(str(ref / "losses.jsonl"))}
    argv = _scl(tmp_path, out, "--total_itrs", "100000", "--snapshot_iter", "100000")
    status, err = _interrupt(argv, signal.SIGINT, out / "losses.jsonl", 2)
    assert status == 130 and "Traceback" not in err
    k = torch.load(out / "latest.pth", weights_only=True)["iteration"]
    assert f"stopped: SIGINT: stopped after iteration {k}; resumable checkpoint" in err
    assert not list(out.glob("Epoch*.pth")) and not list(out.glob(".tmp-*"))
    status, err = _interrupt(argv + ["--resume"], signal.SIGTERM, out / "losses.jsonl", k + 1)
    assert status == 143 and "stopped: SIGTERM" in err
    k2 = torch.load(out / "latest.pth", weights_only=True)["iteration"]
    assert k2 > k
    with open(out / "losses.jsonl", "a") as f:
        f.write('{"step": 99999, "prefix": "loss", "tot')  # a record cut mid-write
    train.main(_scl(tmp_path, out, "--total_itrs", str(max(k2 + 2, 12)), "--snapshot_iter", "100", "--resume"))
    got = {r["step"]: r["total"] for r in read_losses(str(out / "losses.jsonl"))}
    assert sorted(got) == list(range(1, max(k2 + 2, 12) + 1))
    for step in range(1, 13):
        assert got[step] == pytest.approx(expect[step], rel=1e-6, abs=1e-7), step


@pytest.mark.slow
def test_enhancer_sigterm_mid_epoch_resumes_the_same_batches(tmp_path):
    train.main(_enh(tmp_path, "straight", "--nepoch", "4"))
    expect = read_losses(str(tmp_path / "log" / "straight" / "losses.jsonl"))
    argv = _enh(tmp_path, "cut", "--nepoch", "1000")
    status, err = _interrupt(argv, signal.SIGTERM, tmp_path / "log" / "cut" / "losses.jsonl", 2)
    assert status == 143, err[-500:]
    k = torch.load(tmp_path / "log" / "cut" / "models" / "model_latest.pth", weights_only=True)["iteration"]
    epochs = max(4, -(-(k + 1) // 3))
    train.main(_enh(tmp_path, "cut", "--nepoch", str(epochs), "--resume"))
    got = read_losses(str(tmp_path / "log" / "cut" / "losses.jsonl"))
    assert [r["step"] for r in got] == list(range(1, 3 * epochs + 1))
    for a, b in zip(got, expect):
        assert a["total"] == pytest.approx(b["total"], rel=1e-5), a["step"]


def _stopped_line(status, err, sig, code):
    """The run ended with ``code`` and one line ``stopped: SIG...: stopped after iteration K; resumable
    checkpoint ...``, no traceback, no worker killed; returns K."""
    assert status == code and "Traceback" not in err and "killed by signal" not in err, err[-800:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"stopped: {sig.name}: stopped after iteration ") and "resumable checkpoint" in line
    return int(line.split("iteration ")[1].split(";")[0])


WORKERS = ["--num_workers", "2"]


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_workers_saves_and_resumes_to_the_same_weights(tmp_path):
    out, ref = tmp_path / "s", tmp_path / "ref"
    argv = _scl(tmp_path, out, *WORKERS, "--snapshot_iter", "100000", "--total_itrs", "100000")
    k = _stopped_line(*_interrupt(argv, signal.SIGTERM, out / "losses.jsonl", 1, group=True), signal.SIGTERM, 143)
    assert torch.load(out / "latest.pth", weights_only=True)["iteration"] == k
    total = ["--total_itrs", str(k + 2), "--snapshot_iter", "100000"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the interrupted run (OMP_NUM_THREADS=1): CPU kernels' sums depend on the threads
    try:
        train.main(_scl(tmp_path, out, *WORKERS, *total, "--resume"))
        train.main(_scl(tmp_path, ref, *total))  # uninterrupted, no workers: the batches do not depend on them
    finally:
        torch.set_num_threads(threads)
    got, expect = (torch.load(d / "latest.pth", weights_only=True)["state_dict"] for d in (out, ref))
    assert got.keys() == expect.keys() and all(torch.equal(got[n], expect[n]) for n in got)


@pytest.mark.slow
def test_torchrun_ranks_save_when_the_launchers_group_gets_sigusr1(tmp_path):
    """torchrun starts each rank in a session of its own and dies of SIGUSR1 itself: the ranks get SIGTERM
    (the parent-death signal), save once and stop; none trains on, orphaned (stderr closes)."""
    out = tmp_path / "s"
    argv = _scl(tmp_path, out, *WORKERS, "--total_itrs", "100000", "--snapshot_iter", "100000")
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py")
    status, err = _interrupt(argv, signal.SIGUSR1, out / "losses.jsonl", 1, group=True, launcher=torchrun)
    assert status == -signal.SIGUSR1 and "killed by signal" not in err, err[-800:]
    stopped = [line for line in err.splitlines() if line.startswith("stopped: ")]
    assert len(stopped) == 1 and "resumable checkpoint" in stopped[0]
    k = int(stopped[0].split("iteration ")[1].split(";")[0])
    assert torch.load(out / "latest.pth", weights_only=True)["iteration"] == k


@pytest.mark.slow
@pytest.mark.parametrize("stage,sig,code", [("enhancer", signal.SIGUSR1, 138), ("memory", signal.SIGHUP, 129)],
                         ids=["enhancer-SIGUSR1", "memory-SIGHUP"])
def test_slurm_and_hangup_signals_to_the_group_save_a_resumable_checkpoint(tmp_path, fake_torch_home, stage, sig,
                                                                          code):
    from lowlight_model import enhance_net_nopool

    if stage == "enhancer":
        argv, latest = _enh(tmp_path, "e", *WORKERS, "--nepoch", "100000"), "e/models/model_latest.pth"
    else:
        torch.save(enhance_net_nopool().state_dict(), tmp_path / "dce.pth")
        argv = _mem(tmp_path, *WORKERS, "--nepoch", "100000", "--pretrain_weights", str(tmp_path / "dce.pth"))
        latest = "m/models/memory_latest.pth"
    run = (tmp_path / "log" / latest).parent.parent
    wait = ("loss", 1) if stage == "enhancer" else ("val", 1)  # the memory stage records its validations
    k = _stopped_line(*_interrupt(argv, sig, run / "losses.jsonl", wait[1], group=True, prefix=wait[0]), sig, code)
    ck = torch.load(tmp_path / "log" / latest, weights_only=True)
    assert ck["iteration"] == k and ck["stage"] == stage


def test_write_faults_are_one_line_naming_the_path(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="afile is a file, not a folder"):
        train.main(_scl(tmp_path, tmp_path / "afile", "--total_itrs", "1"))

    def full(obj, path):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr("stages.common.atomic_save", full)
    with pytest.raises(UserError, match=r"cannot write .*Epoch1.pth: no space left on device \(about 1 MB needed\)"):
        train.main(_scl(tmp_path, tmp_path / "s", "--total_itrs", "1"))
    assert not np.any([p.name.startswith(".tmp-") for p in (tmp_path / "s").iterdir()])


def _full_disk_line(path) -> str:
    return rf"cannot write {re.escape(str(path))}: no space left on device \(about \d+ MB needed\); free space or " \
           rf"choose another folder"


@pytest.mark.parametrize("stage", ["scl", pytest.param("enhancer", marks=pytest.mark.slow),
                                   pytest.param("memory", marks=pytest.mark.slow)])
def test_a_full_disk_in_each_stage_is_one_line_keeping_the_previous_checkpoint(tmp_path, fake_torch_home,
                                                                                monkeypatch, stage):
    from lowlight_model import enhance_net_nopool

    if stage == "scl":
        argv, latest = _scl(tmp_path, tmp_path / "s", "--total_itrs", "2", "--snapshot_iter", "1"), "s/latest.pth"
    elif stage == "enhancer":
        argv, latest = _enh(tmp_path, "e", "--nepoch", "2"), "log/e/models/model_latest.pth"
    else:
        torch.save(enhance_net_nopool().state_dict(), tmp_path / "dce.pth")
        argv = _mem(tmp_path, "--nepoch", "2", "--pretrain_weights", str(tmp_path / "dce.pth"))
        latest = "log/m/models/memory_latest.pth"
    latest = tmp_path / latest
    disk = FullDisk({latest.name}, after=1)  # the first latest fits, the disk is full at the second
    monkeypatch.setattr("utils.fs.open", disk, raising=False)  # through torch.save's real zip writer
    with pytest.raises(UserError) as e:
        train.main(argv)
    assert re.fullmatch(_full_disk_line(latest), str(e.value)), str(e.value)
    [(path, before)] = disk.failed
    assert path == str(latest) and latest.read_bytes() == before and torch.load(latest, weights_only=True)["epoch"] <= 1
    assert not list(latest.parent.glob(".tmp-*"))


@pytest.mark.slow
def test_a_real_full_file_system_is_one_line_and_status_2(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:  # 2 MB: one resumable checkpoint (1 MB) and two snapshots (0.3 MB) fit, not a second checkpoint beside them
        argv = _scl(tmp_path, disk / "s", "--total_itrs", "4", "--snapshot_iter", "1")
        r = subprocess.run([sys.executable, "train.py", *argv], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-800:]
        assert re.fullmatch("error: " + _full_disk_line(disk / "s" / "latest.pth"), r.stderr.strip().splitlines()[-1])
        assert torch.load(disk / "s" / "latest.pth", weights_only=True)["iteration"] in (1, 2, 3)
        assert not list((disk / "s").glob(".tmp-*"))
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_every_stage_has_the_same_run_flags():
    shared = ("--resume", "--overwrite", "--device", "--amp", "--channels_last", "--log_every", "--enable_vis",
              "--vis_port", "--vis_env")

    def run_flags(stage):
        actions = {s: a for a in train.build_parser(stage)._actions for s in a.option_strings}
        return {s: (actions[s].nargs, actions[s].const, actions[s].choices, actions[s].help) for s in shared}

    assert run_flags("scl") == run_flags("enhancer") == run_flags("memory")
    for stage in ("scl", "enhancer", "memory"):
        assert train.build_parser(stage).parse_args(["--stage", stage, "--resume"]).resume == "auto"


def _wait_for(path, proc, timeout=300):
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["scl", "enhancer", "memory"])
def test_each_stage_starts_fresh_with_resume_and_resumes_after_a_kill(tmp_path, fake_torch_home, stage):
    from lowlight_model import enhance_net_nopool

    torch.save(enhance_net_nopool().state_dict(), tmp_path / "dce.pth")
    if stage == "scl":
        out = tmp_path / "s"
        argv, latest = _scl(tmp_path, out, "--snapshot_iter", "2"), out / "latest.pth"
        long, short = ["--total_itrs", "100000"], ["--total_itrs"]
    else:
        argv = _enh(tmp_path, "e") if stage == "enhancer" else _mem(tmp_path, "--pretrain_weights",
                                                                        str(tmp_path / "dce.pth"))
        out = tmp_path / "log" / ("e" if stage == "enhancer" else "m")
        latest = out / "models" / ("model_latest.pth" if stage == "enhancer" else "memory_latest.pth")
        long, short = ["--nepoch", "100000"], ["--nepoch"]
    proc = subprocess.Popen([sys.executable, "train.py", *argv, *long, "--resume"], cwd=ROOT,  # fresh: no checkpoint
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(latest, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ck = torch.load(latest, weights_only=True)
    done = ck["iteration"] if stage == "scl" else ck["epoch"]
    train.main(argv + short + [str(done + 1), "--resume"])
    ck = torch.load(latest, weights_only=True)
    assert (ck["iteration"] if stage == "scl" else ck["epoch"]) == done + 1
    prefix = "val" if stage == "memory" else "loss"
    steps = [r["step"] for r in read_losses(str(out / "losses.jsonl"), prefix)]
    assert steps == sorted(set(steps)) and steps[-1] == (done + 1 if stage != "enhancer" else 3 * (done + 1))

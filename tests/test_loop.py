"""The one training loop (stages/loop.py) on a fake stage: when it trains, logs, validates, saves and stops."""
from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

from stages.common import Interrupted, NonFiniteError, Session
from stages.loop import Loop, Stage, validation_points
from stages.runlog import read_losses
from helpers import session_args as _args
from helpers import session_folder as _folder


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return torch.tensor([float(i)])


class _Fake(Stage):
    """Six items, batches of 2: three steps per epoch. Records every call the loop makes."""

    name = "scl"

    def __init__(self, args, folder, total, metrics=(), **attrs):
        super().__init__(args, folder)
        self.train_set, self.batch_size, self.total, self.metrics = _Items(), 2, total, iter(metrics)
        self.calls, self.kill_at, self.nan_at = [], None, None
        for k, v in attrs.items():
            setattr(self, k, v)

    def total_steps(self, per_epoch):
        return self.total

    def train_step(self, batch, it):
        self.calls.append(("step", it + 1))
        if it + 1 == self.kill_at:
            for sig in self.kill_with:  # arrive mid-step: the step completes first
                os.kill(os.getpid(), sig)
        if self.model is None:
            return None
        out = self.model(batch).mean()
        return {"a": out * float("nan") if it + 1 == self.nan_at else out.pow(2)}

    def validate(self, step):
        self.calls.append(("val", step))
        return {"psnr": next(self.metrics), "ssim": 0.5}

    def end_epoch(self, epoch):
        self.calls.append(("epoch", epoch))

    def state(self, step, epoch):
        return {"iteration": step, "epoch": epoch}

    def snapshots(self, step):
        return {f"Epoch{step}.pth": {"w": torch.zeros(1)}} if self.snapshot_every else {}


def _loop(tmp_path, start=0, log_every=10, save_every_min=0, **kw):
    args = _args(tmp_path, log_every=log_every, batch_size=2)
    stage = _Fake(args, _folder(tmp_path), **kw)
    session = Session(args, stage.folder).open(start)
    stage.session, saves = session, []
    real = session.save

    def save(name, state, step, resumable=True):
        saves.append((name, step, state.get("best_psnr"), resumable))
        return real(name, state, step, resumable)

    session.save = save
    loop = Loop(stage, session, per_epoch=3, log_every=log_every, save_every_min=save_every_min)
    return stage, loop, saves


def test_validates_at_its_points_keeps_the_best_and_saves_latest_at_epoch_ends(tmp_path):
    stage, loop, saves = _loop(tmp_path, total=6, metrics=[1.0, 3.0, 2.0, 5.0], best="best.pth", val_per_epoch=2)
    loop.run(0)
    vals = [c for c in stage.calls if c[0] != "step"]
    assert vals == [("val", 2), ("val", 3), ("epoch", 0), ("val", 5), ("val", 6), ("epoch", 1)]
    assert saves == [("best.pth", 2, 1.0, True), ("best.pth", 3, 3.0, True), ("latest.pth", 3, 3.0, True),
                     ("best.pth", 6, 5.0, True), ("latest.pth", 6, 5.0, True)]
    ck = torch.load(os.path.join(stage.folder.ckpt_dir, "best.pth"), weights_only=True)
    assert ck == {"iteration": 6, "epoch": 2, "best_psnr": 5.0}
    recs = read_losses(os.path.join(stage.folder.run_dir, "losses.jsonl"), prefix="val")
    assert [(r["step"], r["psnr"]) for r in recs] == [(2, 1.0), (3, 3.0), (5, 2.0), (6, 5.0)]
    loop.session.close()


def test_snapshots_every_n_steps_and_at_the_last_without_epoch_saves(tmp_path):
    stage, loop, saves = _loop(tmp_path, total=5, snapshot_every=2, save_each_epoch=False)
    loop.run(0)
    assert [(n, s, r) for n, s, _, r in saves] == [
        ("Epoch2.pth", 2, False), ("latest.pth", 2, True), ("Epoch4.pth", 4, False), ("latest.pth", 4, True),
        ("Epoch5.pth", 5, False), ("latest.pth", 5, True)]
    assert [c for c in stage.calls if c[0] == "epoch"] == [("epoch", 0)]
    loop.session.close()


def test_latest_is_also_saved_once_the_minutes_have_passed_since_the_last_save(tmp_path, monkeypatch):
    import stages.loop

    stage, loop, saves = _loop(tmp_path, total=10, snapshot_every=4, save_each_epoch=False, save_every_min=10)
    minutes = lambda: 4.0 * sum(c[0] == "step" for c in stage.calls)  # noqa: E731 (each step takes 4 minutes)
    monkeypatch.setattr(stages.loop, "monotonic", lambda: 60 * minutes())
    loop.run(0)
    # 12 min at step 3: latest alone (no snapshot file); the snapshot at 4 restarts the clock: 28 - 16 at step 7
    assert [(n, s, r) for n, s, _, r in saves] == [
        ("latest.pth", 3, True), ("Epoch4.pth", 4, False), ("latest.pth", 4, True), ("latest.pth", 7, True),
        ("Epoch8.pth", 8, False), ("latest.pth", 8, True), ("Epoch10.pth", 10, False), ("latest.pth", 10, True)]
    loop.session.close()


def test_no_saves_by_time_with_save_every_min_0(tmp_path, monkeypatch):
    import stages.loop

    stage, loop, saves = _loop(tmp_path, total=5, save_each_epoch=False, save_every_min=0)
    monkeypatch.setattr(stages.loop, "monotonic", lambda: 1e6 * len(stage.calls))
    loop.run(0)
    assert [(n, s) for n, s, *_ in saves] == [("latest.pth", 5)]
    loop.session.close()


def test_losses_recorded_every_n_steps_and_at_the_last(tmp_path):
    model = nn.Linear(1, 1)
    stage, loop, _ = _loop(tmp_path, total=5, log_every=2, model=model,
                           optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    loop.run(0)
    recs = read_losses(os.path.join(stage.folder.run_dir, "losses.jsonl"))
    assert [r["step"] for r in recs] == [2, 4, 5] and all(r["total"] == r["a"] for r in recs)
    loop.session.close()


def test_a_nonfinite_loss_stops_before_the_update_and_saves_nothing(tmp_path):
    model = nn.Linear(1, 1)
    stage, loop, saves = _loop(tmp_path, total=6, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                               nan_at=5)
    with pytest.raises(NonFiniteError, match=r"iteration 5: loss term a is NaN/Inf.*latest.pth \(iteration 3\) kept"):
        loop.run(0)
    assert [(n, s) for n, s, *_ in saves] == [("latest.pth", 3)]
    loop.session.close()


@pytest.mark.parametrize("sig,code,repeat", [
    (signal.SIGTERM, 143, ()), (signal.SIGINT, 130, ()), (signal.SIGHUP, 129, ()), (signal.SIGUSR1, 138, ()),
    (signal.SIGTERM, 143, (signal.SIGTERM,)),   # torchrun forwards the group's SIGTERM: sent twice
    (signal.SIGUSR1, 138, (signal.SIGTERM,)),   # Slurm: USR1 ahead of the time limit, then TERM
], ids=["TERM", "INT", "HUP", "USR1", "TERM-TERM", "USR1-TERM"])
def test_a_signal_saves_after_the_step_and_exits_with_the_conventional_status(tmp_path, sig, code, repeat):
    before = signal.getsignal(sig)  # SIG_IGN for SIGINT when the suite runs as a background job
    stage, loop, saves = _loop(tmp_path, start=1, total=100, save_each_epoch=False, kill_at=5,
                               kill_with=(sig, *repeat))
    with pytest.raises(Interrupted) as e:
        loop.run(1)
    assert [c[1] for c in stage.calls if c[0] == "step"] == [2, 3, 4, 5]
    assert [c for c in stage.calls if c[0] == "epoch"] == [("epoch", 0)]  # 3 batches per epoch: 0 ended
    assert [(n, s) for n, s, *_ in saves] == [("latest.pth", 5)]
    assert e.value.code == code and "stopped after iteration 5" in str(e.value) and "latest.pth" in str(e.value)
    loop.session.close()
    assert signal.getsignal(sig) == before  # the handler in place before the session is back


@pytest.mark.parametrize("per_epoch,val_time,points", [
    (173, 2, {86, 172}),          # 173 // 2 = 86: the reference never validates after batch 173
    (122, 2, {61, 122}),          # LOL-v1: 485 pairs, batch 4, last batch kept
    (122, 1, {122}),
    (7, 3, {2, 4, 6}),            # 7 // 3 = 2
    (10, 4, {2, 4, 6, 8, 10}),    # 10 // 4 = 2: five points for val_time 4, as the reference
    (3, 2, {2, 3}),               # step 1: batch 1 is skipped (the reference's i > 0)
    (2, 2, {2}),
    (3, 5, {2, 3}),               # fewer batches than val_time: the reference divides by zero; step 1 here
    (1, 1, {1}),                  # a one-batch epoch: never validated in the reference; here after its batch
    (1, 3, {1}),
])
def test_validation_points_follow_the_reference(per_epoch, val_time, points):
    assert validation_points(per_epoch, val_time) == points


def test_validation_points_equal_the_reference_expression_where_it_is_defined():
    for per_epoch in range(2, 60):
        for val_time in range(1, per_epoch + 1):
            eval_now = per_epoch // val_time
            ref = {i + 1 for i in range(per_epoch) if (i + 1) % eval_now == 0 and i > 0}
            assert validation_points(per_epoch, val_time) == ref, (per_epoch, val_time)


@pytest.mark.parametrize("per_epoch,val_time", [(0, 2), (5, 0), (-1, 1)])
def test_validation_points_refuse_bad_arguments(per_epoch, val_time):
    with pytest.raises(ValueError, match="per_epoch and val_time"):
        validation_points(per_epoch, val_time)

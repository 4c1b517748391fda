"""The stage toolkit (stages/common.py) unit by unit: flags, run folder, resume, guards, signals, LR factor."""
from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from helpers import session_args as _args
from helpers import session_folder as _folder
from helpers import FullDisk, toy_training
from stages.common import NonFiniteError, Session, check_flags, lr_factor
from stages.runlog import log
from stages.state import nonfinite_tensor, training_state
from utils.errors import UserError


def _opened(tmp_path, *argv, **extra) -> Session:
    return Session(_args(tmp_path, *argv, **extra), _folder(tmp_path)).open()


@pytest.mark.parametrize("flag,value,message", [
    ("batch_size", 0, "--batch_size 0: must be an integer >= 1"),
    ("crop_size", -64, "--crop_size -64: must be an integer >= 32"),
    ("lr", 0.0, "--lr 0: must be > 0"),
    ("lr", float("nan"), "--lr nan: must be > 0"),
    ("top_k", 50, "--top_k 50: must be <= 16"),
    ("log_every", 0, "--log_every 0: must be an integer >= 1"),
    ("num_workers", -1, "--num_workers -1: must be an integer >= 0"),
])
def test_check_flags_names_the_flag_and_the_range(tmp_path, flag, value, message):
    args = _args(tmp_path, batch_size=4, crop_size=64, top_k=4)
    setattr(args, flag, value)
    with pytest.raises(UserError) as e:
        check_flags(args, at_least={"batch_size": 1, "crop_size": 32}, positive=("lr",), at_most={"top_k": 16})
    assert str(e.value) == message
    setattr(args, flag, {"batch_size": 1, "crop_size": 32, "lr": 1e-9, "top_k": 16}.get(flag, 1))
    check_flags(args, at_least={"batch_size": 1, "crop_size": 32}, positive=("lr",), at_most={"top_k": 16})


def test_a_folder_holding_a_run_needs_resume_or_overwrite(tmp_path):
    folder = _folder(tmp_path)
    assert Session(_args(tmp_path), folder).resume is None          # nothing there: a fresh start
    assert Session(_args(tmp_path, "--resume"), folder).resume is None  # --resume with nothing yet: fresh too
    os.makedirs(folder.ckpt_dir)
    open(os.path.join(folder.run_dir, "train.log"), "w").close()     # a start that failed is not a run
    Session(_args(tmp_path), folder)
    torch.save({}, os.path.join(folder.ckpt_dir, "Epoch5.pth"))
    with pytest.raises(UserError, match=r"already holds a run \(models/Epoch5.pth.*--resume.*--overwrite"):
        Session(_args(tmp_path), folder)
    with pytest.raises(UserError, match="latest.pth not found but .*Epoch5.pth: pass --resume PATH, or --overwrite"):
        Session(_args(tmp_path, "--resume"), folder)
    torch.save({}, folder.latest_path)
    assert Session(_args(tmp_path, "--resume"), folder).resume == folder.latest_path
    assert Session(_args(tmp_path, "--resume", "auto"), folder).resume == folder.latest_path
    assert Session(_args(tmp_path, "--overwrite"), folder).resume is None
    with pytest.raises(UserError, match="--resume .*missing.pth: file not found"):
        Session(_args(tmp_path, "--resume", str(tmp_path / "missing.pth")), folder)
    with pytest.raises(UserError, match="contradict"):
        Session(_args(tmp_path, "--resume", "--overwrite"), folder)


def test_overwrite_deletes_only_what_the_stage_writes_and_stale_temporaries_go(tmp_path):
    folder = _folder(tmp_path)
    os.makedirs(folder.ckpt_dir)
    mine = ["losses.jsonl", "args.json", "models/latest.pth", "models/Epoch3.pth", "loss_curves.png"]
    for name in mine + ["notes.txt", "photo.png", "models/other.pth", "models/.tmp-abc123.pth"]:
        with open(os.path.join(folder.run_dir, name), "w") as f:
            f.write("x")
    os.makedirs(os.path.join(folder.run_dir, "tb"))
    _opened(tmp_path, "--overwrite").close()
    left = sorted(os.path.relpath(os.path.join(d, f), folder.run_dir)
                  for d, _, fs in os.walk(folder.run_dir) for f in fs)
    assert {"notes.txt", "photo.png", "models/other.pth"} <= set(left)      # not written by the stage: kept
    assert not {"models/latest.pth", "models/Epoch3.pth", "loss_curves.png"} & set(left)
    assert "models/.tmp-abc123.pth" not in left                             # stale temporary removed
    assert json.load(open(os.path.join(folder.run_dir, "args.json")))["overwrite"] is True


def test_unwritable_or_file_in_the_way_is_one_line(tmp_path):
    (tmp_path / "run").write_text("a file")
    with pytest.raises(UserError, match="is a file, not a folder"):
        Session(_args(tmp_path), _folder(tmp_path))
    (tmp_path / "run").unlink()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "models").write_text("a file")
    with pytest.raises(UserError, match="cannot write in .*models"):
        _opened(tmp_path)


def test_read_state_refuses_other_stages_weights_only_and_changed_frozen_flags(tmp_path):
    folder = _folder(tmp_path)
    os.makedirs(folder.ckpt_dir)
    path = folder.latest_path

    def state(**kw):
        model, opt, _ = toy_training()
        torch.save(training_state(kw.pop("stage", "scl"), 2, 0, model, opt, args=_args(tmp_path, **kw)), path)
        return Session(_args(tmp_path, "--resume", lr=0.5), folder)

    with pytest.raises(UserError, match="written by the enhancer stage; the scl stage resumes only its own"):
        state(stage="enhancer").read_state()
    with pytest.raises(UserError, match=r"changed --arch emnet -> dce"):
        state(arch="emnet").read_state(frozen=("arch",))
    s = state(lr=0.1)
    assert s.read_state(frozen=("arch",))["iteration"] == 2
    assert s.changed == {"lr": (0.1, 0.5)}  # applied by the stage, logged, and args.json records 0.5
    torch.save(toy_training()[0].state_dict(), path)
    with pytest.raises(UserError, match="holds no training state"):
        Session(_args(tmp_path, "--resume"), folder).read_state()
    (tmp_path / "text.pth").write_text("hello world, not a checkpoint")
    with pytest.raises(UserError, match="--resume.*text.pth"):
        Session(_args(tmp_path, "--resume", str(tmp_path / "text.pth")), folder).read_state()


def _step(session, it, terms_fn, model, opt, clip=None):
    return session.step(it, terms_fn(model), model, opt, clip)


def test_step_stops_on_a_nonfinite_term_or_gradient_before_the_update(tmp_path):
    session = _opened(tmp_path)
    model, opt, _ = toy_training()
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(3, 4)
    with pytest.raises(NonFiniteError, match=r"iteration 8: loss term con is NaN/Inf.*no checkpoint was written"):
        session.step(7, {"tv": model(x).mean(), "con": model(x).mean() * float("nan")}, model, opt)
    session.last_saved = ("run/models/latest.pth", 5)
    with pytest.raises(NonFiniteError, match=r"iteration 3: the gradient is NaN/Inf.*latest.pth \(iteration 5\) kept"):
        session.step(2, {"tv": (model(x) * 0).abs().sqrt().mean()}, model, opt)  # d sqrt(0) = inf
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # no update happened
    total = session.step(0, {"a": model(x).pow(2).mean(), "b": model(x).abs().mean()}, model, opt, clip=0.1)
    assert total.ndim == 0 and not any(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    session.close()


def test_save_refuses_nonfinite_weights_and_reports_write_faults(tmp_path, monkeypatch):
    session = _opened(tmp_path)
    model, opt, _ = toy_training()
    session.save("latest.pth", training_state("scl", 4, 0, model, opt), 4)
    assert session.last_saved == (os.path.join(session.folder.ckpt_dir, "latest.pth"), 4)
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
    assert nonfinite_tensor(training_state("scl", 5, 0, model, opt)) == "state_dict.0.weight"
    with pytest.raises(NonFiniteError, match="state_dict.0.weight holds NaN/Inf; .*best.pth not written"):
        session.save("best.pth", training_state("scl", 5, 0, model, opt), 5)
    assert not os.path.exists(os.path.join(session.folder.ckpt_dir, "best.pth"))
    assert torch.load(session.last_saved[0], weights_only=True)["iteration"] == 4

    path = session.last_saved[0]
    monkeypatch.setattr("utils.fs.open", FullDisk({"latest.pth"}), raising=False)  # through torch's real writer
    with pytest.raises(UserError) as e:
        session.save("latest.pth", {"w": torch.zeros(750_000)}, 6)  # 3,000,000 bytes of tensors
    assert str(e.value) == (f"cannot write {path}: no space left on device (about 3 MB needed); free space or "
                            f"choose another folder")
    assert torch.load(path, weights_only=True)["iteration"] == 4 and session.last_saved == (path, 4)
    assert os.listdir(session.folder.ckpt_dir) == ["latest.pth"]
    session.close()


def test_a_full_disk_under_the_logs_is_one_line_naming_the_file(tmp_path, monkeypatch):
    session = _opened(tmp_path)
    losses = os.path.join(session.folder.run_dir, "losses.jsonl")
    monkeypatch.setattr("stages.runlog.open", FullDisk({"losses.jsonl"}, room=10), raising=False)
    with pytest.raises(UserError) as e:
        session.log(1, {"total": 0.5})
    assert str(e.value) == f"cannot write {losses}: no space left on device; free space or choose another folder"
    handler = next(h for h in log.handlers if isinstance(h, logging.FileHandler))
    handler.stream = FullDisk({"train.log"}, room=0)(handler.baseFilename, "a")
    try:
        with pytest.raises(UserError) as e:  # logging would print its own traceback and go on
            log.info("a line that does not fit")
    finally:
        log.removeHandler(handler)
        handler.close()
    assert str(e.value) == (f"cannot write {handler.baseFilename}: no space left on device; free space or choose "
                            f"another folder")
    session.close()




def test_amp_bf16_autocasts_the_forward_and_keeps_fp32_weights(tmp_path):
    model, opt, _ = toy_training()
    x = torch.randn(3, 4)
    session = _opened(tmp_path, "--amp", "bf16")
    with session.autocast():
        y = model(x)
    assert y.dtype == torch.bfloat16
    before = model[0].weight.detach().clone()
    session.step(0, {"a": y.float().pow(2).mean()}, model, opt)
    assert model[0].weight.dtype == torch.float32 and not torch.equal(before, model[0].weight)
    session.close()
    session = _opened(tmp_path / "off")
    with session.autocast():
        assert model(x).dtype == torch.float32
    session.close()


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(e, 10, 3, 0.01) for e in range(10)]
    assert f[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert f[3] == pytest.approx(1.0) and f[-1] > 0.01 and all(a >= b for a, b in zip(f[3:], f[4:]))
    assert lr_factor(10, 10, 3, 0.01) == pytest.approx(0.01)

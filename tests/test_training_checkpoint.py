"""The training checkpoint schema (utils/training_checkpoint.py): written, read back, old layouts recognised."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from utils.checkpoint import add_module_prefix, extract_state_dict, read_checkpoint, strip_module_prefix
from utils.errors import UserError
from utils.training_checkpoint import (MEMORY_KEYS, checkpoint_stage, memory_checkpoint, memory_tensors, resume_step,
                                       training_checkpoint)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _weights():
    return nn.Conv2d(3, 2, 1).state_dict()


@pytest.mark.parametrize("stage,prefixed", [("scl", False), ("enhancer", True), ("memory", False)])
def test_a_training_checkpoint_round_trips_through_a_file(tmp_path, stage, prefixed):
    w = _weights()
    ck = training_checkpoint(stage, 12, 3, {"torch": torch.get_rng_state()}, weights=w, optimizer={"state": {}},
                             args={"lr": 0.1}, best_psnr=17.5)
    torch.save(ck, tmp_path / "c.pth")
    back = read_checkpoint(str(tmp_path / "c.pth"))
    assert (back["stage"], back["iteration"], back["epoch"], back["best_psnr"], back["args"]) == \
        (stage, 12, 3, 17.5, {"lr": 0.1})
    assert checkpoint_stage(back) == stage and resume_step(back, per_epoch=100) == 12
    assert all(k.startswith("module.") == prefixed for k in back["state_dict"])  # the enhancer: as the reference
    got = extract_state_dict(back, "c.pth")
    assert list(got) == ["weight", "bias"] and all(torch.equal(got[k], w[k]) for k in w)
    assert "scheduler" not in back and torch.equal(back["rng"]["torch"], torch.get_rng_state())


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="stage 'x' is not one of scl, enhancer, memory"):
        training_checkpoint("x", 0, 0, {})


def test_checkpoint_stage_recognises_old_layouts():
    assert checkpoint_stage({"stage": "memory"}) == "memory"
    assert checkpoint_stage({"state_dict": {}, "optimizer": {}, "iteration": 3}) == "scl"
    assert checkpoint_stage({"state_dict": {}, "optimizer": {}, "scheduler": {}, "epoch": 2}) == "enhancer"
    assert checkpoint_stage({"mem_key": torch.zeros(1), "epoch": 1}) == "memory"
    assert checkpoint_stage({"e_conv1.weight": torch.zeros(1)}) is None
    assert checkpoint_stage("text") is None


def test_resume_step_of_old_files_without_iteration_counts_whole_epochs():
    assert resume_step({"epoch": 4}, per_epoch=7) == 28
    assert resume_step({"epoch": 4, "iteration": 30}, per_epoch=7) == 30


def test_module_prefix_added_and_stripped_round_trip():
    w = _weights()
    assert list(add_module_prefix(w)) == ["module.weight", "module.bias"]
    assert strip_module_prefix(add_module_prefix(w)).keys() == w.keys()
    assert list(strip_module_prefix({"weight": 1, "module.bias": 2})) == ["weight", "bias"]


def test_memory_checkpoint_round_trip_and_checks(tmp_path):
    key, value = torch.randn(5, 4), torch.rand(5, 3)
    age, index = torch.arange(5.0), torch.tensor([0, -1, 2, 3, -1])
    ck = memory_checkpoint(2, key, value, age, index)
    assert tuple(ck) == MEMORY_KEYS == ("epoch", "mem_key", "mem_vale", "mem_age", "mem_index")
    torch.save(ck, tmp_path / "m.pth")
    back = memory_tensors(read_checkpoint(str(tmp_path / "m.pth")), "m.pth")
    assert all(torch.equal(a, b) for a, b in zip(back, (key, value, age, index)))
    assert checkpoint_stage(ck) == "memory"
    with pytest.raises(UserError, match="m.pth is not an EMNet memory checkpoint: missing keys mem_vale"):
        memory_tensors({k: v for k, v in ck.items() if k != "mem_vale"}, "m.pth")
    with pytest.raises(UserError, match="inconsistent memory shapes"):
        memory_tensors({**ck, "mem_age": torch.zeros(4)}, "m.pth")


@pytest.mark.parametrize("name", ["LLE_model.pth", "LLE_model_supervised.pth"])
def test_shipped_checkpoints_read_as_weights(name):
    path = os.path.join(ROOT, "checkpoints", name)
    w = extract_state_dict(read_checkpoint(path), path)
    assert w["e_conv1.weight"].shape == (32, 3, 3, 3) and not any(k.startswith("module.") for k in w)

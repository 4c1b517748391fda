"""stages/state.py: training-state checkpoints that resume exactly, and the stage of older layouts."""
from __future__ import annotations

import torch

from helpers import toy_training
from stages.state import restore, training_state


def _train(model, opt, sched, gen, steps):
    out = []
    for _ in range(steps):
        x = torch.randn(5, 4, generator=gen) + torch.randn(5, 4)  # a named generator and the global RNG
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        out.append(loss.item())
    return out


def test_training_state_round_trip_continues_exactly(tmp_path):
    model, opt, sched = toy_training()
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(1)
    ref = _train(model, opt, sched, gen, 6)

    model, opt, sched = toy_training()
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(1)
    _train(model, opt, sched, gen, 3)
    torch.save(training_state("scl", 3, 1, model, opt, sched, {"g": gen}, note="x"), tmp_path / "s.pth")
    model, opt, sched = toy_training(seed=99)  # different weights, fresh optimiser and RNG
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(12345)
    ck = torch.load(tmp_path / "s.pth", weights_only=True)
    restore(ck, model, opt, sched, {"g": gen})
    assert (ck["stage"], ck["iteration"], ck["epoch"], ck["note"]) == ("scl", 3, 1, "x")
    assert _train(model, opt, sched, gen, 3) == ref[3:]

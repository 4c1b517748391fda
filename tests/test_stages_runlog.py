"""stages/runlog.py: the losses log."""
from __future__ import annotations

import math

from stages.runlog import RunLogger, read_losses


def test_losses_log_survives_partial_and_garbled_lines(tmp_path):
    path = tmp_path / "losses.jsonl"
    path.write_text('{"step": 1, "prefix": "loss", "total": 1.0}\n{"step": 2, "prefix": "loss", "total": 0.5}\n'
                    'garbage\x00\x01\n{"step": 3, "prefix": "loss", "to')
    assert [r["step"] for r in read_losses(str(path))] == [1, 2]
    RunLogger(str(tmp_path), start_step=1, tensorboard=False).log(2, {"total": 0.25})
    assert [(r["step"], r["total"]) for r in read_losses(str(path))] == [(1, 1.0), (2, 0.25)]
    assert math.isfinite(read_losses(str(path))[-1]["total"])

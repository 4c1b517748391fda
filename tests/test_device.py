"""utils/device.py's init_distributed with a stale WORLD_SIZE/RANK and no torchrun: it says at once what it
waits for and gives up with one line after --dist_timeout seconds (lowlight_test.py and train.py)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from helpers import ROOT
from utils.device import init_distributed
from utils.errors import UserError
from utils.options import parse

SESSION = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from pathlib import Path
from helpers import session_args, session_folder
from stages.common import Session
from utils.errors import run_cli
tmp = Path({tmp!r})
run_cli(lambda: Session(session_args(tmp, dist_timeout=3.0), session_folder(tmp)).open())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stale_env(rank: int, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHELASTIC")}
    return {**env, "WORLD_SIZE": "2", "RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _gives_up(cmd: list[str], rank: int) -> None:
    """Run ``cmd`` with a stale environment: the waiting line at once, one error line ~3 s later, exit 2."""
    port = _free_port()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_stale_env(rank, port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        waited = time.monotonic()
        rest = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert first == (f"waiting for 2 processes at 127.0.0.1:{port}, WORLD_SIZE from the environment (not started "
                     f"by torchrun?); giving up after 3 s\n")
    assert time.monotonic() - waited < 20 and proc.returncode == 2
    lines = [line for line in rest.splitlines() if line.strip()]
    assert len(lines) == 1, rest
    assert lines[0].startswith(f"error: gave up after 3 s waiting for 2 processes at 127.0.0.1:{port} "
                               f"(WORLD_SIZE=2, RANK={rank} from the environment")
    assert lines[0].endswith("start every process (torchrun), or unset WORLD_SIZE and RANK to run one")


def test_lowlight_test_with_a_stale_world_size_gives_up_after_dist_timeout(tmp_path):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (16, 16), (20, 20, 20)).save(tmp_path / "in" / "a.png")
    _gives_up([sys.executable, "lowlight_test.py", "--input_dir", str(tmp_path / "in"), "--output_dir",
               str(tmp_path / "out"), "--device", "cpu", "--dist_timeout", "3"], rank=0)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_training_session_with_a_stale_rank_1_gives_up_without_cxx_noise(tmp_path):
    code = SESSION.format(root=str(ROOT), tests=str(ROOT / "tests"), tmp=str(tmp_path))
    _gives_up([sys.executable, "-c", code], rank=1)  # the client side: c10d's retries print C++ traces
    assert not (tmp_path / "run").exists()  # nothing created before the group is joined


def test_world_size_without_master_address_is_one_line_at_once(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(UserError, match=r"^WORLD_SIZE=2 is set in the environment but MASTER_ADDR, MASTER_PORT "
                                        r"not: launch with torchrun, or unset WORLD_SIZE to run one process$"):
        init_distributed(torch.device("cpu"), timeout=3)


@pytest.mark.parametrize("entry", ["train", "lowlight_test"])
def test_dist_timeout_is_declared_once_with_its_validator(entry):
    import lowlight_test
    import train

    build = train.build_parser if entry == "train" else lambda stage: lowlight_test.build_parser()
    assert parse(build("scl"), ["--dist_timeout", "2.5"]).dist_timeout == 2.5
    assert parse(build("memory"), []).dist_timeout == 1800
    with pytest.raises(UserError, match=r"^--dist_timeout 0: must be > 0$"):
        parse(build("enhancer"), ["--dist_timeout", "0"])

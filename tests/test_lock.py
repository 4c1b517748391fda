"""One run per run folder (utils/lock.py, taken in stages.common.Session.open): two real processes, a stale
lock file left by a process killed with SIGKILL, another host's lock."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import ROOT
from helpers import session_args as _args
from helpers import session_folder as _folder
from stages.common import Session
from utils.errors import UserError
from utils.lock import LOCK_NAME, RunLock

# A run holding its folder: Session.open, "ready" on stdout, one line logged, close when stdin says so.
HOLDER = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from pathlib import Path
from helpers import session_args, session_folder
from stages.common import Session
from stages.runlog import log
from utils.errors import run_cli

def main():
    tmp = Path({tmp!r})
    s = Session(session_args(tmp), session_folder(tmp)).open()
    print("ready", flush=True)
    sys.stdin.readline()
    log.info("first run still writing")
    s.close()
run_cli(main)
"""


def _start(tmp_path) -> subprocess.Popen:
    code = HOLDER.format(root=str(ROOT), tests=str(ROOT / "tests"), tmp=str(tmp_path))
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()


def test_a_second_process_into_the_folder_stops_at_once_naming_the_first(tmp_path):
    first = _start(tmp_path)
    try:
        _ready(first)
        t0 = time.monotonic()
        second = _start(tmp_path)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 2 and time.monotonic() - t0 < 30
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: {tmp_path / 'run'} is in use by another run (host "
                                   f"{socket.gethostname()}, PID {first.pid}, since ")
        out, err = first.communicate("go\n", timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0, err  # the first run is unaffected and ends normally
    log_text = (tmp_path / "run" / "train.log").read_text()
    assert log_text.count("scl stage: device") == 1 and "first run still writing" in log_text
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # released at close


def test_two_runs_that_both_passed_the_folder_check_the_later_open_is_refused(tmp_path):
    late = Session(_args(tmp_path), _folder(tmp_path))  # checked before the other run existed
    first = _start(tmp_path)
    try:
        _ready(first)
        with pytest.raises(UserError, match=rf"in use by another run \(.*PID {first.pid}, since "):
            late.open()
        assert (tmp_path / "run" / "train.log").read_text().count("scl stage: device") == 1
        first.communicate("go\n", timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0
    late = Session(_args(tmp_path), _folder(tmp_path)).open()  # free again once the first has ended
    late.close()


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_note(tmp_path):
    first = _start(tmp_path)
    _ready(first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    lock = tmp_path / "run" / LOCK_NAME
    assert json.loads(lock.read_text())["pid"] == first.pid  # left behind, but the kernel freed the flock
    s = Session(_args(tmp_path), _folder(tmp_path)).open()
    try:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        note = [line for line in (tmp_path / "run" / "train.log").read_text().splitlines() if "took over" in line]
        assert len(note) == 1 and f"PID {first.pid}," in note[0] and "ended without releasing it" in note[0]
    finally:
        s.close()
    assert not lock.exists()


def test_another_hosts_lock_is_refused_naming_it_and_the_file_to_delete(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"host": "node17", "pid": 4242, "since": "2026-12-07 10:00:00"}))
    with pytest.raises(UserError, match=r"another run \(host node17, PID 4242, since 2026-12-07 10:00:00\).*"
                                        r"delete .*\.run\.lock"):
        with RunLock(str(run)):
            pass


def test_context_manager_releases_and_a_second_holder_in_one_process_takes_over(tmp_path):
    with RunLock(str(tmp_path)) as held:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        again = RunLock(str(tmp_path)).acquire()  # an earlier run of this process that never closed
        assert held.fd is None and again.recovered is None
        again.release()
    assert not (tmp_path / LOCK_NAME).exists()

"""utils/threads.py: torch's threads from the cores other processes leave free."""
from __future__ import annotations

import os

from utils import threads


def _fake_times(monkeypatch, samples):
    it = iter(samples)
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(it))
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)


def test_busy_cores_leave_one_thread_idle_cores_all(monkeypatch):
    _fake_times(monkeypatch, [(0, 0), (10, 100)])  # 10 % idle of 2 cores: 0.2 free
    assert threads.auto_threads() == 1
    _fake_times(monkeypatch, [(0, 0), (95, 100)])  # 1.9 free
    assert threads.auto_threads() == 2
    _fake_times(monkeypatch, [(0, 0), (60, 100)])  # 1.2 free
    assert threads.auto_threads() == 1


def test_unreadable_proc_keeps_the_default(monkeypatch):
    _fake_times(monkeypatch, [None, None])
    assert threads.auto_threads() is None


def test_real_measurement_is_in_range():
    n = threads.auto_threads(0.05)
    assert n is None or 1 <= n <= len(os.sched_getaffinity(0))

"""torch's intra-op threads sized from the CPU cores other processes leave free.

torch starts one intra-op thread per core and meets them at a barrier after every parallel operation. When
other processes keep those cores busy, a descheduled thread stalls the others at each barrier, and two
threads become slower than one: on this project's 2-core machine at load 8–9, ``lowlight_test.py
--precision bf16`` on eight 600x400 images took 1.4–1.8 s per image with torch's two threads and 0.6–0.9 s
with one (docs/performance.md). :func:`auto_threads` measures the cores that are idle over a short window
(``/proc/stat``) before the work starts, and gives that many threads (at least one, at most the cores
this process may run on).
"""
from __future__ import annotations

import os
import time


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from ``/proc/stat``; None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])


def free_cores(window: float = 0.25) -> float | None:
    """Cores idle (idle + iowait time) over ``window`` seconds, of all the machine's; None without /proc."""
    a = _cpu_times()
    time.sleep(window)
    b = _cpu_times()
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (os.cpu_count() or 1) * (b[0] - a[0]) / (b[1] - a[1])


def auto_threads(window: float = 0.25) -> int | None:
    """The intra-op threads for the cores free now: the idle cores rounded (at least 1, at most the cores of
    this process's affinity); None where they cannot be measured (keep torch's default)."""
    free = free_cores(window)
    if free is None:
        return None
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(allowed, int(free + 0.5)))

"""How much memory a run used: the process's peak resident set, the peak CUDA allocation, and their text."""
from __future__ import annotations

import resource
import sys

import torch


def peak_rss() -> int:
    """Peak resident bytes of this process. On Linux /proc's VmHWM, which starts afresh with the program:
    getrusage's ru_maxrss keeps the peak from before exec, so a child started by a large process (a
    benchmark, a test runner) would report its parent's peak (Python starts children with vfork, which
    shares the parent's memory until exec). Elsewhere ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def peak_memory(device: torch.device) -> tuple[int, int]:
    """(peak resident bytes of this process, peak CUDA allocation in bytes or 0 off the GPU)."""
    return peak_rss(), torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


def memory_text(rss: int, cuda: int = 0) -> str:
    """e.g. ``"1.23 GB RSS"`` (``", 0.80 GB CUDA"`` added when ``cuda``)."""
    return f"{rss / 1e9:.2f} GB RSS" + (f", {cuda / 1e9:.2f} GB CUDA" if cuda else "")

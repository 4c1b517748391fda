"""Resolve the device once, and the few distributed helpers the loops need (torchrun-compatible)."""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist

from utils.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
# Seconds to wait for the other processes of a run to join (and for any collective once joined): torch's own
# default process-group timeout, generous for multi-node starts.
DIST_TIMEOUT_S = 1800.0


def world_size() -> int:
    """The number of processes of the run: torchrun's ``WORLD_SIZE`` (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU. Errors name the
    parameter ``device`` (a command line names its flag: :func:`utils.options.resolve_device_flag`)."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise UserError(f"device {name!r} is not one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("device cuda was asked for but no CUDA device is available; use device cpu")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return torch.device(name)


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks below 256 MB for reuse instead of returning them to the system.

    Large tensors are otherwise mapped and unmapped on every allocation, and the page faults of fresh
    pages cost inference about as much as the convolutions (benchmarks/bench_inference.py). Memory freed
    after the peak is kept by the process; a later allocation larger than the freed blocks is mapped on top
    of them, so code that frees a lot before one larger allocation hands the pages back first
    (:func:`release_freed_memory`). Linux/glibc only; returns whether it took effect.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 256 << 20)) and bool(mallopt(m_trim_threshold, 512 << 20))


def release_freed_memory() -> None:
    """glibc's ``malloc_trim(0)``: hand the freed blocks :func:`keep_freed_memory` kept back to the system,
    before an allocation larger than any of them (which would otherwise be mapped on top of them). Used by
    ``--curve_scale`` between the network and the full-size output: at 6000x4000, S = 8, peak 1.40–1.51 GB
    RSS without, 1.15–1.19 GB with (docs/performance.md). Elsewhere nothing."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            pass


def cpu_has_bf16() -> bool | None:
    """Whether oneDNN runs bf16 natively on this CPU (AVX-512 BF16 or AMX; ``torch.ops.mkldnn``'s own check),
    None where torch cannot say. Without it bf16 convolutions are emulated: measured on an AVX2-only AMD
    EPYC, ``lowlight_test.py --precision bf16`` took 5.0 s per 600x400 image against 0.50 s in fp32
    (docs/performance.md)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


def init_distributed(device: torch.device, timeout: float = DIST_TIMEOUT_S) -> tuple[int, int]:
    """Initialise the process group when launched with ``WORLD_SIZE > 1`` (torchrun); return (rank, world).

    Without torchrun (``WORLD_SIZE`` left in the environment) it says at once on stderr what it waits for;
    processes that do not all join within ``timeout`` seconds are one-line :class:`UserError`."""
    world = world_size()
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        _join(world, "nccl" if device.type == "cuda" else "gloo", timeout)
    return dist.get_rank(), dist.get_world_size()


def _join(world: int, backend: str, timeout: float) -> None:
    env = os.environ
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
    if missing:
        raise UserError(f"WORLD_SIZE={world} is set in the environment but {', '.join(missing)} not: launch with "
                        f"torchrun, or unset WORLD_SIZE to run one process")
    where = f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    torchrun = "TORCHELASTIC_RUN_ID" in env
    if not torchrun:
        print(f"waiting for {world} processes at {where}, WORLD_SIZE from the environment (not started by "
              f"torchrun?); giving up after {timeout:g} s", file=sys.stderr, flush=True)
    try:
        with _native_stderr_dropped(not torchrun):  # c10d's connection retries print C++ stack traces
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as e:
        raise UserError(f"gave up after {timeout:g} s waiting for {world} processes at {where} (WORLD_SIZE={world}, "
                        f"RANK={env['RANK']} from the environment; {str(e).splitlines()[0][:120]}): start every "
                        f"process (torchrun), or unset WORLD_SIZE and RANK to run one") from None


@contextlib.contextmanager
def _native_stderr_dropped(drop: bool) -> Iterator[None]:
    """File descriptor 2 sent to a discarded temporary file while ``drop`` (what native code prints)."""
    if not drop:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def close_distributed(barrier: bool = True) -> None:
    """Leave the process group, if one was joined: wait for every process (``barrier``, on success only:
    after an error the others may never arrive), then destroy it, rather than leave the teardown to the
    interpreter's exit (PyTorch's advice; a torchrun test once saw a process abort with SIGABRT after a
    successful run without it, a cause not confirmed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if barrier:
        dist.barrier()
    dist.destroy_process_group()


def is_primary() -> bool:
    """True on rank 0 (or when not distributed): only this process logs and writes files."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel/DataParallel, for ``state_dict()``."""
    return model.module if hasattr(model, "module") else model

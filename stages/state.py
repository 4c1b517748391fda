"""Training state and replicas: seeds and every RNG, the resumable checkpoint dict, restoring it, the
non-finite guard on what is saved, and the DDP gathers that keep the memory stage's replicas identical.

Imported from here by the stages and the loop.
"""
from __future__ import annotations

import argparse
import hashlib
import random
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from utils.checkpoint import extract_state_dict, load_state, read_checkpoint
from utils.device import unwrap
from utils.errors import UserError
from utils.training_checkpoint import training_checkpoint


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(**generators: torch.Generator) -> dict[str, Any]:
    """Every RNG a resumed run needs: python, numpy, torch (CPU and CUDA) and named generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)  # loadable weights_only
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state(),
             "generators": {k: g.get_state() for k, g in generators.items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], **generators: torch.Generator) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for k, g in generators.items():
        if k in state["generators"]:
            g.set_state(state["generators"][k].cpu())


def training_state(stage: str, iteration: int, epoch: int, model: nn.Module | None = None,
                   optimizer=None, scheduler=None, generators: dict[str, torch.Generator] | None = None,
                   args: argparse.Namespace | None = None, **extra: Any) -> dict[str, Any]:
    """The resumable checkpoint (:func:`utils.training_checkpoint.training_checkpoint`) of live objects:
    ``model``'s weights (unwrapped), the optimiser's and scheduler's state, every RNG and ``extra`` fields."""
    return training_checkpoint(stage, iteration, epoch, rng_state(**(generators or {})),
                               weights=None if model is None else unwrap(model).state_dict(),
                               optimizer=None if optimizer is None else optimizer.state_dict(),
                               scheduler=None if scheduler is None else scheduler.state_dict(),
                               args=None if args is None else vars(args), **extra)


def read_file(path: str, flag: str, reader: Callable[[str], Any] = read_checkpoint) -> Any:
    """``reader(path)`` (default :func:`read_checkpoint`, which every reader here goes through); its
    one-line :class:`UserError` is prefixed with ``flag``."""
    try:
        return reader(path)
    except UserError as e:
        message = str(e)
        raise UserError(message if message.startswith(flag) else f"{flag}: {message}") from None


def read_init_weights(path: str | None, resume: bool) -> dict[str, Any] | None:
    """The state dict of ``--init_weights`` (fine-tuning; any layout the project loads), or None without the
    flag or when resuming (the resumed run's own weights win)."""
    if resume or not path:
        return None
    return extract_state_dict(read_file(path, "--init_weights"), path)


def restore(ck: dict[str, Any], model: nn.Module | None = None, optimizer=None, scheduler=None,
            generators: dict[str, torch.Generator] | None = None) -> None:
    """Load what :func:`training_state` saved into the given objects (weights strictly)."""
    if model is not None:
        load_state(unwrap(model), extract_state_dict(ck, "--resume"), "--resume")
    if optimizer is not None:
        optimizer.load_state_dict(ck["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(ck["scheduler"])
    if "rng" in ck:
        set_rng_state(ck["rng"], **(generators or {}))


def nonfinite_tensor(obj: Any, prefix: str = "") -> str | None:
    """The name of the first floating tensor holding NaN/Inf in nested dicts/lists, or None."""
    if torch.is_tensor(obj):
        return prefix or "tensor" if obj.is_floating_point() and not torch.isfinite(obj).all() else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        if k != "rng" and (bad := nonfinite_tensor(v, f"{prefix}.{k}" if prefix else str(k))):
            return bad
    return None


# ------------------------------------------------------------------------------------------ replicas
def all_gather_cat(t: torch.Tensor, world: int) -> torch.Tensor:
    """Concatenate ``t`` (same shape on every process) of all processes in rank order along dim 0."""
    if world <= 1:
        return t
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def replica_digest(tensors: list[torch.Tensor], world: int, device: torch.device) -> tuple[str, bool]:
    """A short digest of ``tensors`` and whether every process holds identical ones (bitwise)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    digest = torch.tensor([int.from_bytes(h.digest()[:7], "big")], dtype=torch.int64)
    everyone = all_gather_cat(digest.to(device), world).cpu()
    return h.hexdigest()[:12], bool((everyone == everyone[0]).all())

"""The training checkpoint schema: what a stage writes as ``(stage, step, weights, extras)`` and how it is read
back, plus the reference layouts the schema is made of. Nothing else in the project knows these keys.

A resumable checkpoint (``latest``; the enhancer's ``model_best.pth`` too) is one dict::

    {"stage": "scl" | "enhancer" | "memory", "iteration": steps done, "epoch": epochs done, "rng": {...},
     "state_dict": weights, "optimizer": ..., "scheduler": ..., "args": {flag: value}, **extras}

(``state_dict``, ``optimizer``, ``scheduler`` and ``args`` only when the stage has them). The reference
layouts it keeps:

* the enhancer's ``{"epoch", "state_dict"}`` with DataParallel's ``module.`` prefix on every weight key
  (the EMNet reference's test script expects it): :data:`PREFIXED_STAGES`;
* SCL-LLE's snapshots ``Epoch{it}.pth``: the plain ``state_dict()`` (the reference's test script loads them);
* the memory's ``{"epoch", "mem_key", "mem_vale", "mem_age", "mem_index"}`` (:data:`MEMORY_KEYS`), which the
  memory stage's resumable checkpoint extends with the fields above.

Older checkpoints without ``stage`` are recognised by their keys (:func:`checkpoint_stage`) and older ones
without ``iteration`` resume at ``epoch × batches per epoch`` (:func:`resume_step`).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from utils.checkpoint import add_module_prefix
from utils.errors import UserError

STAGES = ("scl", "enhancer", "memory")
#: Stages whose weights are saved under DataParallel's ``module.`` prefix, as the reference saves them.
PREFIXED_STAGES = frozenset({"enhancer"})
#: The reference memory checkpoint's keys ("mem_vale" (sic) as in the reference).
MEMORY_KEYS = ("epoch", "mem_key", "mem_vale", "mem_age", "mem_index")


# ------------------------------------------------------------------------------------ training state
def training_checkpoint(stage: str, step: int, epoch: int, rng: Mapping[str, Any],
                        weights: Mapping[str, torch.Tensor] | None = None, optimizer: Mapping | None = None,
                        scheduler: Mapping | None = None, args: Mapping[str, Any] | None = None,
                        **extras: Any) -> dict[str, Any]:
    """The resumable checkpoint of ``stage`` after ``step`` steps (``epoch`` epochs): ``weights`` (an
    unwrapped state dict; prefixed for :data:`PREFIXED_STAGES`), optimiser/scheduler state dicts, the RNG
    states ``rng``, the flags ``args`` and ``extras`` (e.g. ``best_psnr``, or the memory's tensors)."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
    state: dict[str, Any] = {"stage": stage, "iteration": step, "epoch": epoch, "rng": dict(rng)}
    if weights is not None:
        state["state_dict"] = add_module_prefix(weights) if stage in PREFIXED_STAGES else dict(weights)
    for key, value in (("optimizer", optimizer), ("scheduler", scheduler), ("args", args)):
        if value is not None:
            state[key] = value
    return {**state, **extras}


def checkpoint_stage(ck: Any) -> str | None:
    """Which stage wrote a training checkpoint (older ones recognised by their keys), or None (weights only,
    a memory's reference file counts as the memory stage's)."""
    if not isinstance(ck, Mapping):
        return None
    if "stage" in ck:
        return str(ck["stage"])
    if "mem_key" in ck:
        return "memory"
    if "optimizer" in ck:
        return "enhancer" if "scheduler" in ck else "scl" if "iteration" in ck else None
    return None


def resume_step(ck: Mapping[str, Any], per_epoch: int) -> int:
    """The step a checkpoint resumes at: its ``iteration``, or (older files) ``epoch × per_epoch``."""
    return int(ck.get("iteration") or int(ck["epoch"]) * per_epoch)


# ---------------------------------------------------------------------------------- reference layouts
def memory_checkpoint(epoch: int, key: torch.Tensor, value: torch.Tensor, age: torch.Tensor,
                      top_index: torch.Tensor) -> dict[str, Any]:
    """The reference memory checkpoint (keys exactly :data:`MEMORY_KEYS`), CPU copies of the tensors."""
    tensors = (t.detach().cpu().clone() for t in (key, value, age, top_index))
    return dict(zip(MEMORY_KEYS, (epoch, *tensors)))


def memory_tensors(obj: Any, name: str) -> tuple[torch.Tensor, ...]:
    """``(key, value, age, top_index)`` of a reference memory checkpoint dict, checked; a one-line
    :class:`UserError` naming ``name`` otherwise."""
    if not isinstance(obj, Mapping):
        raise UserError(f"{name} is not an EMNet memory checkpoint (expected a dict with keys "
                        f"{', '.join(MEMORY_KEYS)})")
    missing = [k for k in MEMORY_KEYS[1:] if k not in obj or not torch.is_tensor(obj[k])]
    if missing:
        raise UserError(f"{name} is not an EMNet memory checkpoint: missing keys {', '.join(missing)} "
                        f"(is it an enhancer checkpoint? pass the memory file saved by the memory training)")
    key, value = obj["mem_key"], obj["mem_vale"]
    age, top = obj["mem_age"].reshape(-1), obj["mem_index"].reshape(-1)
    if key.dim() != 2 or value.dim() != 2 or not (key.shape[0] == value.shape[0] == age.numel() == top.numel()):
        raise UserError(f"{name}: inconsistent memory shapes mem_key {tuple(key.shape)}, mem_vale "
                        f"{tuple(value.shape)}, mem_age {tuple(age.shape)}, mem_index {tuple(top.shape)}")
    return key, value, age, top

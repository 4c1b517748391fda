"""One checkpoint format for the whole project, and one loader that also reads the originals."""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from typing import Any, Mapping

import torch
from torch import nn

from utils.errors import UserError

STATE_DICT_KEYS = ("state_dict", "model_state", "params", "model")


def read_checkpoint(path: str, map_location="cpu") -> Any:
    """``torch.load`` with ``map_location`` and a one-line error for missing or corrupt files."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found: check the path (or train one first)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read checkpoint {path} ({first[:200]}); is it a PyTorch .pth file?") from e


def extract_state_dict(obj: Any, path: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """A raw state dict, or one held under ``state_dict``/``model_state``/``params``/``model``;
    a ``module.`` prefix (DataParallel/DDP) is stripped."""
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise UserError(f"{path} holds no model state dict (looked for a raw state dict or the keys "
                        f"{', '.join(STATE_DICT_KEYS)})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_weights(model: nn.Module, path: str, map_location="cpu") -> nn.Module:
    """Load ``path`` into ``model`` strictly; on a mismatch name missing/unexpected keys in one line."""
    return load_state(model, extract_state_dict(read_checkpoint(path, map_location), path), path)


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: str = "<state dict>") -> nn.Module:
    """``model.load_state_dict(state, strict=True)`` with a one-line :class:`UserError` on any mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        def show(keys):
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
        raise UserError(f"{path} does not match {type(model).__name__}: missing keys [{show(missing)}], "
                        f"unexpected keys [{show(unexpected)}]; is it a checkpoint of this architecture?")
    wrong = [k for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        k = wrong[0]
        raise UserError(f"{path} does not match {type(model).__name__}: {k} has shape {tuple(state[k].shape)}, "
                        f"expected {tuple(expected[k].shape)} ({len(wrong)} tensors differ); check --arch/--embed_dim")
    model.load_state_dict(state, strict=True)
    return model


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: never half-written."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pth")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise

"""One checkpoint format for the whole project, and one loader that also reads the originals."""
from __future__ import annotations

import os
import re
import warnings
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from utils.errors import UserError
from utils.fs import atomic_write

STATE_DICT_KEYS = ("state_dict", "model_state", "params", "model")


LFS_POINTER = b"version https://git-lfs.github.com/spec"
# torch.save's pre-zip (legacy) format: a pickle that starts with this magic number (pickled as LONG1)
LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"


def _numpy_safe_globals() -> list:
    """What real checkpoints hold besides tensors: numpy scalars (e.g. the DeepLab port's ``best_score``,
    a ``numpy.float64``) and their dtypes, under the names numpy 1.x and 2.x pickle them with."""
    import numpy as np

    try:
        scalar = np._core.multiarray.scalar
    except AttributeError:  # numpy 1.x
        scalar = np.core.multiarray.scalar
    allowed: list = [np.dtype, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: one class per dtype, needed to rebuild a dtype
    if dtypes is not None:
        names = ["BoolDType"] + [f"{k}{b}DType" for k in ("Int", "UInt") for b in (8, 16, 32, 64)]
        names += ["Float16DType", "Float32DType", "Float64DType"]
        allowed += [getattr(dtypes, n) for n in names if hasattr(dtypes, n)]
    return allowed


def _looks_like(head: bytes) -> str:
    """What the first bytes of a file that is neither a zip nor a pickle look like."""
    if head.startswith(b"\x89PNG") or head[:3] == b"\xff\xd8\xff":
        return "an image"
    if head.lstrip()[:1] == b"<":
        return "an HTML/XML page: a download that failed?"
    if all(32 <= c < 127 or c in b"\t\r\n" for c in head):
        return "a text file"
    return "not a zip or pickle file"


def _why_unreadable(e: BaseException) -> str:
    """A short reason for a failed ``torch.load``, without torch's advice to unpickle unsafely."""
    text = str(e)
    found = re.search(r"GLOBAL (\S+)", text)
    if found:
        return f"it contains a Python object of type {found.group(1)}, which a weights-only load refuses"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    if any(k in text for k in ("central directory", "unexpected EOF", "Invalid argument")):  # zip, legacy, mmap
        return "the file is truncated: an interrupted download or copy? fetch it again"
    if "Unsupported operand" in text:  # a legacy-format file pickled with protocol 4 or 5
        return "pickled with opcodes a weights-only load does not read: save it again with torch.save's default format"
    if isinstance(e, (KeyError, IndexError, EOFError)) or not lines:
        return "not a PyTorch checkpoint"
    return lines[0][:160].rstrip(".")


def read_checkpoint(path: str, map_location="cpu") -> Any:
    """``torch.load(path, map_location, weights_only=True)`` with numpy scalars/dtypes allow-listed.

    Any failure is a one-line :class:`UserError` naming the file (missing, empty, Git LFS pointer,
    not a checkpoint, or holding objects a weights-only load refuses); never a full unpickling.
    """
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found: check the path (or train one first)")
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise UserError(f"checkpoint {path} is empty: replace it with the real file")
    if head.startswith(LFS_POINTER):
        raise UserError(f"checkpoint {path} is a Git LFS pointer, not the file itself: run `git lfs pull` "
                        f"(or download the checkpoint)")
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save writes a zip, or a pickle
        raise UserError(f"cannot read checkpoint {path} (not a PyTorch checkpoint: {_looks_like(head)}); is it a "
                        f"PyTorch .pth file?")
    if head[:1] == b"\x80" and LEGACY_MAGIC not in head[:32]:
        raise UserError(f"cannot read checkpoint {path} (a plain Python pickle, not a file torch.save wrote); is it "
                        f"a PyTorch .pth file?")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # torch's note on old files
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for non-checkpoints (KeyError, IndexError, ...)
        raise UserError(f"cannot read checkpoint {path} ({_why_unreadable(e)}); is it a PyTorch .pth file?") from None


def require_keys(obj: Any, keys: Sequence[str], path: str, what: str) -> Mapping[str, Any]:
    """``obj`` if it is a dict holding every key of ``keys``, else a one-line :class:`UserError` saying
    that ``path`` is not ``what`` (e.g. "a training checkpoint of the enhancer stage")."""
    missing = list(keys) if not isinstance(obj, Mapping) else [k for k in keys if k not in obj]
    if missing:
        stage = obj.get("stage") if isinstance(obj, Mapping) else None
        found = f" (it is a checkpoint of the {stage} stage)" if isinstance(stage, str) else ""
        raise UserError(f"{path} is not {what}{found}: it lacks {', '.join(missing)}; pass the latest.pth "
                        f"written by that stage, or start anew")
    return obj


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
    return strip_module_prefix(obj)


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


# ------------------------------------------- DataParallel's ``module.`` prefix: added and stripped here only
MODULE_PREFIX = "module."


def add_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every key under DataParallel's ``module.`` (the layout the reference's scripts save)."""
    return {MODULE_PREFIX + k: v for k, v in state.items()}


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with a leading ``module.`` (DataParallel/DDP) removed from each key that has it."""
    return {(k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k): v for k, v in state.items()}


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` through :func:`utils.fs.atomic_write`: never half-written, an old ``path`` kept as it was.

    A write that fails (a full disk: ``ENOSPC``) raises that ``OSError`` naming ``path``, not the zip writer's
    ``RuntimeError`` ("unexpected pos ...") that torch raises in its place.
    """
    try:
        with atomic_write(path, "wb") as f:
            torch.save(obj, f)
    except RuntimeError as e:
        cause = e.__cause__ or e.__context__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror or str(cause), path) from None


def payload_bytes(obj: Any) -> int:
    """About the bytes ``torch.save(obj)`` writes: those of the tensors in ``obj`` (nested dicts, lists, tuples)."""
    if torch.is_tensor(obj):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0

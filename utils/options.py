"""Command-line options declared once, each with its validator beside it, and the run options resolved once.

* Validators (:func:`at_least`, :func:`positive`, :func:`at_most`, :func:`between`) are argparse ``type=``
  functions: a value out of range is an argparse error naming the flag and the value. A parser made by
  :func:`parser` raises it (``exit_on_error=False``) and :func:`parse` turns it into one-line
  :class:`UserError` ``--flag value: must be ...``. Relations between flags stay in the stages' checks.
* The flags several entry points share: :func:`add_device_argument`, :func:`add_arch_arguments`,
  :func:`add_seed_argument`, :func:`add_workers_argument` (each default a parameter),
  :func:`add_dist_timeout_argument`.
* :class:`RunOptions`: rank, world size, device, seed, workers, precision, channels-last, built once from
  the flags (:meth:`RunOptions.from_args`) and passed down.
* Library code raises errors naming its parameters; :func:`as_flag` renames the parameter to its flag.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from network.registry import ARCH_NAMES, get_spec
from utils.device import DIST_TIMEOUT_S, resolve_device, world_size
from utils.errors import UserError
from utils.help import HelpFormatter

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# ----------------------------------------------------------------------------------------- validators
class OutOfRange(argparse.ArgumentTypeError):
    """A value a validator refuses; :func:`parse` reports it as ``--flag value: must be ...``."""


def _number(kind: type, text: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise OutOfRange(f"{text}: must be {'an integer' if kind is int else 'a number'}") from None


def _checked(kind: type, ok: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def check(text: str) -> float:
        value = _number(kind, text)
        if not (math.isfinite(value) and ok(value)):
            raise OutOfRange(f"{value:g}: must be {what}")
        return value

    check.__name__ = f"{kind.__name__} {what}"  # argparse names the type in its own messages
    return check


def at_least(lo: float, kind: type = int) -> Callable[[str], float]:
    """``type=`` for a number >= ``lo`` (``kind`` int or float)."""
    return _checked(kind, lambda v: v >= lo, f"an integer >= {lo:g}" if kind is int else f">= {lo:g}")


def positive(kind: type = float) -> Callable[[str], float]:
    """``type=`` for a number > 0."""
    return _checked(kind, lambda v: v > 0, "> 0")


def between(lo: float, hi: float, kind: type = float) -> Callable[[str], float]:
    """``type=`` for a number in ``[lo, hi]``."""
    return _checked(kind, lambda v: lo <= v <= hi, f">= {lo:g} and <= {hi:g}")


# ------------------------------------------------------------------------------------ parser and errors
class _Parser(argparse.ArgumentParser):
    """``exit_on_error=False`` for the validators alone: argparse's own errors (an unknown choice, a missing
    value) still end in its usage and one ``error:`` line, also through ``parse_known_args`` (train.py reads
    ``--stage`` that way: ``--stage foo`` was a traceback)."""

    def parse_known_args(self, args=None, namespace=None):
        try:
            return super().parse_known_args(args, namespace)
        except argparse.ArgumentError as e:
            if isinstance(e.__context__, OutOfRange) and e.argument_name is not None:
                raise  # parse() turns it into a one-line UserError naming the flag
            self.error(str(e))


def parser(**kw) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` whose validators' errors reach :func:`parse` instead of exiting; its ``--help``
    shows every default (:class:`utils.help.HelpFormatter`)."""
    kw.setdefault("formatter_class", HelpFormatter)
    return _Parser(exit_on_error=False, **kw)


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``p.parse_args(argv)``; a value a validator refuses is a one-line :class:`UserError` naming the flag."""
    try:
        return p.parse_args(argv)
    except argparse.ArgumentError as e:
        if not isinstance(e.__context__, OutOfRange) or e.argument_name is None:
            p.error(str(e))  # argparse's own message (unknown choice, missing value) and exit status 2
        raise UserError(f"{e.argument_name.split('/')[0]} {e.message}") from None


def as_flag(error: UserError, names: dict[str, str]) -> UserError:
    """``error`` (library code naming a parameter first, e.g. ``device 'x' ...``) naming the flag instead."""
    text = str(error)
    for name, flag in names.items():
        if text.startswith(name + " ") or text.startswith(name + ":"):
            text = flag + text[len(name):]
        text = text.replace(f"use {name} ", f"use {flag} ")
    return UserError(text)


def resolve_device_flag(name: str, flag: str = "--device") -> torch.device:
    """:func:`utils.device.resolve_device` for a command line: its errors name ``flag``."""
    try:
        return resolve_device(name)
    except UserError as e:
        raise as_flag(e, {"device": flag}) from None


# ------------------------------------------------------------------------------------------ shared flags
def add_device_argument(p, default: str = "auto") -> None:
    p.add_argument("--device", default=default, help="auto, cpu, cuda or cuda:N")


def add_arch_arguments(p, default: str = "dce", auto: bool = False, auto_help: str = "") -> None:
    """``--arch`` (the registry's names, and ``auto`` with ``auto``) and ``--embed_dim`` (None: the
    architecture's default width, or with ``--arch auto`` the checkpoint's)."""
    p.add_argument("--arch", default=default, choices=[*(["auto"] if auto else []), *ARCH_NAMES],
                   help="enhancer architecture" + (f" (auto: {auto_help or 'recognised from the checkpoint'})"
                                                   if auto else ""))
    p.add_argument("--embed_dim", type=at_least(1), default=None,
                   help="network width (default: the architecture's own; EMNet: even)")


def resolve_arch_arguments(args: argparse.Namespace, from_checkpoint: bool = False) -> None:
    """``--embed_dim`` not given: the architecture's default width (``--arch auto``, or ``from_checkpoint``
    where the network is read from a checkpoint: left None, the checkpoint tells); a width the architecture
    cannot have is one line naming ``--embed_dim``."""
    if args.arch == "auto":
        return
    spec = get_spec(args.arch)
    if args.embed_dim is None:
        if from_checkpoint:
            return
        args.embed_dim = spec.default_width
    try:
        spec.check_width(args.embed_dim)
    except UserError as e:
        raise as_flag(e, {"width": "--embed_dim"}) from None


def add_seed_argument(p, default: int) -> None:
    p.add_argument("--random_seed", type=int, default=default, help="seed of every RNG (rank r uses seed + r)")


def add_dist_timeout_argument(p) -> None:
    """``--dist_timeout``: how long the processes of a run wait for each other (lowlight_test.py, train.py)."""
    p.add_argument("--dist_timeout", type=positive(float), default=DIST_TIMEOUT_S, metavar="SECONDS",
                   help="with several processes (torchrun, or WORLD_SIZE in the environment): give up when they "
                        "have not all joined after this many seconds (also the limit of one collective step)")


def add_workers_argument(p, default: int = 2) -> None:
    p.add_argument("--num_workers", type=at_least(0), default=default, help="data-loading processes")


# ------------------------------------------------------------------------------------------ run options
@dataclass(frozen=True)
class RunOptions:
    """How a run executes, resolved once from the flags: the device, the world size and this process's
    rank (set when the process group is joined), how long to wait for the others (``dist_timeout``), the
    seed, data-loader workers, mixed precision (``amp``: off/bf16/fp16) and channels-last
    (``on``/``off``/``auto``: the architecture's default)."""

    device: torch.device
    world: int = 1
    rank: int = 0
    seed: int = 0
    workers: int = 0
    amp: str = "off"
    channels_last: str = "auto"
    log_every: int = 10
    dist_timeout: float = DIST_TIMEOUT_S

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RunOptions":
        """From the shared run flags (``--device``, ``--random_seed``, ``--num_workers``, ``--amp``,
        ``--channels_last``, ``--log_every``); one-line errors name the flags."""
        device = resolve_device_flag(args.device)
        if args.amp == "fp16" and device.type != "cuda":
            raise UserError("--amp fp16 needs a CUDA device; on the CPU use --amp bf16")
        return cls(device=device, world=world_size(), seed=args.random_seed, workers=args.num_workers,
                   amp=args.amp, channels_last=args.channels_last, log_every=args.log_every,
                   dist_timeout=getattr(args, "dist_timeout", DIST_TIMEOUT_S))  # train.py declares it

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return AMP_DTYPES[self.amp]

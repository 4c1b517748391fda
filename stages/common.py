"""The stage toolkit: what every training stage (``scl``, ``enhancer``, ``memory``) does the same way; the
one loop (:mod:`stages.loop`) drives it.

* :func:`check_flags` — flag ranges, one line naming the flag;
* :class:`RunFolder` / :func:`resolve_resume` — where a stage writes; ``--resume [PATH]`` / ``--overwrite``;
* :class:`Session` — one run: the checkpoint to resume (:meth:`Session.read_state`), :meth:`Session.open`
  (process group, seeds, folders, logs, stale temporary files, handlers of the stop signals),
  :meth:`Session.batches` (resumable batch order; workers leave the stop signals to the main process),
  :meth:`Session.autocast`, :meth:`Session.step` (AMP, gradient clipping, NaN/Inf guard), :meth:`Session.save`
  (atomic, never a non-finite model; a full disk is one line with the space needed).

The run options (device, ranks, seed, workers, precision) are resolved once in :class:`utils.options.RunOptions`;
the checkpoint layout is :mod:`utils.training_checkpoint`'s.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import signal
from dataclasses import dataclass, replace
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from stages.batches import STOP_SIGNALS, SeededItems, ignore_stop_signals, iterate_batches
from stages.runlog import ConsoleHandler, LogFile, RunLogger, cannot_write, log
from stages.state import nonfinite_tensor, read_file, seed_everything
from network.registry import get_spec
from utils.checkpoint import atomic_save, payload_bytes
from utils.device import init_distributed, is_primary
from utils.errors import UserError
from utils.fs import TMP_GLOB, atomic_write
from utils.lock import RunLock, check_free
from utils.options import AMP_DTYPES, RunOptions, add_device_argument, at_least
from utils.training_checkpoint import checkpoint_stage

# Files a run writes in its folder besides its checkpoints (removed by --overwrite, and only these).
RUN_FILES = ("args.json", "train.log", "losses.jsonl", "tb", "loss_curves.png", "memory_psnr.png")
TMP_PATTERN = TMP_GLOB + ".pth"  # what utils.checkpoint.atomic_save leaves behind when killed mid-write


class Interrupted(Exception):
    """A stop signal (SIGINT, SIGTERM, SIGHUP, SIGUSR1) stopped the run after a resumable checkpoint was written;
    ``code`` = 128 + signal (130, 143, 129, 138)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class NonFiniteError(UserError):
    """A loss term, the gradient or the weights became NaN/Inf; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------------------------- flags
def add_run_arguments(g: argparse._ArgumentGroup, log_every: int = 10) -> None:
    """The flags every stage shares: resume/overwrite, device, AMP, logging, visdom."""
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                   help="continue a run: no value = this run's latest checkpoint (a fresh start when there is "
                        "none yet), or the training checkpoint PATH; default: not given, a new run (refused in a folder "
                        "that holds one)")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh in a folder that holds a run: deletes the files this stage writes there "
                        "(checkpoints, logs), nothing else")
    add_device_argument(g)
    g.add_argument("--amp", default="off", choices=sorted(AMP_DTYPES),
                   help="mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA, with gradient scaling)")
    g.add_argument("--channels_last", default="auto", choices=["auto", "on", "off"],
                   help="channels_last tensors (faster convolutions); auto: on for DCE-Net, off for EMNet")
    g.add_argument("--save_every_min", type=at_least(0, float), default=10.0, metavar="M",
                   help="also write the resumable checkpoint (alone, atomically) once M minutes have passed since "
                        "the last save, so a kill -9 or a power cut loses at most M minutes; 0: off")
    g.add_argument("--log_every", type=int, default=log_every,
                   help="record the losses (memory stage: match/write counts) every N iterations")
    g.add_argument("--enable_vis", action="store_true", help="plot losses to a visdom server")
    g.add_argument("--vis_port", type=int, default=28333)
    g.add_argument("--vis_env", default="main")


def check_flags(args: argparse.Namespace, at_least: dict[str, float] | None = None,
                positive: tuple[str, ...] = (), at_most: dict[str, float] | None = None) -> None:
    """One-line :class:`UserError` for the first flag out of range (``--name value: must be ...``)."""
    rules = [(k, lambda v, lo=lo: v >= lo, f"an integer >= {lo:g}" if isinstance(lo, int) else f">= {lo:g}")
             for k, lo in {"log_every": 1, "num_workers": 0, **(at_least or {})}.items()]
    rules += [(k, lambda v: v > 0, "> 0") for k in positive]
    rules += [(k, lambda v, hi=hi: v <= hi, f"<= {hi:g}") for k, hi in (at_most or {}).items()]
    for name, ok, what in rules:
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and ok(value)):
            raise UserError(f"--{name} {value:g}: must be {what}")
    if not 0 < getattr(args, "vis_port", 1) < 65536:
        raise UserError(f"--vis_port {args.vis_port}: must be a port number 1..65535")


# --------------------------------------------------------------------------------------- run folder
@dataclass
class RunFolder:
    """Where a stage writes: ``run_dir`` (logs), ``ckpt_dir`` and its checkpoint file patterns.

    ``latest`` names the resumable checkpoint inside ``ckpt_dir``; ``checkpoints`` the glob patterns of
    every checkpoint the stage writes there (``--overwrite`` deletes those and :data:`RUN_FILES`).
    """

    stage: str
    run_dir: str
    ckpt_dir: str
    latest: str
    checkpoints: tuple[str, ...]

    @property
    def latest_path(self) -> str:
        return os.path.join(self.ckpt_dir, self.latest)

    def checkpoint_files(self) -> list[str]:
        return [p for pat in self.checkpoints for p in glob.glob(os.path.join(glob.escape(self.ckpt_dir), pat))]

    def holds_run(self) -> bool:
        """True when there is work to lose: a checkpoint, or logged losses (a start that failed is not a run)."""
        losses = os.path.join(self.run_dir, "losses.jsonl")
        return bool(self.checkpoint_files()) or (os.path.isfile(losses) and os.path.getsize(losses) > 0)

    def outputs(self) -> list[str]:
        """The files and folders of an earlier run of this stage that exist now."""
        found = [p for pat in RUN_FILES for p in glob.glob(os.path.join(glob.escape(self.run_dir), pat))]
        return sorted(set(found + self.checkpoint_files()))


def resolve_resume(args: argparse.Namespace, folder: RunFolder) -> str | None:
    """The checkpoint to resume from, or None; refuses to start over an earlier run (nothing is created)."""
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other: pass one of them")
    if os.path.exists(folder.run_dir) and not os.path.isdir(folder.run_dir):
        raise UserError(f"{folder.run_dir} is a file, not a folder: choose another output folder")
    check_free(folder.run_dir)  # a run in progress there (Session.open's lock would refuse it later)
    if args.resume in ("auto", ""):
        if os.path.isfile(folder.latest_path):
            return folder.latest_path
        if others := folder.checkpoint_files():  # a fresh start would overwrite them
            raise UserError(f"--resume: {folder.latest_path} not found but {folder.ckpt_dir} holds "
                            f"{os.path.basename(others[0])}: pass --resume PATH, or --overwrite to start afresh")
        return None
    if args.resume:
        if not os.path.isfile(args.resume):
            raise UserError(f"--resume {args.resume}: file not found (pass --resume alone to continue "
                            f"{folder.latest_path} when it exists)")
        return args.resume
    earlier = folder.outputs()
    if folder.holds_run() and not args.overwrite:
        shown = ", ".join(os.path.relpath(p, folder.run_dir) for p in earlier[:3])
        raise UserError(f"{folder.run_dir} already holds a run ({shown}{', ...' if len(earlier) > 3 else ''}): "
                        f"pass --resume to continue it, --overwrite to start afresh, or choose another folder")
    return None


# ------------------------------------------------------------------------------------------ session
class Session:
    """One training run of one stage: folder, resume, device and ranks, AMP, logging, guards, signals.

    Building it checks the folder and ``--resume`` and creates nothing; :meth:`open` creates the folder.
    """

    lock: RunLock | None = None  # the run folder's lock (rank 0), from open to close

    def __init__(self, args: argparse.Namespace, folder: RunFolder, options: RunOptions | None = None) -> None:
        self.args, self.folder = args, folder
        self.resume = resolve_resume(args, folder)
        self.options = options or RunOptions.from_args(args)
        self.device = self.options.device
        self.scaler = torch.amp.GradScaler(self.device.type) if self.options.amp == "fp16" else None
        self.stop_signal: int | None = None
        self.last_saved: tuple[str, int] | None = None
        self.logger: RunLogger | None = None
        self.vis = None
        self._old_handlers: dict[int, Any] = {}
        self.changed: dict[str, tuple[Any, Any]] = {}

    @property
    def rank(self) -> int:
        return self.options.rank

    @property
    def world(self) -> int:
        return self.options.world

    # --- resume
    def read_state(self, frozen: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The checkpoint to resume (CPU tensors), or None for a fresh start.

        Refused with one line: a file another stage wrote, weights without training state, or changed
        values of the ``frozen`` flags (they define the saved model). Other changed flags are applied:
        :meth:`open` logs them and ``args.json`` records the values in use.
        """
        if self.resume is None:
            return None
        ck = read_file(self.resume, "--resume")
        stage = checkpoint_stage(ck)
        if stage is None:
            raise UserError(f"--resume {self.resume} holds no training state (optimiser, iteration): it cannot "
                            f"resume training; start a new run" + (" with --init_weights" if self.folder.stage
                                                                    == "enhancer" else ""))
        if stage != self.folder.stage:
            raise UserError(f"--resume {self.resume} was written by the {stage} stage; the {self.folder.stage} "
                            f"stage resumes only its own checkpoints ({self.folder.latest})")
        saved = ck.get("args") or {}
        differ = [f"--{k} {saved[k]} -> {getattr(self.args, k)}" for k in frozen
                  if k in saved and saved[k] != getattr(self.args, k)]
        if differ:
            raise UserError(f"cannot resume {self.resume} with changed {'; '.join(differ)}: these define the saved "
                            f"model; use the saved values, or start a new run")
        self.changed = {k: (saved[k], v) for k, v in vars(self.args).items()
                        if k in saved and saved[k] != v and k not in ("resume", "overwrite", "stage")}
        return ck

    # --- set-up
    def open(self, start_step: int = 0) -> "Session":
        """Join the process group, seed ``base + rank``, create the folders (rank 0), remove stale
        temporary files, delete an earlier run with ``--overwrite``, start logging, catch the stop signals."""
        import logging

        args, folder = self.args, self.folder
        rank, world = init_distributed(self.device, self.options.dist_timeout)
        self.options = replace(self.options, rank=rank, world=world)
        seed_everything(self.options.seed + rank)
        log.handlers.clear()
        log.propagate = False
        log.setLevel(logging.INFO if is_primary() else logging.WARNING)
        if is_primary():
            self.lock = RunLock(folder.run_dir).acquire()  # one run per folder: a second one stops here
            self._prepare_folders()
            fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
            for handler in (ConsoleHandler(), LogFile(os.path.join(folder.run_dir, "train.log"))):
                handler.setFormatter(fmt)
                log.addHandler(handler)
            _write_json(os.path.join(folder.run_dir, "args.json"), vars(args))
            if self.lock.recovered:
                log.warning(self.lock.recovered)
        log.info("%s stage: device %s, world size %d, amp %s", folder.stage, self.device, world, self.options.amp)
        for k, (old, new) in self.changed.items():
            log.info("resumed with --%s %s (was %s)", k, new, old)
        if args.enable_vis and is_primary():
            from stages.vis import Visualizer

            self.vis = Visualizer(args.vis_port, args.vis_env)
        self.logger = RunLogger(folder.run_dir, start_step, vis=self.vis)
        for sig in STOP_SIGNALS:
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        return self

    def _prepare_folders(self) -> None:
        folder = self.folder
        for d in (folder.run_dir, folder.ckpt_dir):
            try:
                os.makedirs(d, exist_ok=True)
                probe = os.path.join(d, ".write-test")
                open(probe, "w").close()
                os.remove(probe)
            except OSError as e:
                raise UserError(f"cannot write in {d} ({e.strerror}); choose another folder") from None
        if self.args.overwrite and not self.resume:
            for p in folder.outputs():
                if os.path.isdir(p):
                    import shutil

                    shutil.rmtree(p)
                else:
                    os.remove(p)
        for d in {folder.run_dir, folder.ckpt_dir}:
            for tmp in glob.glob(os.path.join(glob.escape(d), TMP_PATTERN)):
                os.remove(tmp)  # left by a save that was killed mid-write

    def _on_signal(self, signum: int, frame) -> None:
        """Note the first stop signal; the loop saves at the next step boundary. A second Ctrl-C quits at once;
        a repeated SIGTERM/SIGHUP/SIGUSR1 (torchrun forwards the group's SIGTERM; Slurm's USR1 warning is
        followed by SIGTERM) leaves the save to finish."""
        name = signal.Signals(signum).name
        if self.stop_signal is not None:
            if signum == signal.SIGINT:  # a second Ctrl-C: stop now, without saving
                signal.signal(signum, signal.SIG_DFL)
                raise KeyboardInterrupt
            if is_primary():
                log.warning("%s: already stopping, the resumable checkpoint is being written", name)
            return
        self.stop_signal = signum
        again = " (Ctrl-C again to quit at once)" if signum == signal.SIGINT else ""
        if is_primary():  # under torchrun every process gets the group's signal: one notice
            log.warning("%s: finishing this step, then saving a resumable checkpoint%s", name, again)

    def close(self, plot: str | None = None, prefix: str = "loss") -> None:
        """Restore the signal handlers, close the logs, draw the loss curves to ``run_dir/plot``."""
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        if self.lock is not None:
            self.lock.release()
        if self.logger is not None:
            self.logger.close(os.path.join(self.folder.run_dir, plot) if plot else None, prefix)

    # --- training
    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for ``--amp bf16|fp16`` (a no-op for ``off``)."""
        dtype = self.options.amp_dtype
        return torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def memory_format(self, arch: str) -> torch.memory_format:
        """``channels_last`` when asked, or (``auto``) where the architecture's record says so (DCE-Net, whose
        layers are all convolutions)."""
        mode = self.options.channels_last
        on = mode == "on" or (mode == "auto" and get_spec(arch).channels_last)
        return torch.channels_last if on else torch.contiguous_format

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` on the device, in DistributedDataParallel when there are several processes."""
        model.to(self.device)
        if self.world > 1:
            ids = [self.device] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return model

    def batches(self, dataset, batch_size: int, start: int, total: int,
                min_batch: int = 1) -> Iterator[tuple[int, int, Any]]:
        """``(iteration, epoch, batch)`` from ``start`` to ``total`` (see :func:`iterate_batches`), this
        process's share, in an order that depends on the seed alone."""
        o = self.options
        seeded = SeededItems(dataset, o.seed)

        def loader(plan):
            return torch.utils.data.DataLoader(seeded, batch_sampler=plan, num_workers=o.workers,
                                               pin_memory=self.device.type == "cuda",
                                               worker_init_fn=ignore_stop_signals if o.workers else None)

        yield from iterate_batches(loader, len(dataset), batch_size, o.seed, start, total, o.rank, o.world, min_batch)

    def stop_requested(self) -> bool:
        """True when a stop signal arrived here or (under torchrun) on any other process."""
        flag = torch.tensor([float(self.stop_signal or 0)])
        if self.world > 1:
            flag = flag.to(self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if self.stop_signal is None and flag.item():
                self.stop_signal = int(flag.item())
        return bool(flag.item())

    def step(self, it: int, terms: dict[str, torch.Tensor], model: nn.Module, optimizer,
             clip: float | None = None) -> torch.Tensor:
        """Backward of ``sum(terms)``, optional gradient clipping, optimiser step; returns the detached total.

        Stops with :class:`NonFiniteError` (naming the iteration, 1-based, and the term) before the
        optimiser step when a term or the gradient is NaN/Inf, so the weights stay finite.
        """
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.scaler:
            self.scaler.unscale_(optimizer)
        params = [p for p in model.parameters() if p.grad is not None]
        norm = nn.utils.clip_grad_norm_(params, clip) if clip else nn.utils.get_total_norm([p.grad for p in params])
        flags = torch.stack([torch.isfinite(t.detach()).all() for t in terms.values()] + [torch.isfinite(norm)])
        if self.world > 1:  # every process stops together, with the same verdict
            flags = flags.float()
            dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        bad = [k for k, ok in zip(list(terms) + ["gradient"], flags.bool().tolist()) if not ok]
        if bad and not (self.scaler and bad == ["gradient"]):  # fp16: the scaler skips inf gradients
            kept = (f"last good checkpoint {self.last_saved[0]} (iteration {self.last_saved[1]}) kept"
                    if self.last_saved else "no checkpoint was written yet")
            names = [b for b in bad if b != "gradient"]
            what = ("the gradient is" if not names else f"loss term {names[0]} is" if len(names) == 1
                    else f"loss terms {', '.join(names)} are")
            raise NonFiniteError(f"iteration {it + 1}: {what} NaN/Inf; stopped before the update, {kept}; "
                                 f"lower the learning rate or check the data")
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        return loss.detach()

    def log(self, step: int, values: dict[str, Any], prefix: str = "loss") -> None:
        """Record floats or 0-d tensors (rank 0)."""
        self.logger.log(step, {k: float(v) for k, v in values.items()}, prefix)

    def save(self, name: str, state: dict[str, Any], iteration: int, resumable: bool = True) -> str:
        """Write ``state`` atomically to ``ckpt_dir/name`` on rank 0; returns the path.

        Refuses (:class:`NonFiniteError`, nothing written) a state holding NaN/Inf weights; a file-system
        fault is one line naming the path (a full disk: and the space needed); an older file stays intact.
        """
        path = os.path.join(self.folder.ckpt_dir, name)
        if not is_primary():
            return path
        bad = nonfinite_tensor({k: v for k, v in state.items() if k not in ("optimizer", "scheduler")})
        if bad:
            kept = f"last good checkpoint {self.last_saved[0]} kept" if self.last_saved else "nothing saved"
            raise NonFiniteError(f"iteration {iteration}: {bad} holds NaN/Inf; {path} not written, {kept}")
        try:
            atomic_save(state, path)
        except OSError as e:
            raise cannot_write(path, e, payload_bytes(state)) from None
        if resumable:
            self.last_saved = (path, iteration)
        return path


def _write_json(path: str, obj: dict[str, Any]) -> None:
    try:
        with atomic_write(path, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
    except OSError as e:
        raise cannot_write(path, e) from None


def lr_factor(epoch: int, nepoch: int, warmup_epochs: int, lr_min_ratio: float) -> float:
    """Learning-rate multiplier of ``epoch`` (0-based; the SCL stage passes iterations): linear warm-up over
    ``warmup_epochs``, then cosine from 1 down to ``lr_min_ratio`` at ``nepoch``."""
    if warmup_epochs and epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    span = max(1, nepoch - warmup_epochs)
    t = min(1.0, (epoch - warmup_epochs) / span)
    return lr_min_ratio + (1 - lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

"""The one training loop: every stage is a :class:`Stage` object; :func:`run_stage` decides when to train,
log, validate, keep the best checkpoint, snapshot, save the resumable ``latest`` and stop (BasicSR's
``train_pipeline`` over its model classes; timm's ``CheckpointSaver`` owns the save decisions).

Order of one run:

1. ``Session(args, stage.folder)`` (run folder and ``--resume`` checked, nothing created);
2. :meth:`Stage.prepare` — the data; the checkpoint to resume (:meth:`Session.read_state`, refused when
   another stage wrote it or a flag of ``stage.frozen`` changed) and its step
   (:func:`utils.training_checkpoint.resume_step`); :meth:`Stage.load_fixed` — losses, frozen networks:
   everything that can fail does so before a folder exists;
3. :meth:`Session.open` (process group, seeds, folders, logs, signals), :meth:`Stage.build` (networks,
   optimiser: seeded), :meth:`Stage.load_state` when resuming, then the model is wrapped for DDP;
4. per step: :meth:`Stage.train_step` returns loss terms that the loop optimises through
   :meth:`Session.step` (NaN/Inf guard) or None (no gradient step); then, each at its own steps: a loss
   record (``--log_every`` and the last step), :meth:`Stage.validate` (``val_per_epoch`` points per epoch;
   a better ``best_metric`` writes ``stage.best``), :meth:`Stage.end_epoch`, a save (epoch ends when
   ``save_each_epoch``, every ``snapshot_every`` steps, the last step: :meth:`Stage.snapshots` then
   ``stage.latest``; besides, ``latest`` alone once ``--save_every_min`` minutes have passed since the last
   save, so a kill -9 or a power cut loses at most that much), and on a stop signal (SIGINT, SIGTERM,
   SIGHUP, SIGUSR1) a resumable ``latest`` and :class:`Interrupted`.
"""
from __future__ import annotations

import argparse
import math
import signal
from time import monotonic
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from stages.batches import batches_per_epoch
from stages.common import Interrupted, RunFolder, Session
from stages.runlog import log
from utils.device import is_primary
from utils.errors import UserError
from utils.training_checkpoint import resume_step

BEST_KEY = "best_psnr"  # the checkpoint field of the best validation metric (the reference's name)


class Stage:
    """One training stage. Subclasses set the attributes and implement the methods the loop calls.

    Attributes: ``name``; ``folder`` (:class:`RunFolder`); ``frozen`` (flags a resumed run must keep);
    ``train_set``, ``batch_size``, ``min_batch`` (smaller batches are dropped); ``model``/``optimizer``/
    ``clip`` (None for a stage without a gradient step); ``best`` (file of the best validation metric,
    or None: no best file), ``best_resumable``; ``val_per_epoch``, ``val_every``, ``validate_everywhere`` (every process validates:
    collectives inside; else rank 0 alone); ``save_each_epoch``, ``snapshot_every`` (0: never);
    ``plot`` (``(png, record prefix)`` drawn at the end).
    """

    name = ""
    frozen: tuple[str, ...] = ()
    min_batch = 1
    model: nn.Module | None = None
    optimizer: Any = None
    clip: float | None = None
    best: str | None = None
    best_resumable = True
    val_per_epoch = 0
    val_every = 0  # also validate every N steps and after the last (0: only the val_per_epoch points)
    validate_everywhere = False
    save_each_epoch = True
    snapshot_every = 0
    plot = ("loss_curves.png", "loss")
    length_flag = "nepoch"  # the flag that sets the run's length (total_steps)

    def __init__(self, args: argparse.Namespace, folder: RunFolder) -> None:
        self.args, self.folder = args, folder
        self.session: Session | None = None
        self.train_set = None
        self.batch_size = args.batch_size
        self.per_epoch = 0  # batches per epoch and process, set by the loop

    # --- set-up
    def prepare(self, session: Session) -> None:
        """Load and check the data (before the run folder exists)."""
        self.session = session

    def load_fixed(self) -> None:
        """Load the losses and frozen networks, after the checkpoint to resume is accepted (before the run
        folder exists; no seeded RNG use)."""

    def build(self) -> None:
        """Build the networks and optimiser after the seeds are set (the session is open)."""

    def load_state(self, ck: dict[str, Any]) -> None:
        """Restore what :meth:`state` saved (weights, optimiser, RNGs, stage fields)."""

    def total_steps(self, per_epoch: int) -> int:
        return self.args.nepoch * per_epoch

    def record_step(self, step: int, per_epoch: int) -> int:
        """The step of the loss-log records (validation records of the memory stage count epochs)."""
        return step

    # --- training
    def train_step(self, batch: Any, it: int) -> dict[str, torch.Tensor] | None:
        """The loss terms of batch ``it`` (0-based), or None when the stage takes no gradient step."""
        raise NotImplementedError

    def logged(self, step: int) -> None:
        """Called at the steps the loop records the losses (for extra reports)."""

    def validate(self, step: int) -> dict[str, float]:
        """Validation values, the first the metric a better value of which writes ``best``."""
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        """Called after the last step of ``epoch`` (0-based), before the save."""

    # --- checkpoints
    def state(self, step: int, epoch: int) -> dict[str, Any]:
        """The resumable checkpoint after ``step`` steps (``epoch`` epochs), written as ``latest``."""
        raise NotImplementedError

    def best_state(self, step: int, epoch: int) -> dict[str, Any]:
        """What ``best`` holds (default: the resumable checkpoint)."""
        return self.state(step, epoch)

    def snapshots(self, step: int) -> dict[str, dict[str, Any]]:
        """Extra files written (not resumable) before ``latest`` at each save."""
        return {}

    def finish(self, best: float) -> None:
        """Called after the last step."""


def validation_points(per_epoch: int, val_time: int) -> set[int]:
    """The 1-based batch numbers within an epoch after which a stage validating ``val_time`` times per epoch
    validates (the enhancer stage: ``--val_time``; the memory stage: once, after the last batch).

    As the reference's ``(i + 1) % (len(loader) // val_time) == 0 and i > 0`` (i 0-based): every multiple
    of ``step = per_epoch // val_time``, batch 1 excluded, so 173 batches and ``val_time`` 2 give {86, 172}
    and ``val_time`` can give more points than asked (10 batches, 4: step 2, five points). Where the
    reference fails, a defined behaviour: fewer batches than ``val_time`` (a modulo by zero there) acts as
    step 1, and a one-batch epoch (never validated there) validates after its batch.
    """
    if per_epoch < 1 or val_time < 1:
        raise ValueError(f"per_epoch and val_time must be >= 1, got {per_epoch} and {val_time}")
    step = max(1, per_epoch // val_time)
    return set(range(max(step, 2), per_epoch + 1, step)) or {per_epoch}


class Loop:
    """Drives one :class:`Stage` in one :class:`Session` from ``start`` to ``total`` steps."""

    def __init__(self, stage: Stage, session: Session, per_epoch: int, log_every: int,
                 save_every_min: float = 0) -> None:
        self.stage, self.session, self.per_epoch, self.log_every = stage, session, per_epoch, log_every
        self.save_every_s = 60 * save_every_min  # 0: no saves by time
        self.saved_at = monotonic()
        self.total = stage.total_steps(per_epoch)
        self.best = -math.inf
        self.saved_step: int | None = None
        self.val_at = validation_points(per_epoch, stage.val_per_epoch) if stage.val_per_epoch else set()

    def run(self, start: int) -> None:
        st, s = self.stage, self.session
        if st.model is not None:
            st.model.train()
        self.saved_at = monotonic()
        with tqdm(total=self.total, initial=start, desc=st.name, disable=not is_primary(),
                  dynamic_ncols=True) as self.bar:
            for it, epoch, batch in s.batches(st.train_set, st.batch_size, start, self.total, st.min_batch):
                self.after_step(it + 1, epoch, self.train(batch, it))

    def train(self, batch: Any, it: int) -> dict[str, torch.Tensor] | None:
        st = self.stage
        terms = st.train_step(batch, it)
        if terms is None:
            return None
        loss = self.session.step(it, terms, st.model, st.optimizer, clip=st.clip)
        return {"total": loss, **{k: v.detach() for k, v in terms.items()}}

    def after_step(self, step: int, epoch: int, values: dict[str, torch.Tensor] | None) -> None:
        st = self.stage
        self.bar.update(1)
        if step % self.log_every == 0 or step == self.total:
            if values is not None:
                self.record(step, values)
            st.logged(step)
        if self.validation_due(step, epoch) and (st.validate_everywhere or is_primary()):
            self.validate(step)
        epoch_done = step % self.per_epoch == 0
        if epoch_done:
            st.end_epoch(epoch)
        if (epoch_done and st.save_each_epoch) or step == self.total or \
                (st.snapshot_every and step % st.snapshot_every == 0):
            self.save(step, snapshots=True)
        elif self.save_due():
            self.save(step)
        if self.session.stop_requested():
            self.stop(step)

    def validation_due(self, step: int, epoch: int) -> bool:
        every = self.stage.val_every
        return step - epoch * self.per_epoch in self.val_at or bool(every) and (step % every == 0 or step == self.total)

    def record(self, step: int, values: dict[str, torch.Tensor]) -> None:
        """The loss terms to losses.jsonl and TensorBoard, a line in train.log (and on the console, above the
        progress bar), the learning rate beside them."""
        postfix = {"loss": f"{values['total'].item():.4f}"}
        lr = None
        if self.stage.optimizer is not None:
            lr = self.stage.optimizer.param_groups[0]["lr"]
            postfix["lr"] = f"{lr:.2e}"
        self.bar.set_postfix(**postfix)
        self.session.log(step, values)
        if lr is not None:
            self.session.log(step, {"lr": lr}, prefix="train")
        terms = ", ".join(f"{k} {float(v):.4g}" for k, v in values.items() if k != "total")
        log.info("iteration %d: loss %.4f (%s)%s", step, float(values["total"]), terms,
                 f", lr {lr:.3g}" if lr is not None else "")

    def validate(self, step: int) -> None:
        st, s = self.stage, self.session
        values = st.validate(step)
        metric_name, metric = next(iter(values.items()))
        s.log(st.record_step(step, self.per_epoch), values, prefix="val")
        figures = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
        if st.best is None:  # no best checkpoint (the SCL stage): the figures alone
            log.info("step %d: val %s", step, figures)
            self.bar.set_postfix(**{metric_name: f"{metric:.4g}"})
            return
        if math.isfinite(metric) and metric > self.best:
            self.best = metric
            s.save(st.best, self.with_best(st.best_state(step, math.ceil(step / self.per_epoch)), st.best_resumable),
                   step, resumable=st.best_resumable)
        log.info("epoch %d step %d: val %s (best %s %.2f)", math.ceil(step / self.per_epoch), step, figures,
                 metric_name, self.best)
        self.bar.set_postfix(**{metric_name: f"{metric:.2f}", "best": f"{self.best:.2f}"})

    def with_best(self, state: dict[str, Any], resumable: bool = True) -> dict[str, Any]:
        """A resumable state of a stage that keeps a best checkpoint carries the best metric so far."""
        return {**state, BEST_KEY: self.best} if resumable and self.stage.best else state

    def save_due(self) -> bool:
        """``--save_every_min`` minutes have passed since ``latest`` was last written (or the run started).
        Rank 0 decides alone: it alone writes, and a stage's state holds no collective."""
        return bool(self.save_every_s) and is_primary() and monotonic() - self.saved_at >= self.save_every_s

    def save(self, step: int, snapshots: bool = False) -> None:
        st = self.stage
        if snapshots:
            for name, state in st.snapshots(step).items():
                self.session.save(name, state, step, resumable=False)
        self.session.save(st.folder.latest, self.with_best(st.state(step, step // self.per_epoch)), step)
        self.saved_step, self.saved_at = step, monotonic()

    def stop(self, step: int) -> None:
        """A stop signal arrived (on any process): a resumable checkpoint, then :class:`Interrupted`."""
        s = self.session
        if self.saved_step != step:
            self.save(step)
        sig = int(s.stop_signal or signal.SIGTERM)
        where = f"; resumable checkpoint {s.last_saved[0]}" if s.last_saved else ""
        raise Interrupted(f"{signal.Signals(sig).name}: stopped after iteration {step}{where}; continue with --resume",
                          128 + sig)


def run_stage(stage: Stage, args: argparse.Namespace) -> None:
    """Train ``stage`` from the flags ``args`` (see the module docstring for the order of events)."""
    session = Session(args, stage.folder)
    stage.prepare(session)
    ck = session.read_state(frozen=stage.frozen)
    stage.load_fixed()
    per_epoch = batches_per_epoch(len(stage.train_set), stage.batch_size, world=session.options.world,
                                  min_batch=stage.min_batch)
    stage.per_epoch = per_epoch
    loop = Loop(stage, session, per_epoch, args.log_every, args.save_every_min)
    start = resume_step(ck, per_epoch) if ck else 0
    if start > loop.total:  # before the folder is touched: a finished run's files stay as they are
        flag = stage.length_flag
        raise UserError(f"--resume {session.resume} is at iteration {start}, past the end of this run (--{flag} "
                        f"{getattr(args, flag)}: iteration {loop.total}): nothing to do; pass a larger --{flag}")
    session.open(stage.record_step(start, per_epoch))
    stage.build()
    if ck:
        stage.load_state(ck)
        loop.best = float(ck.get(BEST_KEY, -math.inf))
        log.info("resumed %s at iteration %d, epoch %d%s", session.resume, start, start // per_epoch,
                 f" (best {loop.best:.2f})" if stage.best else "")
    if stage.model is not None:
        stage.model = session.wrap(stage.model)
    loop.run(start)
    session.close(*stage.plot)
    stage.finish(loop.best)

"""EMNet stage 1 (SPEC §5): supervised enhancer training on paired data (LOL-v1 / LOL-v2).

loss = ssim_lambda·(1 − SSIM) + lpips_lambda·LPIPS(AlexNet) + l1_lambda·L1 + l2_lambda·L2 on the output
clamped to [0, 1] (as the reference: SSIM is piq's, LPIPS gets the [0, 1] images unless --lpips_normalize);
AdamW, linear warm-up then cosine to 1e-6 (per epoch), random crops with the 8 rotations/flips,
full-image validation ``--val_time`` times per epoch, best checkpoint by float PSNR (data range 1, as the
reference) and latest checkpoint under ``<save_dir>/<env>/models/``, weights under ``state_dict`` with the
reference's ``module.`` prefix. Works for any enhancer of the factory (``--arch emnet`` or ``dce``).
"""
from __future__ import annotations

import argparse

import torch

from lowlight_model import build_enhancer, enhance
from network.registry import get_spec
from losses import SupervisedLoss
from evaluation import ENHANCER_VALIDATION, evaluate, first_outputs, mean_psnr_ssim
from stages.common import RunFolder, Session, add_run_arguments, check_flags, lr_factor
from stages.loop import Stage, run_stage
from stages.paired_data import add_common_arguments, check_fits, check_paired_arguments, load_pairs, run_dirs
from stages.runlog import log
from stages.state import read_init_weights, restore, training_state
from utils.checkpoint import load_state
from utils.device import unwrap
from utils.errors import UserError
from utils.options import at_least, positive

CHECKPOINTS = ("model_latest.pth", "model_best.pth")
LAMBDAS = ("ssim", "lpips", "l1", "l2")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, batch_size=4, nepoch=800)
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", default="adamw", choices=["adamw", "adam"])
    g.add_argument("--lr_initial", type=positive(), default=2e-4)
    g.add_argument("--lr_min", type=at_least(0.0, float), default=1e-6, help="end of the cosine schedule")
    g.add_argument("--weight_decay", type=at_least(0.0, float), default=0.0)
    g.add_argument("--warmup", action="store_true", default=True, help="linear warm-up before the cosine schedule")
    g.add_argument("--no_warmup", dest="warmup", action="store_false")
    g.add_argument("--warmup_epochs", type=at_least(0), default=3)
    g.add_argument("--ssim_lambda", type=at_least(0.0, float), default=1.0)
    g.add_argument("--lpips_lambda", type=at_least(0.0, float), default=1.0)
    g.add_argument("--l1_lambda", type=at_least(0.0, float), default=0.0)
    g.add_argument("--l2_lambda", type=at_least(0.0, float), default=0.0)
    g.add_argument("--lpips_normalize", action="store_true",
                   help="correction: map images to [-1,1] before LPIPS, the range it expects (the reference "
                        "feeds the [0,1] images unscaled)")
    g.add_argument("--val_time", type=at_least(1), default=2, help="validations per epoch")
    g.add_argument("--init_weights", default=None, help="start from these enhancer weights (fine-tuning; default: none, a random initialisation)")
    add_run_arguments(p.add_argument_group("run control"), log_every=1)


def check_arguments(args: argparse.Namespace) -> None:
    """Every flag in range (one line naming the flag) before anything is created or loaded."""
    check_paired_arguments(args)
    check_flags(args, at_most={"lr_min": args.lr_initial})  # single flags: their validators
    if args.warmup and args.warmup_epochs >= args.nepoch:
        raise UserError(f"--warmup_epochs {args.warmup_epochs} leaves no epoch of the cosine schedule within --nepoch "
                        f"{args.nepoch}: lower it below {args.nepoch} (or pass --no_warmup)")
    if not any(getattr(args, f"{k}_lambda") for k in LAMBDAS):
        raise UserError("all loss weights are 0: set --ssim_lambda, --lpips_lambda, --l1_lambda or --l2_lambda")


def _data(args):
    """Training and validation pairs, checked and cached up front; the patch must fit every image."""
    train_set, val_set = load_pairs(args)
    check_fits(train_set, args.train_ps, "--train_ps", "training", args.train_dir, get_spec(args.arch).size_multiple)
    return train_set, val_set


def _criterion(args, device: torch.device) -> SupervisedLoss:
    try:
        return SupervisedLoss(**{k: getattr(args, f"{k}_lambda") for k in SupervisedLoss.TERMS},
                              lpips_normalize=args.lpips_normalize, device=device)
    except UserError as e:
        raise UserError(f"{e} (or pass --lpips_lambda 0 to train without LPIPS)") from None


def _build(args, init: dict | None, device: torch.device, fmt: torch.memory_format):
    """``(model, optimizer, scheduler)``: the enhancer (``init`` weights if given), AdamW/Adam, warm-up + cosine."""
    model = build_enhancer(args.arch, args.embed_dim)
    if init is not None:
        load_state(model, init, args.init_weights)
    model.to(device, memory_format=fmt)
    opt_cls = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=args.lr_initial, betas=(0.9, 0.999), eps=1e-8,
                        weight_decay=args.weight_decay)
    warmup = args.warmup_epochs if args.warmup else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: lr_factor(e, args.nepoch, warmup, args.lr_min / args.lr_initial))
    return model, optimizer, scheduler


def _apply_lr(optimizer, scheduler, args) -> None:
    """Put the current --lr_initial/--weight_decay (and schedule) into a restored optimiser and scheduler."""
    scheduler.base_lrs = [args.lr_initial] * len(optimizer.param_groups)
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in optimizer.param_groups:
        group.update(initial_lr=args.lr_initial, lr=args.lr_initial * factor, weight_decay=args.weight_decay)


VAL_IMAGES = 3  # enhanced validation images shown in TensorBoard at each validation


class EnhancerStage(Stage):
    """Supervised enhancer training: validation ``--val_time`` times per epoch (rank 0), the best by float
    PSNR in ``model_best.pth`` and ``model_latest.pth`` at every epoch end, both resumable."""

    name = "enhancer"
    frozen = ("arch", "embed_dim")
    best = "model_best.pth"

    def __init__(self, args: argparse.Namespace) -> None:
        check_arguments(args)
        run_dir, model_dir = run_dirs(args)
        super().__init__(args, RunFolder("enhancer", run_dir, model_dir, "model_latest.pth", CHECKPOINTS))
        self.val_per_epoch = args.val_time

    def prepare(self, session: Session) -> None:
        super().prepare(session)
        self.train_set, self.val_set = _data(self.args)

    def load_fixed(self) -> None:
        args, session = self.args, self.session
        self.init = read_init_weights(args.init_weights, session.resume)
        self.criterion = _criterion(args, session.device)

    def build(self) -> None:
        log.info("%d training pairs, %d validation pairs; loss %s", len(self.train_set), len(self.val_set),
                 " + ".join(f"{v:g}·{k}" for k, v in self.criterion.w.items()))
        self.fmt = self.session.memory_format(self.args.arch)
        self.model, self.optimizer, self.scheduler = _build(self.args, self.init, self.session.device, self.fmt)

    def load_state(self, ck: dict) -> None:
        """Load a resumed run's state; changed flags apply (and args.json records them)."""
        restore(ck, self.model, self.optimizer, self.scheduler)
        _apply_lr(self.optimizer, self.scheduler, self.args)

    def train_step(self, batch, it: int) -> dict[str, torch.Tensor]:
        low, gt, _, _ = batch
        low, gt = (t.to(self.session.device, memory_format=self.fmt) for t in (low, gt))
        with self.session.autocast():
            return self.criterion(enhance(self.model, low), gt)

    def validate(self, step: int) -> dict[str, float]:
        # the reference picks the best checkpoint by PSNR on the float images
        shown, keep = first_outputs(self.val_set.names, VAL_IMAGES)  # the first few outputs go to TensorBoard
        acc = evaluate(unwrap(self.model).eval(), self.val_set, policy=ENHANCER_VALIDATION, device=self.session.device,
                       each=keep)
        val_psnr, val_ssim = mean_psnr_ssim(acc, "ori")
        self.model.train()
        self.session.logger.images(step, shown)
        return {"psnr": val_psnr, "ssim": val_ssim}

    def end_epoch(self, epoch: int) -> None:
        self.scheduler.step()

    def state(self, step: int, epoch: int) -> dict:
        args = self.args
        return training_state("enhancer", step, epoch, self.model, self.optimizer, self.scheduler, args=args,
                              arch=args.arch, embed_dim=args.embed_dim)

    def finish(self, best: float) -> None:
        log.info("done: best validation PSNR %.2f; checkpoints in %s", best, self.folder.ckpt_dir)


def run(args: argparse.Namespace) -> None:
    run_stage(EnhancerStage(args), args)

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
import math
import os

import torch
from torch import nn
from tqdm import tqdm

from lowlight_model import SIZE_MULTIPLE, build_enhancer, check_crop, enhance
from metrics import build_lpips, lpips_distance, ssim_loss
from stages.common import RunLogger, SeededItems, epoch_batches, log, rng_state, set_rng_state, setup_run
from stages.paired import add_common_arguments, enhance_validation, run_dirs, score
from utils.checkpoint import atomic_save, load_weights, read_checkpoint, require_keys
from utils.device import is_primary, unwrap
from utils.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, batch_size=4, nepoch=800)
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", default="adamw", choices=["adamw", "adam"])
    g.add_argument("--lr_initial", type=float, default=2e-4)
    g.add_argument("--lr_min", type=float, default=1e-6, help="end of the cosine schedule")
    g.add_argument("--weight_decay", type=float, default=0.0)
    g.add_argument("--warmup", action="store_true", default=True, help="linear warm-up before the cosine schedule")
    g.add_argument("--no_warmup", dest="warmup", action="store_false")
    g.add_argument("--warmup_epochs", type=int, default=3)
    g.add_argument("--ssim_lambda", type=float, default=1.0)
    g.add_argument("--lpips_lambda", type=float, default=1.0)
    g.add_argument("--l1_lambda", type=float, default=0.0)
    g.add_argument("--l2_lambda", type=float, default=0.0)
    g.add_argument("--lpips_normalize", action="store_true",
                   help="correction: map images to [-1,1] before LPIPS, the range it expects (the reference "
                        "feeds the [0,1] images unscaled)")
    g.add_argument("--val_time", type=int, default=2, help="validations per epoch")
    g.add_argument("--init_weights", default=None, help="start from these enhancer weights (fine-tuning)")


def lr_factor(epoch: int, nepoch: int, warmup_epochs: int, lr_min_ratio: float) -> float:
    """Learning-rate multiplier of ``epoch`` (0-based): linear warm-up, then cosine down to ``lr_min``."""
    if warmup_epochs and epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    span = max(1, nepoch - warmup_epochs)
    t = min(1.0, (epoch - warmup_epochs) / span)
    return lr_min_ratio + (1 - lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


class SupervisedLoss(nn.Module):
    """Weighted SSIM/LPIPS/L1/L2 terms; returns ``{name: weighted term}``.

    ``forward(y, gt)``: y the raw enhancer output (N,3,H,W), clamped to [0, 1] here as in the reference
    (pixels outside get no gradient); gt in [0, 1]. LPIPS gets [0, 1] images unless ``args.lpips_normalize``.
    """

    def __init__(self, args, device: torch.device) -> None:
        super().__init__()
        weights = {k: getattr(args, f"{k}_lambda") for k in ("ssim", "lpips", "l1", "l2")}
        self.w = {k: v for k, v in weights.items() if v}
        if not self.w:
            raise UserError("all loss weights are 0: set --ssim_lambda, --lpips_lambda, --l1_lambda or --l2_lambda")
        self.lpips, self.lpips_normalize = None, bool(getattr(args, "lpips_normalize", False))
        if "lpips" in self.w:
            try:
                self.lpips = build_lpips(device)
            except UserError as e:
                raise UserError(f"{e} (or pass --lpips_lambda 0 to train without LPIPS)") from None

    def forward(self, y: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        t, y = {}, y.clamp(0, 1)
        if "ssim" in self.w:
            t["ssim"] = self.w["ssim"] * ssim_loss(y, gt)
        if "lpips" in self.w:
            t["lpips"] = self.w["lpips"] * lpips_distance(self.lpips, y, gt, self.lpips_normalize).mean()
        if "l1" in self.w:
            t["l1"] = self.w["l1"] * nn.functional.l1_loss(y, gt)
        if "l2" in self.w:
            t["l2"] = self.w["l2"] * nn.functional.mse_loss(y, gt)
        return t


def run(args: argparse.Namespace) -> None:
    from datasets.lol import PairedDataset

    run_dir, model_dir = run_dirs(args)
    check_crop(args.arch, args.train_ps, "--train_ps")
    device, rank, world = setup_run(args, run_dir)
    train_set = PairedDataset(args.train_dir, patch_size=args.train_ps, augment=True, cache=True)
    val_set = PairedDataset(args.val_dir, cache=True)
    log.info("%d training pairs in %s, %d validation pairs in %s", len(train_set), args.train_dir, len(val_set),
             args.val_dir)
    criterion = SupervisedLoss(args, device)
    log.info("loss: %s", " + ".join(f"{v:g}·{k}" for k, v in criterion.w.items()))

    model = build_enhancer(args.arch, args.embed_dim)
    if args.init_weights:
        load_weights(model, args.init_weights)
    model.to(device)
    opt_cls = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=args.lr_initial, betas=(0.9, 0.999), eps=1e-8,
                        weight_decay=args.weight_decay)
    warmup = args.warmup_epochs if args.warmup else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: lr_factor(e, args.nepoch, warmup, args.lr_min / args.lr_initial))
    start_epoch, best_psnr = 0, -math.inf
    resume = os.path.join(model_dir, "model_latest.pth") if args.resume == "auto" else args.resume
    if resume:
        ck = require_keys(read_checkpoint(resume, map_location="cpu"),
                          ("state_dict", "optimizer", "scheduler", "rng", "epoch"), resume,
                          "a training checkpoint of the enhancer stage (for weights only, use --init_weights)")
        load_weights(model, resume, map_location=device)
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"])
        start_epoch, best_psnr = ck["epoch"], ck.get("best_psnr", -math.inf)
        log.info("resumed %s after epoch %d (best PSNR %.2f)", resume, start_epoch, best_psnr)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    seeded = SeededItems(train_set, args.random_seed)
    step = start_epoch * len(epoch_batches(len(train_set), args.batch_size, args.random_seed, 0, rank, world))
    logger = RunLogger(run_dir, step)
    for epoch in range(start_epoch, args.nepoch):
        batches = epoch_batches(len(train_set), args.batch_size, args.random_seed, epoch, rank, world)
        loader = torch.utils.data.DataLoader(seeded, batch_sampler=[[(epoch, i) for i in b] for b in batches],
                                             num_workers=args.num_workers, pin_memory=device.type == "cuda")
        val_at = {max(1, round(len(batches) * (k + 1) / args.val_time)) for k in range(max(1, args.val_time))}
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.nepoch}", disable=not is_primary(), dynamic_ncols=True)
        for i, (low, gt, _, _) in enumerate(bar, 1):
            low, gt = low.to(device, non_blocking=True), gt.to(device, non_blocking=True)
            terms = criterion(enhance(model, low, SIZE_MULTIPLE[args.arch]), gt)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            logger.log(step, {"total": loss.item(), **{k: v.item() for k, v in terms.items()}})
            if i in val_at and is_primary():
                val_psnr, val_ssim = score(enhance_validation(unwrap(model), val_set, device, args.arch), val_set,
                                           float_psnr=True)
                model.train()
                logger.log(step, {"psnr": val_psnr, "ssim": val_ssim}, prefix="val")
                if val_psnr > best_psnr:
                    best_psnr = val_psnr
                    save(os.path.join(model_dir, "model_best.pth"), model, optimizer, scheduler, epoch + 1, best_psnr, args)
                log.info("epoch %d step %d: val PSNR %.2f SSIM %.4f (best %.2f)", epoch + 1, step, val_psnr,
                         val_ssim, best_psnr)
        scheduler.step()
        if is_primary():
            save(os.path.join(model_dir, "model_latest.pth"), model, optimizer, scheduler, epoch + 1, best_psnr, args)
    logger.close(plot_path=os.path.join(run_dir, "loss_curves.png"))
    log.info("done: best validation PSNR %.2f; checkpoints in %s", best_psnr, model_dir)


def save(path: str, model: nn.Module, optimizer, scheduler, epoch: int, best_psnr: float, args) -> None:
    """The reference layout (``epoch``, ``state_dict`` with DataParallel's ``module.`` prefix, so the
    reference's test script loads it) plus what resuming needs."""
    state = {f"module.{k}": v for k, v in unwrap(model).state_dict().items()}
    atomic_save({"epoch": epoch, "state_dict": state, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "best_psnr": best_psnr, "arch": args.arch,
                 "embed_dim": args.embed_dim, "rng": rng_state(), "args": vars(args)}, path)

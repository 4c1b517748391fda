"""SCL-LLE training stage (SPEC §2–3): DCE-Net trained on unpaired data with the multi-task loss.

total = 200·TV + 8·color + 10·contrastive + 5·Gram-contrastive + 1·perceptual + 1·semantic brightness
        + 1·segmentation (+ 0·spatial + 0·exposure); every weight is a flag and 0 turns a term off.
"""
from __future__ import annotations

import argparse
import os

import torch
from torch import nn
from tqdm import tqdm

from lowlight_model import ENHANCERS, build_enhancer, check_crop, weights_init
from network.modeling import SEGMENTATION_MODELS, build_segmentation_model
from stages.common import RunFolder, Session, add_run_arguments, check_flags, log, lr_factor, restore, training_state
from losses import LOSS_WEIGHTS, SCLLoss
from utils.checkpoint import load_weights
from utils.device import unwrap
from utils.errors import UserError

CHECKPOINTS = ("latest.pth", "Epoch*.pth")
MIN_CROP = 32  # the VGG and segmentation terms downsample by up to 16


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data_root", default="datasets/data/cityscapes", help="Cityscapes root (leftImg8bit/, gtFine/)")
    g.add_argument("--contrast_dir", default="datasets/data/Contrast",
                   help="folder with low/ (negatives) and GT/ (positives)")
    g.add_argument("--crop_size", type=int, default=384)
    g.add_argument("--batch_size", type=int, default=2)
    g.add_argument("--num_workers", type=int, default=2)
    g.add_argument("--cache_mb", type=float, default=2048,
                   help="memory for decoded training images (decoded once, checked before training starts)")
    g = p.add_argument_group("segmentation network (frozen)")
    g.add_argument("--ckpt", default="checkpoints/best_deeplabv3plus_mobilenet_cityscapes_os16.pth",
                   help="DeepLab checkpoint of the public port")
    g.add_argument("--model", default="deeplabv3plus_mobilenet", choices=sorted(SEGMENTATION_MODELS))
    g.add_argument("--output_stride", type=int, default=16, choices=[8, 16])
    g.add_argument("--num_classes", type=int, default=19)
    g.add_argument("--seg_detach", action="store_true",
                   help="reference behaviour: no gradient from the segmentation term reaches the enhancer")
    g.add_argument("--seg_train_mode", action="store_true",
                   help="reference behaviour: segmentation network in train mode (BatchNorm on batch statistics, "
                        "momentum 0.01 backbone / 0.1 head, running statistics drift, head dropout active)")
    g = p.add_argument_group("loss weights (0 turns a term off)")
    for name, (default, what) in LOSS_WEIGHTS.items():
        g.add_argument(f"--w_{name}", type=float, default=default, help=what)
    g.add_argument("--exp_patch", type=int, default=16, help="L_exp patch size")
    g.add_argument("--exp_level", type=float, default=0.6, help="L_exp target brightness")
    g.add_argument("--exp_variant", choices=["scl", "zero_dce"], default="scl",
                   help="L_exp: SCL-LLE's clamped two-term form (reference) or Zero-DCE's original")
    g.add_argument("--chroma_weighting", choices=["uniform", "brightness"], default="uniform",
                   help="L_chroma: every 4x4 cell alike, or cells weighted by the output's brightness")
    g.add_argument("--chroma_space", choices=["srgb", "linear"], default="srgb",
                   help="L_chroma: chromaticity of the sRGB values, or of linear light (sRGB curve undone)")
    g.add_argument("--chroma_linear_share", type=float, default=1.0,
                   help="with --chroma_space linear: weight t of the linear-light term, 1 - t going to the sRGB term")
    g.add_argument("--chroma_linear_fade", type=float, nargs=2, default=None, metavar=("A", "B"),
                   help="with --chroma_space linear: each 4x4 cell's linear share fades to 0 as its input's "
                        "brightest channel goes from A to B (dark cells linear, bright ones sRGB)")
    g.add_argument("--balance_colour_only", action="store_true",
                   help="L_balance: no gradient through each pixel's brightness (the term recolours, never darkens)")
    g.add_argument("--segexp_per_image", action="store_true",
                   help="corrected L_segexp (each image's own labels) instead of the reference's cross-batch broadcast")
    g = p.add_argument_group("optimisation")
    g.add_argument("--arch", default="dce", choices=sorted(ENHANCERS), help="enhancer to train")
    g.add_argument("--embed_dim", type=int, default=32, help="EMNet width (--arch emnet)")
    g.add_argument("--total_itrs", type=int, default=50000)
    g.add_argument("--lowlight_lr", type=float, default=1e-4)
    g.add_argument("--lowlight_weight_decay", type=float, default=1e-4)
    g.add_argument("--lr_schedule", choices=["constant", "cosine"], default="constant",
                   help="constant (reference) or cosine from --lowlight_lr down to --lr_min over --total_itrs")
    g.add_argument("--lr_min", type=float, default=1e-6, help="end of the cosine schedule")
    g.add_argument("--grad_clip_norm", type=float, default=0.1)
    g.add_argument("--random_seed", type=int, default=1)
    g = p.add_argument_group("run")
    g.add_argument("--snapshots_folder", default="snapshots/")
    g.add_argument("--snapshot_iter", type=int, default=1300, help="write a snapshot every N iterations")
    add_run_arguments(g, log_every=10)


def check_arguments(args: argparse.Namespace) -> dict[str, float]:
    """Every flag in range (one line naming the flag) before anything is created; returns the loss weights."""
    weights = {k: getattr(args, f"w_{k}") for k in LOSS_WEIGHTS}
    check_flags(args, at_least={"batch_size": 2, "crop_size": MIN_CROP, "total_itrs": 1, "snapshot_iter": 1,
                                "embed_dim": 1, "num_classes": 1, "exp_patch": 1, "lowlight_weight_decay": 0.0,
                                "cache_mb": 0.0, "lr_min": 0.0, "chroma_linear_share": 0.0,
                                **{f"w_{k}": 0.0 for k in LOSS_WEIGHTS}},
                positive=("lowlight_lr", "grad_clip_norm"),
                at_most={"exp_patch": args.crop_size, "chroma_linear_share": 1.0,
                         **({"lr_min": args.lowlight_lr} if args.lr_schedule == "cosine" else {})})
    check_crop(args.arch, args.crop_size, "--crop_size")
    if args.arch != "dce" and weights["tv"]:
        raise UserError(f"--w_tv regularises DCE-Net's curve maps, which --arch {args.arch} does not produce; "
                        f"pass --w_tv 0")
    if args.chroma_linear_share != 1.0 and args.chroma_space != "linear":
        raise UserError(f"--chroma_linear_share {args.chroma_linear_share:g} applies to --chroma_space linear "
                        f"(here {args.chroma_space}): add --chroma_space linear or drop it")
    if args.chroma_linear_fade is not None:
        a, b = args.chroma_linear_fade
        if args.chroma_space != "linear" or args.chroma_weighting != "uniform":
            raise UserError("--chroma_linear_fade applies to --chroma_space linear with --chroma_weighting uniform")
        if not 0.0 <= a < b:
            raise UserError(f"--chroma_linear_fade {a:g} {b:g}: need 0 <= A < B")
    if not any(weights.values()):
        raise UserError("every loss weight is 0: set at least one --w_<term>")
    return weights


def _build_segmentation(args, device: torch.device) -> nn.Module:
    net = build_segmentation_model(args.model, num_classes=args.num_classes, output_stride=args.output_stride,
                                   pretrained_backbone=False)
    if not os.path.isfile(args.ckpt):
        raise UserError(f"segmentation checkpoint {args.ckpt} not found: pass --ckpt, or --w_seg 0 to train "
                        f"without the segmentation term")
    load_weights(net, args.ckpt, map_location=device)
    net.to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _data(args, needs_labels: bool):
    """The training images and the contrast set, every file decoded (and cached) before training starts."""
    from datasets.cityscapes import Cityscapes
    from datasets.contrast import ContrastSet
    from stages.common import cache_dataset

    train = Cityscapes(args.data_root, split="train", crop_size=args.crop_size, train=True,
                       require_labels=needs_labels, hint="train without labels with --w_seg 0 --w_segexp 0",
                       cache_mb=args.cache_mb)
    contrast = ContrastSet(args.contrast_dir, crop_size=args.crop_size) if args.w_con or args.w_feat else None
    cache_dataset(train, args.data_root)
    if contrast is not None:
        contrast.preload()
    return train, contrast


def _criterion(args, weights: dict[str, float], device: torch.device) -> SCLLoss:
    seg_net = _build_segmentation(args, device) if weights["seg"] else None
    try:
        return SCLLoss(weights, seg_net=seg_net, seg_detach=args.seg_detach, seg_train_mode=args.seg_train_mode,
                       segexp_per_image=args.segexp_per_image, device=device,
                       exp_patch=args.exp_patch, exp_level=args.exp_level, exp_variant=args.exp_variant,
                       chroma_weighting=args.chroma_weighting, chroma_space=args.chroma_space,
                       chroma_linear_share=args.chroma_linear_share,
                       balance_colour_only=args.balance_colour_only,
                       chroma_linear_fade=tuple(args.chroma_linear_fade) if args.chroma_linear_fade else None)
    except UserError as e:
        raise UserError(f"{e} (or pass --w_feat 0 --w_percep 0 to train without the VGG terms)") from None


def run(args: argparse.Namespace) -> None:
    weights = check_arguments(args)
    session = Session(args, RunFolder("scl", args.snapshots_folder, args.snapshots_folder, "latest.pth", CHECKPOINTS))
    train_set, contrast = _data(args, needs_labels=bool(weights["seg"] or weights["segexp"]))
    ck = session.read_state(frozen=("arch", "embed_dim"))
    criterion = _criterion(args, weights, session.device)  # loads VGG/DeepLab: fails before any folder exists
    start = ck["iteration"] if ck else 0
    session.open(start)
    device, rank = session.device, session.rank
    model = build_enhancer(args.arch, args.embed_dim)  # first, so its init depends on the seed alone
    model.apply(weights_init)
    fmt = session.memory_format(args.arch)
    model.to(device, memory_format=fmt)
    if criterion.vgg is not None:
        criterion.vgg.to(memory_format=fmt)
    log.info("loss terms on: %s", ", ".join(f"{k}={w:g}" for k, w in weights.items() if w))
    if off := [k for k, w in weights.items() if w == 0]:
        log.info("loss terms off: %s", ", ".join(off))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lowlight_lr, weight_decay=args.lowlight_weight_decay)
    gens = {"contrast": torch.Generator().manual_seed(args.random_seed + rank)}
    if ck:
        restore(ck, model, optimizer, generators=gens)
        for group in optimizer.param_groups:  # changed flags apply (and args.json records them)
            group.update(lr=args.lowlight_lr, weight_decay=args.lowlight_weight_decay)
        log.info("resumed %s at iteration %d", session.resume, start)
    model = session.wrap(model)

    def snapshot(it: int, raw: bool = True) -> None:
        if raw:  # the reference's raw state dict, loadable by its test script
            session.save(f"Epoch{it}.pth", unwrap(model).state_dict(), it, resumable=False)
        session.save("latest.pth", training_state("scl", it, 0, model, optimizer, generators=gens, args=args,
                                                  arch=args.arch), it)

    model.train()
    with tqdm(total=args.total_itrs, initial=start, disable=rank != 0, desc="scl", dynamic_ncols=True) as bar:
        for it, _, (images, labels) in session.batches(train_set, args.batch_size, start, args.total_itrs, min_batch=2,
                                                       on_stop=lambda done: snapshot(done, raw=False)):
            images, labels = images.to(device, memory_format=fmt), labels.to(device)
            positives = negatives = ids = None
            if contrast is not None:
                positives, negatives, ids = contrast.sample(images.shape[0], generator=gens["contrast"])
                positives, negatives = (t.to(device, memory_format=fmt) for t in (positives, negatives))
            if args.lr_schedule == "cosine":  # a function of the iteration alone, so --resume needs no state
                lr = args.lowlight_lr * lr_factor(it, args.total_itrs, 0, args.lr_min / args.lowlight_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            with session.autocast():
                out = model(images)
                enhanced, curves = (out[1], out[2]) if isinstance(out, tuple) else (out, None)
                terms = criterion(images, enhanced, curves, labels, positives, negatives, contrast_ids=ids)
            loss = session.step(it, terms, model, optimizer, clip=args.grad_clip_norm)
            it += 1
            bar.update(1)
            if it % args.log_every == 0 or it == args.total_itrs:
                bar.set_postfix(loss=f"{loss.item():.4f}")
                session.log(it, {"total": loss, **{k: v.detach() for k, v in terms.items()}})
                if session.vis is not None:
                    session.vis.images("input | enhanced", torch.cat([images[:1], enhanced[:1].float()]))
            if it % args.snapshot_iter == 0 or it == args.total_itrs:
                snapshot(it)
    session.close(plot="loss_curves.png")
    log.info("done at iteration %d; snapshots in %s", args.total_itrs, args.snapshots_folder)

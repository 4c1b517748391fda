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
from stages.common import RunLogger, SeededItems, iterate_batches, log, rng_state, set_rng_state, setup_run
from stages.sclloss import LOSS_WEIGHTS, SCLLoss
from utils.checkpoint import atomic_save, load_weights, read_checkpoint, require_keys
from utils.device import is_primary, unwrap
from utils.errors import UserError

def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data_root", default="datasets/data/cityscapes", help="Cityscapes root (leftImg8bit/, gtFine/)")
    g.add_argument("--contrast_dir", default="datasets/data/Contrast", help="folder with low/ (negatives) and GT/ (positives)")
    g.add_argument("--crop_size", type=int, default=384)
    g.add_argument("--batch_size", type=int, default=2)
    g.add_argument("--num_workers", type=int, default=2)
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
    g.add_argument("--segexp_per_image", action="store_true",
                   help="corrected L_segexp (each image's own labels) instead of the reference's cross-batch broadcast")
    g = p.add_argument_group("optimisation")
    g.add_argument("--arch", default="dce", choices=sorted(ENHANCERS), help="enhancer to train")
    g.add_argument("--embed_dim", type=int, default=32, help="EMNet width (--arch emnet)")
    g.add_argument("--total_itrs", type=int, default=50000)
    g.add_argument("--lowlight_lr", type=float, default=1e-4)
    g.add_argument("--lowlight_weight_decay", type=float, default=1e-4)
    g.add_argument("--grad_clip_norm", type=float, default=0.1)
    g.add_argument("--random_seed", type=int, default=1)
    g = p.add_argument_group("run")
    g.add_argument("--snapshots_folder", default="snapshots/")
    g.add_argument("--snapshot_iter", type=int, default=1300, help="write a snapshot every N iterations")
    g.add_argument("--log_every", type=int, default=10, help="log losses every N iterations")
    g.add_argument("--resume", default=None, help="training checkpoint to resume (e.g. snapshots/latest.pth), or 'auto'")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--enable_vis", action="store_true", help="plot losses to a visdom server")
    g.add_argument("--vis_port", type=int, default=28333)
    g.add_argument("--vis_env", default="main")


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
    from datasets.cityscapes import Cityscapes
    from datasets.contrast import ContrastSet

    train = Cityscapes(args.data_root, split="train", crop_size=args.crop_size, train=True,
                       require_labels=needs_labels)
    contrast = ContrastSet(args.contrast_dir, crop_size=args.crop_size) if args.w_con or args.w_feat else None
    return train, contrast


def run(args: argparse.Namespace) -> None:
    run_dir = args.snapshots_folder
    device, rank, world = setup_run(args, run_dir)
    model = build_enhancer(args.arch, args.embed_dim)  # first, so its init depends on the seed alone
    model.apply(weights_init)
    model.to(device)
    weights = {k: getattr(args, f"w_{k}") for k in LOSS_WEIGHTS}
    check_crop(args.arch, args.crop_size, "--crop_size")
    if args.arch != "dce" and weights["tv"]:
        raise UserError(f"--w_tv regularises DCE-Net's curve maps, which --arch {args.arch} does not produce; "
                        f"pass --w_tv 0")
    off = [k for k, w in weights.items() if w == 0]
    log.info("loss terms on: %s", ", ".join(f"{k}={w:g}" for k, w in weights.items() if w) or "none")
    if off:
        log.info("loss terms off: %s", ", ".join(off))
    needs_labels = bool(weights["seg"] or weights["segexp"])
    train_set, contrast = _data(args, needs_labels)
    seg_net = _build_segmentation(args, device) if weights["seg"] else None
    try:
        criterion = SCLLoss(weights, seg_net=seg_net, seg_detach=args.seg_detach, seg_train_mode=args.seg_train_mode,
                            segexp_per_image=args.segexp_per_image, device=device,
                            exp_patch=args.exp_patch, exp_level=args.exp_level, exp_variant=args.exp_variant)
    except UserError as e:
        raise UserError(f"{e} (or pass --w_feat 0 --w_percep 0 to train without the VGG terms)") from None

    optimizer = torch.optim.Adam(model.parameters(), lr=args.lowlight_lr, weight_decay=args.lowlight_weight_decay)
    contrast_gen = torch.Generator().manual_seed(args.random_seed + rank)
    start = 0
    resume = os.path.join(run_dir, "latest.pth") if args.resume == "auto" else args.resume
    if resume and (args.resume != "auto" or os.path.exists(resume)):
        ck = require_keys(read_checkpoint(resume, map_location="cpu"), ("state_dict", "optimizer", "iteration", "rng"),
                          resume, "a training checkpoint of the SCL stage")
        load_weights(model, resume, map_location=device)
        optimizer.load_state_dict(ck["optimizer"])
        set_rng_state(ck["rng"], contrast=contrast_gen)
        start = ck["iteration"]
        log.info("resumed %s at iteration %d", resume, start)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    vis = None
    if args.enable_vis and is_primary():
        from stages.vis import Visualizer

        vis = Visualizer(args.vis_port, args.vis_env)
    logger = RunLogger(run_dir, start, vis=vis)
    seeded = SeededItems(train_set, args.random_seed)

    def loader(batches):
        return torch.utils.data.DataLoader(seeded, batch_sampler=batches, num_workers=args.num_workers,
                                           pin_memory=device.type == "cuda", persistent_workers=False)

    model.train()
    bar = tqdm(total=args.total_itrs, initial=start, disable=not is_primary(), desc="scl", dynamic_ncols=True)
    it = start
    for it, _, (images, labels) in iterate_batches(loader, len(train_set), args.batch_size, args.random_seed, start,
                                                    args.total_itrs, rank, world, min_batch=2):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        positives = negatives = None
        if contrast is not None:
            positives, negatives = (t.to(device) for t in contrast.sample(images.shape[0], generator=contrast_gen))
        out = model(images)
        enhanced, curves = (out[1], out[2]) if isinstance(out, tuple) else (out, None)
        terms = criterion(images, enhanced, curves, labels, positives, negatives)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip_norm)
        optimizer.step()
        it += 1
        bar.update(1)
        if it % args.log_every == 0 or it == args.total_itrs:
            values = {"total": loss.item(), **{k: v.item() for k, v in terms.items()}}
            bar.set_postfix(loss=f"{values['total']:.4f}")
            logger.log(it, values)
            if vis is not None:
                vis.images("input | enhanced", torch.cat([images[:1], enhanced[:1]]))
        if is_primary() and (it % args.snapshot_iter == 0 or it == args.total_itrs):
            save_snapshot(run_dir, unwrap(model), optimizer, it, args, contrast_gen)
    bar.close()
    logger.close(plot_path=os.path.join(run_dir, "loss_curves.png"))
    log.info("done at iteration %d; snapshots in %s", it, run_dir)


def save_snapshot(run_dir: str, model: nn.Module, optimizer, it: int, args, contrast_gen) -> None:
    """``latest.pth`` (resumable training state) and ``Epoch<it>.pth`` (raw state dict, as the reference)."""
    state = model.state_dict()
    atomic_save(state, os.path.join(run_dir, f"Epoch{it}.pth"))
    atomic_save({"state_dict": state, "optimizer": optimizer.state_dict(), "iteration": it, "arch": args.arch,
                 "rng": rng_state(contrast=contrast_gen), "args": vars(args)}, os.path.join(run_dir, "latest.pth"))

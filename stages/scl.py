"""SCL-LLE training stage (SPEC §2–3): DCE-Net trained on unpaired data with the multi-task loss.

total = 200·TV + 8·color + 10·contrastive + 5·Gram-contrastive + 1·perceptual + 1·semantic brightness
        + 1·segmentation (+ 0·spatial + 0·exposure); every weight is a flag and 0 turns a term off.
"""
from __future__ import annotations

import argparse
import os

import torch
from torch import nn

from lowlight_model import build_enhancer, weights_init
from network.modeling import SEGMENTATION_MODELS, build_segmentation_model
from network.registry import get_spec
from stages.common import RunFolder, Session, add_run_arguments, check_flags, lr_factor
from stages.runlog import log
from stages.state import read_init_weights, restore, training_state
from stages.loop import Stage, run_stage
from losses import LOSS_WEIGHTS, SCLLoss
from stages import scl_validation
from utils.checkpoint import load_state, load_weights
from utils.device import unwrap
from utils.errors import UserError
from utils.options import (add_arch_arguments, add_seed_argument, add_workers_argument, at_least, between, positive,
                           resolve_arch_arguments)

CHECKPOINTS = ("latest.pth", "Epoch*.pth")
MIN_CROP = 32  # the VGG and segmentation terms downsample by up to 16


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data_root", default="datasets/data/cityscapes", help="Cityscapes root (leftImg8bit/, gtFine/)")
    g.add_argument("--contrast_dir", default="datasets/data/Contrast",
                   help="folder with low/ (negatives) and GT/ (positives)")
    g.add_argument("--crop_size", type=at_least(MIN_CROP), default=384)
    g.add_argument("--batch_size", type=at_least(2), default=2)
    add_workers_argument(g, default=2)
    g.add_argument("--cache_mb", type=at_least(0.0, float), default=2048,
                   help="memory for decoded training images (decoded once, checked before training starts)")
    g = p.add_argument_group("segmentation network (frozen)")
    g.add_argument("--ckpt", default="checkpoints/best_deeplabv3plus_mobilenet_cityscapes_os16.pth",
                   help="DeepLab checkpoint of the public port")
    g.add_argument("--model", default="deeplabv3plus_mobilenet", choices=sorted(SEGMENTATION_MODELS))
    g.add_argument("--output_stride", type=int, default=16, choices=[8, 16])
    g.add_argument("--num_classes", type=at_least(1), default=19)
    g.add_argument("--seg_detach", action="store_true",
                   help="reference behaviour: no gradient from the segmentation term reaches the enhancer")
    g.add_argument("--seg_train_mode", action="store_true",
                   help="reference behaviour: segmentation network in train mode (BatchNorm on batch statistics, "
                        "momentum 0.01 backbone / 0.1 head, running statistics drift, head dropout active)")
    g = p.add_argument_group("loss weights (0 turns a term off)")
    for name, (default, what) in LOSS_WEIGHTS.items():
        g.add_argument(f"--w_{name}", type=at_least(0.0, float), default=default, help=what)
    g.add_argument("--exp_patch", type=at_least(1), default=16, help="L_exp patch size")
    g.add_argument("--exp_level", type=between(0.0, 1.0), default=0.6, help="L_exp target brightness")
    g.add_argument("--exp_variant", choices=["scl", "zero_dce"], default="scl",
                   help="L_exp: SCL-LLE's clamped two-term form (reference) or Zero-DCE's original")
    g.add_argument("--exp_skip_referenced", action="store_true",
                   help="L_exp only on the images without an exposure reference (those with one follow --w_expref)")
    g.add_argument("--expref_relative", action="store_true",
                   help="L_exp_ref on each image's patch means over their mean: the reference's pattern of light "
                        "and shade, not its level")
    g.add_argument("--chroma_weighting", choices=["uniform", "brightness"], default="uniform",
                   help="L_chroma: every 4x4 cell alike, or cells weighted by the output's brightness")
    g.add_argument("--chroma_space", choices=["srgb", "linear"], default="srgb",
                   help="L_chroma: chromaticity of the sRGB values, or of linear light (sRGB curve undone)")
    g.add_argument("--chroma_linear_share", type=between(0.0, 1.0), default=1.0,
                   help="with --chroma_space linear: weight t of the linear-light term, 1 - t going to the sRGB term")
    g.add_argument("--chroma_linear_fade", type=float, nargs=2, default=None, metavar=("A", "B"),
                   help="with --chroma_space linear: each 4x4 cell's linear share fades to 0 as its input's "
                        "brightest channel goes from A to B (dark cells linear, bright ones sRGB); default: no fade, "
                        "--chroma_linear_share in every cell")
    g.add_argument("--balance_colour_only", action="store_true",
                   help="L_balance: no gradient through each pixel's brightness (the term recolours, never darkens)")
    g.add_argument("--segexp_per_image", action="store_true",
                   help="corrected L_segexp (each image's own labels) instead of the reference's cross-batch broadcast")
    g = p.add_argument_group("optimisation")
    add_arch_arguments(g, default="dce")
    g.add_argument("--init_weights", default=None,
                   help="start from these enhancer weights (fine-tuning; default: none, the reference's random "
                        "initialisation)")
    g.add_argument("--total_itrs", type=at_least(1), default=50000)
    g.add_argument("--lowlight_lr", type=positive(), default=1e-4)
    g.add_argument("--lowlight_weight_decay", type=at_least(0.0, float), default=1e-4)
    g.add_argument("--lr_schedule", choices=["constant", "cosine"], default="constant",
                   help="constant (reference) or cosine from --lowlight_lr down to --lr_min over --total_itrs")
    g.add_argument("--lr_min", type=at_least(0.0, float), default=1e-6, help="end of the cosine schedule")
    g.add_argument("--grad_clip_norm", type=positive(), default=0.1)
    add_seed_argument(g, default=1)
    scl_validation.add_arguments(p.add_argument_group("validation (this project's addition)"))
    g = p.add_argument_group("run")
    g.add_argument("--snapshots_folder", default="snapshots/")
    g.add_argument("--snapshot_iter", type=at_least(1), default=1300, help="write a snapshot every N iterations")
    add_run_arguments(g, log_every=10)


def check_arguments(args: argparse.Namespace) -> dict[str, float]:
    """Every flag in range (one line naming the flag) before anything is created; returns the loss weights."""
    weights = {k: getattr(args, f"w_{k}") for k in LOSS_WEIGHTS}
    # each flag's own range is its validator's (utils.options, at parsing); here the shared flags and relations
    check_flags(args, at_most={"exp_patch": args.crop_size,
                               **({"lr_min": args.lowlight_lr} if args.lr_schedule == "cosine" else {})})
    resolve_arch_arguments(args)
    scl_validation.check_arguments(args)
    get_spec(args.arch).check_crop(args.crop_size, "--crop_size")
    if args.arch != "dce" and weights["tv"]:
        raise UserError(f"--w_tv regularises DCE-Net's curve maps, which --arch {args.arch} does not produce; "
                        f"pass --w_tv 0")
    if args.expref_relative and not weights["expref"]:
        raise UserError("--expref_relative changes L_exp_ref: it needs --w_expref above 0")
    if args.exp_skip_referenced and not (weights["exp"] and weights["expref"]):
        raise UserError("--exp_skip_referenced divides the images between L_exp and L_exp_ref: it needs both "
                        "--w_exp and --w_expref above 0")
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
    from stages.batches import cache_dataset
    from utils.image_io import image_size

    train = Cityscapes(args.data_root, split="train", crop_size=args.crop_size, train=True,
                       require_labels=needs_labels, hint="train without labels with --w_seg 0 --w_segexp 0",
                       cache_mb=args.cache_mb, references=bool(args.w_expref))
    smallest = min(min(image_size(path)) for path, _ in train.files)  # headers only, upright
    if args.crop_size > smallest:  # the reference pads silently: crops of black borders and ignored labels
        raise UserError(f"--crop_size {args.crop_size}: larger than the smallest training image side ({smallest} "
                        f"pixels in {args.data_root}); use at most {smallest}")
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
                       chroma_linear_fade=tuple(args.chroma_linear_fade) if args.chroma_linear_fade else None,
                       exp_skip_referenced=args.exp_skip_referenced, expref_relative=args.expref_relative)
    except UserError as e:
        raise UserError(f"{e} (or pass --w_feat 0 --w_percep 0 to train without the VGG terms)") from None


class SclStage(Stage):
    """DCE-Net (or EMNet) on unpaired data: snapshots every ``--snapshot_iter`` iterations (the reference's
    raw ``Epoch{it}.pth`` beside the resumable ``latest.pth``); with ``--val_dir``, a validation every
    ``--val_every`` iterations (:mod:`stages.scl_validation`; no best checkpoint: the reference keeps none)."""

    name = "scl"
    frozen = ("arch", "embed_dim")
    min_batch = 2
    save_each_epoch = False

    def __init__(self, args: argparse.Namespace) -> None:
        self.weights = check_arguments(args)
        super().__init__(args, RunFolder("scl", args.snapshots_folder, args.snapshots_folder, "latest.pth",
                                         CHECKPOINTS))
        self.snapshot_every, self.clip = args.snapshot_iter, args.grad_clip_norm

    length_flag = "total_itrs"

    def total_steps(self, per_epoch: int) -> int:
        return self.args.total_itrs

    def prepare(self, session: Session) -> None:
        super().prepare(session)
        w = self.weights
        self.train_set, self.contrast = _data(self.args, needs_labels=bool(w["seg"] or w["segexp"]))
        self.val = None
        if self.args.val_dir is not None:
            self.val = scl_validation.SclValidation(self.args.val_dir, images=self.args.val_images)
            self.val_every = self.args.val_every or self.args.snapshot_iter

    def load_fixed(self) -> None:
        args = self.args
        self.init = read_init_weights(args.init_weights, self.session.resume)
        self.criterion = _criterion(args, self.weights, self.session.device)  # VGG/DeepLab

    def build(self) -> None:
        args, session = self.args, self.session
        model = build_enhancer(args.arch, args.embed_dim)  # first, so its init depends on the seed alone
        model.apply(weights_init)
        if self.init is not None:
            load_state(model, self.init, args.init_weights)
            log.info("starting from %s", args.init_weights)
        self.fmt = session.memory_format(args.arch)
        model.to(session.device, memory_format=self.fmt)
        if self.criterion.vgg is not None:
            self.criterion.vgg.to(memory_format=self.fmt)
        log.info("loss terms on: %s", ", ".join(f"{k}={w:g}" for k, w in self.weights.items() if w))
        if off := [k for k, w in self.weights.items() if w == 0]:
            log.info("loss terms off: %s", ", ".join(off))
        if self.val is not None:
            log.info("validation every %d iterations on %s", self.val_every, self.val.describe())
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=args.lowlight_lr,
                                          weight_decay=args.lowlight_weight_decay)
        self.gens = {"contrast": torch.Generator().manual_seed(session.options.seed + session.rank)}

    def load_state(self, ck: dict) -> None:
        restore(ck, self.model, self.optimizer, generators=self.gens)
        for group in self.optimizer.param_groups:  # changed flags apply (and args.json records them)
            group.update(lr=self.args.lowlight_lr, weight_decay=self.args.lowlight_weight_decay)

    def train_step(self, batch, it: int) -> dict[str, torch.Tensor]:
        args, device, fmt = self.args, self.session.device, self.fmt
        images, labels, *refs = batch  # refs: [exposure references] with --w_expref
        images, labels = images.to(device, memory_format=fmt), labels.to(device)
        refs = refs[0].to(device, memory_format=fmt) if refs else None
        positives = negatives = ids = None
        if self.contrast is not None:
            positives, negatives, ids = self.contrast.sample(images.shape[0], generator=self.gens["contrast"])
            positives, negatives = (t.to(device, memory_format=fmt) for t in (positives, negatives))
        if args.lr_schedule == "cosine":  # a function of the iteration alone, so --resume needs no state
            lr = args.lowlight_lr * lr_factor(it, args.total_itrs, 0, args.lr_min / args.lowlight_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        with self.session.autocast():
            out = self.model(images)
            enhanced, curves = (out[1], out[2]) if isinstance(out, tuple) else (out, None)
            terms = self.criterion(images, enhanced, curves, labels, positives, negatives, contrast_ids=ids, R=refs)
        self.shown = (images[:1], enhanced[:1])
        return terms

    def logged(self, step: int) -> None:
        if self.session.vis is not None:
            self.session.vis.images("input | enhanced", torch.cat([self.shown[0], self.shown[1].float()]))

    def validate(self, step: int) -> dict[str, float]:
        figures, shown = self.val(unwrap(self.model), self.session.device)
        self.session.logger.images(step, shown)
        return figures

    def state(self, step: int, epoch: int) -> dict:
        return training_state("scl", step, 0, self.model, self.optimizer, generators=self.gens, args=self.args,
                              arch=self.args.arch)

    def snapshots(self, step: int) -> dict[str, dict]:
        # the reference's raw state dict, loadable by its test script
        return {f"Epoch{step}.pth": unwrap(self.model).state_dict()}  # the reference's raw state dict

    def finish(self, best: float) -> None:
        log.info("done at iteration %d; snapshots in %s", self.args.total_itrs, self.args.snapshots_folder)


def run(args: argparse.Namespace) -> None:
    run_stage(SclStage(args), args)

"""EMNet stage 2 (SPEC §6): fill the external memory from paired training data on a frozen enhancer.

Per batch of random crops (with the 8 rotations/flips): q = query of the low image (ImageNet ResNet-18 as
the reference, or with ``--query enhancer`` the frozen enhancer's own features, :mod:`network.query`),
v = GT pooled to p×p, one memory update; the last incomplete batch is dropped, as the reference's loader
(3 updates per epoch on 485 pairs with batch 128). After every epoch the memory refines the frozen enhancer's
outputs on the full validation images; the memory with the best refined PSNR is kept
(``<save_dir>/<env>/models/memory_best.pth``, reference keys ``mem_key``/``mem_vale``/``mem_age``/``mem_index``).
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from lowlight_model import load_enhancer
from network.memory import ExternalMemory, query, value_dim_for
from network.query import QUERY_KINDS, REFERENCE_QUERY, build_query
from evaluation import VALIDATION, enhance_and_query, evaluate, mean_psnr_ssim
from stages.common import RunFolder, Session, add_run_arguments, check_flags
from stages.loop import Stage, run_stage
from stages.paired_data import add_common_arguments, check_fits, check_paired_arguments, load_pairs, run_dirs
from stages.runlog import log
from stages.state import all_gather_cat, read_file, replica_digest, restore, training_state
from utils.device import world_size
from utils.errors import UserError
from utils.options import at_least

CHECKPOINTS = ("memory_latest.pth", "memory_best.pth")
QUERY_DIM = 512  # ResNet-18 features
# Flags that define the saved memory: a resumed run must keep them.
FROZEN = ("mem_size", "K_feat_dim", "V_feat_dim", "pooling_size", "pooling_mean", "query")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, batch_size=128, nepoch=8000, arch="auto")
    g = p.add_argument_group("memory")
    g.add_argument("--pretrain_weights", default="checkpoints/LLE_model.pth", help="the frozen enhancer")
    g.add_argument("--mem_size", type=at_least(1), default=9000)
    g.add_argument("--query", choices=QUERY_KINDS, default=REFERENCE_QUERY,
                   help="query network: ImageNet ResNet-18 (the reference; needs its weights file) or the frozen "
                        "enhancer's own features (nothing to download; saved in the memory checkpoint)")
    g.add_argument("--K_feat_dim", type=int, default=None,
                   help="key size, checked against the query (default: the query's: 512 for ResNet-18)")
    g.add_argument("--V_feat_dim", type=int, default=None, help="value size (default 3·p², p² with --pooling_mean)")
    g.add_argument("--pooling_size", type=at_least(1), default=1, help="p: values are GT pooled to p×p")
    g.add_argument("--pooling_mean", action="store_true", help="values are channel means")
    g.add_argument("--thres", type=at_least(0.0, float), default=1e-5,
                   help="colour distance below which a query merges")
    g.add_argument("--age_noise", type=at_least(0.0, float), default=4.0,
                   help="uniform noise added to ages when replacing")
    g.add_argument("--top_k", type=at_least(1), default=32,
                   help="accepted for the reference scripts; unused (updates use top-1)")
    g.add_argument("--testing_top_k", type=at_least(1), default=1, help="slots averaged when reading at validation")
    g.add_argument("--alpha", type=float, default=0.1,
                   help="accepted for the reference scripts; not used by the update rule")
    g.add_argument("--cos_thres", type=float, default=0.0,
                   help="accepted for the reference scripts; not used by the update rule")
    add_run_arguments(p.add_argument_group("run control"), log_every=10)


def check_arguments(args: argparse.Namespace) -> int:
    """Every flag in range (one line naming the flag) before anything is created or loaded; returns V."""
    check_paired_arguments(args, from_checkpoint=True)  # the frozen enhancer's width is its checkpoint's
    check_flags(args, at_most={"pooling_size": args.train_ps, "testing_top_k": args.mem_size})  # single: validators
    if args.query == REFERENCE_QUERY and args.K_feat_dim not in (None, QUERY_DIM):
        raise UserError(f"--K_feat_dim {args.K_feat_dim}: the ResNet-18 query has {QUERY_DIM} features; pass 512")
    if args.query == REFERENCE_QUERY:
        args.K_feat_dim = QUERY_DIM  # as saved by earlier runs, which a resumed run is compared with
    world = world_size()
    if args.batch_size * world > args.mem_size:
        raise UserError(f"--mem_size {args.mem_size}: smaller than one batch ({args.batch_size} x {world} "
                        f"process(es)); every new entry of a batch needs its own slot: raise --mem_size or lower "
                        f"--batch_size")
    value_dim = value_dim_for(args.pooling_size, args.pooling_mean)
    if args.V_feat_dim is not None and args.V_feat_dim != value_dim:
        raise UserError(f"--V_feat_dim {args.V_feat_dim} does not match --pooling_size {args.pooling_size}"
                        f"{' --pooling_mean' if args.pooling_mean else ''} (needs {value_dim})")
    return value_dim


def _data(args, world: int):
    """Training and validation pairs, checked and cached up front; the pooling must fit every image."""
    train_set, val_set = load_pairs(args)
    check_fits(val_set, args.pooling_size, "--pooling_size", "validation", args.val_dir)
    if len(train_set) < args.batch_size * world:
        raise UserError(f"--batch_size {args.batch_size} exceeds the {len(train_set)} training pairs in "
                        f"{args.train_dir}{f' shared by {world} processes' if world > 1 else ''}: the incomplete "
                        f"last batch is dropped (as the reference), so nothing would be stored; lower --batch_size")
    return train_set, val_set


class MemoryStage(Stage):
    """Fill the external memory on a frozen enhancer: no gradient step; after every epoch the memory refines
    the validation outputs on every process (the replicas are checked identical), the best refined PSNR
    keeps ``memory_best.pth`` (the reference layout), ``memory_latest.pth`` resumes."""

    name = "memory"
    frozen = FROZEN
    best = "memory_best.pth"
    best_resumable = False
    val_per_epoch = 1
    validate_everywhere = True
    plot = ("memory_psnr.png", "val")

    def __init__(self, args: argparse.Namespace) -> None:
        self.value_dim = check_arguments(args)
        run_dir, model_dir = run_dirs(args)
        super().__init__(args, RunFolder("memory", run_dir, model_dir, "memory_latest.pth", CHECKPOINTS))
        self.min_batch = args.batch_size  # drop_last, as the reference
        self.stats = {"matched": 0, "written": 0}

    def prepare(self, session: Session) -> None:
        super().prepare(session)
        self.train_set, self.val_set = _data(self.args, session.options.world)

    def load_fixed(self) -> None:
        self.enhancer, self.query_net = _networks(self.args, self.session.device)
        self.key_dim = self.query_net.dim if hasattr(self.query_net, "dim") else QUERY_DIM
        if self.args.K_feat_dim not in (None, self.key_dim):
            raise UserError(f"--K_feat_dim {self.args.K_feat_dim}: the {self.args.query} query of this enhancer has "
                            f"{self.key_dim} features; pass {self.key_dim} or leave it out")

    def record_step(self, step: int, per_epoch: int) -> int:
        return step // per_epoch  # one validation record per epoch

    def build(self) -> None:
        """The frozen enhancer's validation outputs and queries (computed once), then a new memory."""
        args, session = self.args, self.session
        log.info("%d training pairs, %d validation pairs", len(self.train_set), len(self.val_set))
        t0 = time.time()
        with session.autocast():
            self.val_out, self.val_q = enhance_and_query(self.enhancer, self.query_net, self.val_set, session.device)
        self.base_psnr, base_ssim = mean_psnr_ssim(evaluate(None, self.val_set, policy=VALIDATION, raw=self.val_out),
                                                   "ori")
        log.info("frozen enhancer on validation: PSNR %.2f SSIM %.4f (%.1fs)", self.base_psnr, base_ssim,
                 time.time() - t0)
        self.gens = {"memory": torch.Generator().manual_seed(session.options.seed)}  # the same on every process
        self.mem = ExternalMemory(args.mem_size, self.key_dim, self.value_dim, args.thres, args.age_noise,
                                  self.gens["memory"], query_kind=args.query).to(session.device)

    def load_state(self, ck: dict) -> None:
        args = self.args
        self.mem = ExternalMemory.from_checkpoint(ck, name=self.session.resume, pooling=args.pooling_size,
                                                  pooling_mean=args.pooling_mean, thres=args.thres,
                                                  age_noise=args.age_noise, generator=self.gens["memory"])
        self.mem.to(self.session.device)
        restore(ck, generators=self.gens)
        self.stats = ck.get("epoch_stats", self.stats)

    def train_step(self, batch, it: int) -> None:
        low, gt, _, index = batch
        session, device = self.session, self.session.device
        with session.autocast():
            q = query(self.query_net, low.to(device)).float()
        v = self.mem.value_of(gt.to(device))
        # every process applies the same update to its own copy: the batches of all, in rank order
        q, v, index = (all_gather_cat(t, session.world) for t in (q, v, index.to(device)))
        for k, n in self.mem.update(q, v, index).items():
            self.stats[k] += n
        return None

    def logged(self, step: int) -> None:
        log.info("iteration %d: %s", step, ", ".join(f"{k} {n}" for k, n in self.stats.items()))

    def validate(self, step: int) -> dict[str, float]:
        mem, device, world = self.mem, self.session.device, self.session.world
        # the raw (unclamped) enhancer output is pooled, as the reference
        acc = evaluate(None, self.val_set, mem, VALIDATION, device=device, top_k=self.args.testing_top_k,
                       raw=self.val_out, queries=self.val_q, only=("mem",))
        val_psnr, val_ssim = mean_psnr_ssim(acc, "mem")
        epoch = step // self.per_epoch  # the memory validates after the last batch of each epoch
        digest, same = replica_digest([mem.key, mem.value, mem.age, mem.top_index], world, device)
        if not same:
            raise RuntimeError(f"epoch {epoch}: the memories of the {world} processes differ")
        if world > 1:
            log.info("epoch %d: memory identical on all %d processes (digest %s)", epoch, world, digest)
        return {"psnr": val_psnr, "ssim": val_ssim, **self.stats}

    def end_epoch(self, epoch: int) -> None:
        self.stats = {"matched": 0, "written": 0}

    def state(self, step: int, epoch: int) -> dict:
        return {**training_state("memory", step, epoch, generators=self.gens, args=self.args,
                                 epoch_stats=self.stats), **self.mem.to_checkpoint(epoch)}

    def best_state(self, step: int, epoch: int) -> dict:
        return self.mem.to_checkpoint(epoch)

    def finish(self, best: float) -> None:
        log.info("done: enhancer alone PSNR %.2f, best with memory %.2f; memory in %s", self.base_psnr, best,
                 os.path.join(self.folder.ckpt_dir, self.best))


def _networks(args, device: torch.device):
    """The frozen enhancer of ``--pretrain_weights`` and the ``--query`` network, on ``device``."""
    enhancer = read_file(args.pretrain_weights, "--pretrain_weights",
                         lambda path: load_enhancer(args.arch, path, device, args.embed_dim))
    return enhancer, build_query(args.query, enhancer).to(device)


def run(args: argparse.Namespace) -> None:
    run_stage(MemoryStage(args), args)

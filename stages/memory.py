"""EMNet stage 2 (SPEC §6): fill the external memory from paired training data on a frozen enhancer.

Per batch of random crops (with the 8 rotations/flips): q = ResNet-18 query of the low image,
v = GT pooled to p×p, one memory update; the last incomplete batch is dropped, as the reference's loader
(3 updates per epoch on 485 pairs with batch 128). After every epoch the memory refines the frozen enhancer's
outputs on the full validation images; the memory with the best refined PSNR is kept
(``<save_dir>/<env>/models/memory_best.pth``, reference keys ``mem_key``/``mem_vale``/``mem_age``/``mem_index``).
"""
from __future__ import annotations

import argparse
import math
import os
import time

import torch
from tqdm import tqdm

from lowlight_model import load_enhancer
from network.memory import ExternalMemory, build_query_net, query, value_dim_for
from stages.common import (RunFolder, Session, add_run_arguments, all_gather_cat, batches_per_epoch, check_flags, log,
                           read_file, replica_digest, restore, training_state)
from stages.paired import (add_common_arguments, check_fits, check_paired_arguments, enhance_validation, load_pairs,
                           run_dirs, score)
from utils.device import is_primary
from utils.errors import UserError
from utils.training_checkpoint import resume_step

CHECKPOINTS = ("memory_latest.pth", "memory_best.pth")
QUERY_DIM = 512  # ResNet-18 features
# Flags that define the saved memory: a resumed run must keep them.
FROZEN = ("mem_size", "K_feat_dim", "V_feat_dim", "pooling_size", "pooling_mean")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, batch_size=128, nepoch=8000, arch="auto")
    g = p.add_argument_group("memory")
    g.add_argument("--pretrain_weights", default="checkpoints/LLE_model.pth", help="the frozen enhancer")
    g.add_argument("--mem_size", type=int, default=9000)
    g.add_argument("--K_feat_dim", type=int, default=QUERY_DIM, help="key size (ResNet-18 features: 512)")
    g.add_argument("--V_feat_dim", type=int, default=None, help="value size (default 3·p², p² with --pooling_mean)")
    g.add_argument("--pooling_size", type=int, default=1, help="p: values are GT pooled to p×p")
    g.add_argument("--pooling_mean", action="store_true", help="values are channel means")
    g.add_argument("--thres", type=float, default=1e-5, help="colour distance below which a query merges")
    g.add_argument("--age_noise", type=float, default=4.0, help="uniform noise added to ages when replacing")
    g.add_argument("--top_k", type=int, default=32, help="accepted for the reference scripts; unused (updates use top-1)")
    g.add_argument("--testing_top_k", type=int, default=1, help="slots averaged when reading at validation")
    g.add_argument("--alpha", type=float, default=0.1,
                   help="accepted for the reference scripts; not used by the update rule")
    g.add_argument("--cos_thres", type=float, default=0.0,
                   help="accepted for the reference scripts; not used by the update rule")
    add_run_arguments(p.add_argument_group("run control"), log_every=10)


def check_arguments(args: argparse.Namespace) -> int:
    """Every flag in range (one line naming the flag) before anything is created or loaded; returns V."""
    check_paired_arguments(args)
    check_flags(args, at_least={"mem_size": 1, "pooling_size": 1, "top_k": 1, "testing_top_k": 1, "thres": 0.0,
                                "age_noise": 0.0},
                at_most={"pooling_size": args.train_ps, "testing_top_k": args.mem_size})
    if args.K_feat_dim != QUERY_DIM:
        raise UserError(f"--K_feat_dim {args.K_feat_dim}: the ResNet-18 query has {QUERY_DIM} features; pass 512")
    world = int(os.environ.get("WORLD_SIZE", 1))
    if args.batch_size * world > args.mem_size:
        raise UserError(f"--mem_size {args.mem_size}: smaller than one batch ({args.batch_size} x {world} "
                        f"process(es)); every new entry of a batch needs its own slot: raise --mem_size or lower "
                        f"--batch_size")
    value_dim = value_dim_for(args.pooling_size, args.pooling_mean)
    if args.V_feat_dim is not None and args.V_feat_dim != value_dim:
        raise UserError(f"--V_feat_dim {args.V_feat_dim} does not match --pooling_size {args.pooling_size}"
                        f"{' --pooling_mean' if args.pooling_mean else ''} (needs {value_dim})")
    return value_dim


def _data(args):
    """Training and validation pairs, checked and cached up front; the pooling must fit every image."""
    train_set, val_set = load_pairs(args)
    check_fits(val_set, args.pooling_size, "--pooling_size", "validation", args.val_dir)
    world = int(os.environ.get("WORLD_SIZE", 1))
    if len(train_set) < args.batch_size * world:
        raise UserError(f"--batch_size {args.batch_size} exceeds the {len(train_set)} training pairs in "
                        f"{args.train_dir}{f' shared by {world} processes' if world > 1 else ''}: the incomplete "
                        f"last batch is dropped (as the reference), so nothing would be stored; lower --batch_size")
    return train_set, val_set


def _frozen_validation(session: Session, enhancer, query_net, val_set) -> tuple[list, torch.Tensor, float]:
    """The frozen enhancer's validation outputs (1,3,H,W) and the validation queries (N,512), computed once."""
    t0 = time.time()
    device = session.device
    with session.autocast():
        val_out = [y.float() for y in enhance_validation(enhancer, val_set, device)]
        val_q = torch.cat([query(query_net, val_set.load(i)[0][None].to(device)) for i in range(len(val_set))]).float()
    base_psnr, base_ssim = score(val_out, val_set)
    log.info("frozen enhancer on validation: PSNR %.2f SSIM %.4f (%.1fs)", base_psnr, base_ssim, time.time() - t0)
    return val_out, val_q, base_psnr


def _memory(args, ck: dict | None, value_dim: int, gens: dict, name: str | None) -> tuple[ExternalMemory, dict]:
    """A new memory (initialised from ``gens["memory"]``) or the resumed one; ``best``: PSNR and epoch counts."""
    best = {"psnr": -math.inf, "stats": {"matched": 0, "written": 0}}
    if not ck:
        return ExternalMemory(args.mem_size, args.K_feat_dim, value_dim, args.thres, args.age_noise,
                              gens["memory"]), best
    mem = ExternalMemory.from_checkpoint(ck, name=name, pooling=args.pooling_size, pooling_mean=args.pooling_mean,
                                         thres=args.thres, age_noise=args.age_noise, generator=gens["memory"])
    restore(ck, generators=gens)
    best.update(psnr=float(ck.get("best_psnr", -math.inf)), stats=ck.get("epoch_stats", best["stats"]))
    log.info("resumed %s at iteration %d, epoch %d", name, ck.get("iteration", 0), ck["epoch"])
    return mem, best


def _networks(args, device: torch.device):
    """The frozen enhancer of ``--pretrain_weights`` and the ResNet-18 query network, on ``device``."""
    enhancer = read_file(args.pretrain_weights, "--pretrain_weights",
                         lambda path: load_enhancer(args.arch, path, device, args.embed_dim))
    return enhancer, build_query_net(pretrained=True).to(device)


def run(args: argparse.Namespace) -> None:
    value_dim = check_arguments(args)
    run_dir, model_dir = run_dirs(args)
    session = Session(args, RunFolder("memory", run_dir, model_dir, "memory_latest.pth", CHECKPOINTS))
    train_set, val_set = _data(args)
    ck = session.read_state(frozen=FROZEN)
    device, world = session.device, int(os.environ.get("WORLD_SIZE", 1))
    enhancer, query_net = _networks(args, device)
    per_epoch = batches_per_epoch(len(train_set), args.batch_size, world=world, min_batch=args.batch_size)
    start = resume_step(ck, per_epoch) if ck else 0
    session.open(start // per_epoch)  # the log holds one validation record per epoch
    log.info("%d training pairs, %d validation pairs", len(train_set), len(val_set))

    val_out, val_q, base_psnr = _frozen_validation(session, enhancer, query_net, val_set)
    gens = {"memory": torch.Generator().manual_seed(args.random_seed)}  # the same on every process
    mem, best = _memory(args, ck, value_dim, gens, session.resume)
    mem.to(device)

    def save_latest(it: int) -> None:
        session.save("memory_latest.pth", {**training_state("memory", it, it // per_epoch, generators=gens, args=args,
                                                           best_psnr=best["psnr"], epoch_stats=best["stats"]),
                                           **mem.to_checkpoint(it // per_epoch)}, it)

    def end_epoch(epoch: int) -> None:
        # the raw (unclamped) enhancer output is pooled, as the reference
        refined = [mem.refine(r.to(device), mem.read(val_q[i:i + 1], args.testing_top_k)).cpu()
                   for i, r in enumerate(val_out)]
        val_psnr, val_ssim = score(refined, val_set)
        session.log(epoch + 1, {"psnr": val_psnr, "ssim": val_ssim, **best["stats"]}, prefix="val")
        digest, same = replica_digest([mem.key, mem.value, mem.age, mem.top_index], session.world, device)
        if not same:
            raise RuntimeError(f"epoch {epoch + 1}: the memories of the {session.world} processes differ")
        if session.world > 1:
            log.info("epoch %d: memory identical on all %d processes (digest %s)", epoch + 1, session.world, digest)
        if math.isfinite(val_psnr) and val_psnr > best["psnr"]:
            best["psnr"] = val_psnr
            session.save("memory_best.pth", mem.to_checkpoint(epoch + 1), (epoch + 1) * per_epoch, resumable=False)
        best["stats"] = {"matched": 0, "written": 0}
        save_latest((epoch + 1) * per_epoch)
        bar.set_postfix(psnr=f"{val_psnr:.2f}", best=f"{best['psnr']:.2f}")

    total = args.nepoch * per_epoch
    with tqdm(total=total, initial=start, desc="memory", disable=not is_primary(), dynamic_ncols=True) as bar:
        for it, epoch, (low, gt, _, index) in session.batches(train_set, args.batch_size, start, total,
                                                              min_batch=args.batch_size,  # drop_last, as the reference
                                                              on_epoch_end=end_epoch, on_stop=save_latest):
            with session.autocast():
                q = query(query_net, low.to(device)).float()
            v = mem.value_of(gt.to(device))
            # every process applies the same update to its own copy: the batches of all, in rank order
            q, v, index = (all_gather_cat(t, session.world) for t in (q, v, index.to(device)))
            for k, n in mem.update(q, v, index).items():
                best["stats"][k] += n
            bar.update(1)
            if (it + 1) % args.log_every == 0:
                log.info("iteration %d: %s", it + 1, ", ".join(f"{k} {n}" for k, n in best["stats"].items()))
    session.close(plot="memory_psnr.png", prefix="val")
    log.info("done: enhancer alone PSNR %.2f, best with memory %.2f; memory in %s", base_psnr, best["psnr"],
             os.path.join(model_dir, "memory_best.pth"))

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
from stages.common import RunLogger, SeededItems, epoch_batches, log, rng_state, set_rng_state, setup_run
from stages.paired import add_common_arguments, enhance_validation, run_dirs, score
from utils.checkpoint import atomic_save, read_checkpoint
from utils.device import is_primary
from utils.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, batch_size=128, nepoch=8000, arch="auto")
    g = p.add_argument_group("memory")
    g.add_argument("--pretrain_weights", default="checkpoints/LLE_model.pth", help="the frozen enhancer")
    g.add_argument("--mem_size", type=int, default=9000)
    g.add_argument("--K_feat_dim", type=int, default=512, help="key size (ResNet-18 features)")
    g.add_argument("--V_feat_dim", type=int, default=None, help="value size (default 3·p², p² with --pooling_mean)")
    g.add_argument("--pooling_size", type=int, default=1, help="p: values are GT pooled to p×p")
    g.add_argument("--pooling_mean", action="store_true", help="values are channel means")
    g.add_argument("--thres", type=float, default=1e-5, help="colour distance below which a query merges")
    g.add_argument("--age_noise", type=float, default=4.0, help="uniform noise added to ages when replacing")
    g.add_argument("--top_k", type=int, default=32, help="accepted for the reference scripts; unused (updates use top-1)")
    g.add_argument("--testing_top_k", type=int, default=1, help="slots averaged when reading at validation")
    g.add_argument("--alpha", type=float, default=0.1, help="accepted for the reference scripts; unused (as there)")
    g.add_argument("--cos_thres", type=float, default=0.0, help="accepted for the reference scripts; unused (as there)")


def run(args: argparse.Namespace) -> None:
    from datasets.lol import PairedDataset

    run_dir, model_dir = run_dirs(args)
    device, rank, world = setup_run(args, run_dir)
    if world > 1:
        raise UserError("the memory stage runs on one process (its update is sequential); launch it without torchrun")
    value_dim = value_dim_for(args.pooling_size, args.pooling_mean)
    if args.V_feat_dim is not None and args.V_feat_dim != value_dim:
        raise UserError(f"--V_feat_dim {args.V_feat_dim} does not match --pooling_size {args.pooling_size}"
                        f"{' --pooling_mean' if args.pooling_mean else ''} (needs {value_dim})")
    train_set = PairedDataset(args.train_dir, patch_size=args.train_ps, augment=True, cache=True)
    if len(train_set) < args.batch_size:
        raise UserError(f"--batch_size {args.batch_size} exceeds the {len(train_set)} training pairs in "
                        f"{args.train_dir}: the incomplete last batch is dropped (as the reference), so nothing "
                        f"would be stored; lower --batch_size")
    val_set = PairedDataset(args.val_dir, cache=True)
    log.info("%d training pairs, %d validation pairs", len(train_set), len(val_set))
    enhancer = load_enhancer(args.arch, args.pretrain_weights, device, args.embed_dim)
    query_net = build_query_net(pretrained=True).to(device)

    # The enhancer is frozen: its validation outputs and the validation queries are computed once.
    t0 = time.time()
    val_out = enhance_validation(enhancer, val_set, device, enhancer.arch)
    val_q = torch.cat([query(query_net, val_set.load(i)[0][None].to(device)) for i in range(len(val_set))])
    base_psnr, base_ssim = score(val_out, val_set)
    log.info("frozen enhancer on validation: PSNR %.2f SSIM %.4f (%.1fs)", base_psnr, base_ssim, time.time() - t0)

    gen = torch.Generator().manual_seed(args.random_seed)
    mem = ExternalMemory(args.mem_size, args.K_feat_dim, value_dim, args.thres, args.age_noise, gen)
    start_epoch, best_psnr = 0, -math.inf
    resume = os.path.join(model_dir, "memory_latest.pth") if args.resume == "auto" else args.resume
    if resume:
        ck = read_checkpoint(resume, map_location="cpu")
        mem = ExternalMemory.from_checkpoint(ck, name=resume, pooling=args.pooling_size, pooling_mean=args.pooling_mean,
                                             thres=args.thres, age_noise=args.age_noise, generator=gen)
        start_epoch, best_psnr = int(ck["epoch"]), float(ck.get("best_psnr", -math.inf))
        if "rng" in ck:
            set_rng_state(ck["rng"], memory=gen)
        log.info("resumed %s after epoch %d", resume, start_epoch)
    mem.to(device)

    logger = RunLogger(run_dir, start_epoch)
    seeded = SeededItems(train_set, args.random_seed)
    bar = tqdm(range(start_epoch, args.nepoch), initial=start_epoch, total=args.nepoch, desc="memory",
               disable=not is_primary(), dynamic_ncols=True)
    for epoch in bar:
        batches = epoch_batches(len(train_set), args.batch_size, args.random_seed, epoch, min_batch=args.batch_size)
        loader = torch.utils.data.DataLoader(seeded, batch_sampler=[[(epoch, i) for i in b] for b in batches],
                                             num_workers=args.num_workers)
        stats = {"matched": 0, "written": 0}
        for low, gt, _, index in loader:
            q = query(query_net, low.to(device))
            v = mem.value_of(gt.to(device))
            for k, n in mem.update(q, v, index.to(device)).items():
                stats[k] += n
        refined = [mem.refine(r.to(device), mem.read(val_q[i:i + 1], args.testing_top_k)).cpu()
                   for i, r in enumerate(val_out)]
        val_psnr, val_ssim = score(refined, val_set)
        logger.log(epoch + 1, {"psnr": val_psnr, "ssim": val_ssim, **stats}, prefix="val")
        bar.set_postfix(psnr=f"{val_psnr:.2f}", best=f"{max(best_psnr, val_psnr):.2f}")
        if val_psnr > best_psnr:
            best_psnr = val_psnr
            atomic_save(mem.to_checkpoint(epoch + 1), os.path.join(model_dir, "memory_best.pth"))
        atomic_save({**mem.to_checkpoint(epoch + 1), "best_psnr": best_psnr, "rng": rng_state(memory=gen),
                     "args": vars(args)}, os.path.join(model_dir, "memory_latest.pth"))
    logger.close(plot_path=os.path.join(run_dir, "memory_psnr.png"), prefix="val")
    log.info("done: enhancer alone PSNR %.2f, best with memory %.2f; memory in %s", base_psnr, best_psnr,
             os.path.join(model_dir, "memory_best.pth"))
